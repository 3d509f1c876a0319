"""Analytic Gaussian mixture: exact noisy marginals, score and denoiser E[x0 | x] for ground-truth tests.

With x = x0 + sigma eps and x0 ~ sum_k w_k N(mu_k, diag(var_k)), the noisy marginal is
sum_k w_k N(mu_k, diag(var_k + sigma^2)) and, per component, E[x0 | x, k] = mu_k + var_k / (var_k + sigma^2)
(x - mu_k) (Gaussian conditioning); the mixture's denoiser weights these by the posterior responsibilities.
"""

from __future__ import annotations

import math

import torch

from .denoiser import sigma_batch

Tensor = torch.Tensor


class GaussianMixture:
    """A diagonal-covariance Gaussian mixture in R^d whose denoiser is exact at every sigma."""

    def __init__(self, weights: Tensor, means: Tensor, variances: Tensor | float):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
        K, d = means.shape
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (K,) or bool((weights <= 0).any()):
            raise ValueError(f"weights must be positive with shape ({K},), got {tuple(weights.shape)}")
        var = torch.as_tensor(variances, dtype=torch.float64)
        var = var.expand(K, d).clone() if var.ndim < 2 else var
        if var.shape != (K, d) or bool((var <= 0).any()):
            raise ValueError(f"variances must be positive, broadcastable to ({K}, {d})")
        self.weights, self.means, self.variances = weights / weights.sum(), means, var
        self.dim = d

    def sample(self, n: int, *, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
        """n draws of x0 and their component labels."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = self.means[k] + self.variances[k].sqrt() * z
        return x.to(dtype), k

    def _component_log_probs(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """log(w_k N(x; mu_k, var_k + sigma^2)) of shape (B, K), and the total variances (B, K, d)."""
        mu, var = self.means.to(x), self.variances.to(x)
        tot = var[None] + sigma.reshape(-1, 1, 1) ** 2  # (B, K, d)
        diff = x[:, None, :] - mu[None]
        logp = -0.5 * ((diff**2 / tot).sum(-1) + torch.log(tot).sum(-1) + self.dim * math.log(2 * math.pi))
        return logp + torch.log(self.weights.to(x))[None], tot

    def log_prob(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """log p_sigma(x) of the noisy marginal, shape (B,)."""
        logp, _ = self._component_log_probs(x, sigma_batch(sigma, x))
        return torch.logsumexp(logp, dim=1)

    def responsibilities(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """p(k | x) at noise level sigma, shape (B, K)."""
        logp, _ = self._component_log_probs(x, sigma_batch(sigma, x))
        return torch.softmax(logp, dim=1)

    def denoise(self, x: Tensor, sigma: Tensor | float, **cond: object) -> Tensor:
        """Exact E[x0 | x] (Tweedie); the mixture as a Denoiser."""
        logp, tot = self._component_log_probs(x, sigma_batch(sigma, x))
        return self._posterior_mean(x, logp, tot)

    def _posterior_mean(self, x: Tensor, logp: Tensor, tot: Tensor) -> Tensor:
        """sum_k p(k | x) E[x0 | x, k] from unnormalised component log-probabilities (B, K)."""
        r = torch.softmax(logp, dim=1)  # (B, K)
        mu, var = self.means.to(x), self.variances.to(x)
        cond_mean = mu[None] + var[None] / tot * (x[:, None, :] - mu[None])  # (B, K, d)
        return (r[..., None] * cond_mean).sum(1)

    __call__ = denoise

    def score(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """grad_x log p_sigma(x) = (E[x0 | x] - x) / sigma^2."""
        s = sigma_batch(sigma, x)[:, None]
        return (self.denoise(x, s[:, 0]) - x) / s**2

    def mean(self) -> Tensor:
        return (self.weights[:, None] * self.means).sum(0)

    def covariance(self) -> Tensor:
        """Total covariance: sum_k w_k (diag var_k + mu_k mu_k^T) - m m^T."""
        m = self.mean()
        second = sum(w * (torch.diag(v) + torch.outer(mu, mu)) for w, mu, v in
                     zip(self.weights, self.means, self.variances))
        return second - torch.outer(m, m)

    @property
    def sigma_data(self) -> float:
        """The data's overall std, sqrt(trace(covariance) / d), as a trained model's `sigma_data` (default grid tail)."""
        return math.sqrt(float(torch.diagonal(self.covariance()).mean()))


def ring_mixture(k: int = 8, dim: int = 2, radius: float = 2.0, std: float = 0.2) -> GaussianMixture:
    """k equal-weight components on a circle in the first two coordinates (a standard 2-D test target)."""
    ang = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    means = torch.zeros(k, dim, dtype=torch.float64)
    means[:, 0], means[:, 1] = radius * torch.cos(ang), radius * torch.sin(ang)
    return GaussianMixture(torch.ones(k), means, std**2)


class RotatedGaussianMixture:
    """A Gaussian mixture with full covariances Sigma_k = R_k diag(var_k) R_k^T (R_k orthogonal): exact denoiser.

    In component k's eigenbasis z = R_k^T (x - mu_k) the noisy component is N(0, diag(var_k + sigma^2)), so
    E[x0 | x, k] = mu_k + R_k (var_k / (var_k + sigma^2) * z) (Gaussian conditioning, as in `GaussianMixture`).
    """

    def __init__(self, weights: Tensor, means: Tensor, variances: Tensor, rotations: Tensor):
        self.base = GaussianMixture(weights, means, variances)  # checks weights, means and variances
        K, d = self.base.means.shape
        R = torch.as_tensor(rotations, dtype=torch.float64)
        eye = torch.eye(d, dtype=torch.float64)
        if R.shape != (K, d, d) or not torch.allclose(R.transpose(1, 2) @ R, eye.expand(K, d, d), atol=1e-8):
            raise ValueError(f"rotations must be orthogonal matrices of shape ({K}, {d}, {d})")
        self.weights, self.means, self.variances, self.rotations = self.base.weights, self.base.means, \
            self.base.variances, R
        self.dim = d

    def _component_log_probs(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """log(w_k N(x; mu_k, Sigma_k + sigma^2 I)) (B, K), total eigenvariances (B, K, d), eigen-coordinates z."""
        mu, var, R = self.means.to(x), self.variances.to(x), self.rotations.to(x)
        tot = var[None] + sigma.reshape(-1, 1, 1) ** 2  # (B, K, d)
        z = torch.einsum("bkd,kde->bke", x[:, None, :] - mu[None], R)  # R_k^T (x - mu_k)
        logp = -0.5 * ((z**2 / tot).sum(-1) + torch.log(tot).sum(-1) + self.dim * math.log(2 * math.pi))
        return logp + torch.log(self.weights.to(x))[None], tot, z

    def log_prob(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """log p_sigma(x) of the noisy marginal, shape (B,)."""
        return torch.logsumexp(self._component_log_probs(x, sigma_batch(sigma, x))[0], dim=1)

    def denoise(self, x: Tensor, sigma: Tensor | float, **cond: object) -> Tensor:
        """Exact E[x0 | x] (Tweedie); the mixture as a Denoiser."""
        logp, tot, z = self._component_log_probs(x, sigma_batch(sigma, x))
        r = torch.softmax(logp, dim=1)  # (B, K)
        shrunk = self.variances.to(x)[None] / tot * z  # (B, K, d), eigen-coordinates
        cond_mean = self.means.to(x)[None] + torch.einsum("kde,bke->bkd", self.rotations.to(x), shrunk)
        return (r[..., None] * cond_mean).sum(1)

    __call__ = denoise

    def sample(self, n: int, *, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
        """n draws of x0 and their component labels."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64) * self.variances[k].sqrt()
        return (self.means[k] + torch.einsum("nde,ne->nd", self.rotations[k], z)).to(dtype), k

    def covariance(self) -> Tensor:
        """Total covariance: sum_k w_k (Sigma_k + mu_k mu_k^T) - m m^T."""
        m = (self.weights[:, None] * self.means).sum(0)
        sig = self.rotations @ torch.diag_embed(self.variances) @ self.rotations.transpose(1, 2)
        second = (self.weights[:, None, None] * (sig + self.means[:, :, None] * self.means[:, None, :])).sum(0)
        return second - torch.outer(m, m)

    @property
    def sigma_data(self) -> float:
        """The data's overall std, sqrt(trace(covariance) / d)."""
        return math.sqrt(float(torch.diagonal(self.covariance()).mean()))


class ExactVelocity(torch.nn.Module):
    """A flow backbone from a mixture's exact denoiser: u = alpha'(t) x0 + sigma'(t) eps (Lipman et al. 2023, eq. 15),
    x0 the denoiser at VE state x_t / alpha, sigma / alpha; time input c_noise = 1000 t (the flow default)."""

    def __init__(self, gmm: GaussianMixture, process):
        super().__init__()
        self.gmm, self.p = gmm, process

    def forward(self, xt: torch.Tensor, c_noise: torch.Tensor, **cond) -> torch.Tensor:
        t = c_noise.double() / 1000
        a, s = self.p.alpha(t)[:, None], self.p.sigma(t)[:, None]
        x0 = self.gmm(xt / a, (s / a)[:, 0])
        eps = (xt - a * x0) / s
        return self.p.d_alpha(t)[:, None] * x0 + self.p.d_sigma(t)[:, None] * eps
