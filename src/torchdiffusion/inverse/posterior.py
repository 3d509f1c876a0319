"""The exact posterior of an analytic Gaussian mixture under a linear-Gaussian measurement y = A x0 + noise_std n:
again a Gaussian mixture, in closed form (the ground truth of every inverse-problem test).

Only the measurement's component in A's row space carries information: with A = U diag(s) V^T, z = U_r^T y =
B x0 + noise_std n' where B = diag(s_r) V_r^T (r, n) has full row rank, and the rest of U^T y is noise independent
of x0 (zero when noise_std = 0), a common factor of every component that cancels. Per component k (prior
N(mu_k, Sigma_k), Sigma_k = diag(var_k)), Gaussian conditioning (Bishop 2006, eqs. 2.113-2.117, in Kalman form so
that noise_std = 0, noise-free masking, is included):

    S_k = B Sigma_k B^T + noise_std^2 I,   K_k = Sigma_k B^T S_k^-1,
    x0 | y, k ~ N(mu_k + K_k (z - B mu_k), Sigma_k - K_k B Sigma_k),   p(k | y) ∝ w_k N(z; B mu_k, S_k).
"""

from __future__ import annotations

import math

import torch

from ..analytic import GaussianMixture
from .operators import Matrix, Operator, Shape

Tensor = torch.Tensor


class MixturePosterior:
    """p(x0 | y) for x0 ~ `prior` (a GaussianMixture on flat (d,) samples, or on `shape` with d = numel) and
    y = operator(x0) + noise_std n; every method takes a batch of measurements y (B, *out_shape), one per row."""

    def __init__(self, prior: GaussianMixture, operator: Operator | Tensor, noise_std: float,
                 shape: Shape | None = None):
        if not noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.prior, self.noise_std = prior, float(noise_std)
        self.shape = (prior.dim,) if shape is None else tuple(shape)
        if math.prod(self.shape) != prior.dim:
            raise ValueError(f"samples of shape {self.shape} do not have the mixture's {prior.dim} numbers")
        self.operator = operator if isinstance(operator, Operator) else Matrix(operator, self.shape)
        svd = self.operator.svd(self.shape)
        self._svd, obs = svd, svd.observed
        n = prior.dim
        Vt = svd.vt(torch.eye(n, dtype=torch.float64))  # row j: V^T e_j, so Vt.T = V^T
        self.B = svd.s[obs, None] * Vt.T[obs]  # (r, n) = diag(s_r) V_r^T
        Sigma = torch.diag_embed(prior.variances)  # (K, n, n)
        BS = self.B @ Sigma  # (K, r, n)
        S = BS @ self.B.T + self.noise_std**2 * torch.eye(len(self.B), dtype=torch.float64)  # (K, r, r)
        self._chol = torch.linalg.cholesky(S)
        self.gain = torch.linalg.solve(S, BS).transpose(1, 2)  # K_k = Sigma_k B^T S_k^-1, (K, n, r)
        self.covariances = Sigma - self.gain @ BS  # (K, n, n), independent of y
        self._logdet = 2 * torch.log(torch.diagonal(self._chol, dim1=1, dim2=2)).sum(-1)  # (K,)

    def _z(self, y: Tensor) -> Tensor:
        """U_r^T y (B, r) in float64."""
        return self._svd.ut(y.double())[:, self._svd.observed]

    def log_weights(self, y: Tensor) -> Tensor:
        """log p(k | y) (B, K): log w_k + log N(z; B mu_k, S_k), normalised."""
        resid = self._z(y)[:, None, :] - (self.prior.means @ self.B.T)[None]  # (B, K, r)
        white = torch.linalg.solve_triangular(self._chol[None], resid[..., None], upper=False)[..., 0]
        logp = -0.5 * ((white**2).sum(-1) + self._logdet + len(self.B) * math.log(2 * math.pi))
        return torch.log_softmax(logp + torch.log(self.prior.weights)[None], dim=1)

    def weights(self, y: Tensor) -> Tensor:
        """p(k | y), shape (B, K)."""
        return self.log_weights(y).exp()

    def component_means(self, y: Tensor) -> Tensor:
        """E[x0 | y, k] = mu_k + K_k (z - B mu_k), shape (B, K, n)."""
        resid = self._z(y)[:, None, :] - (self.prior.means @ self.B.T)[None]  # (B, K, r)
        return self.prior.means[None] + (self.gain[None] @ resid[..., None])[..., 0]

    def mean(self, y: Tensor) -> Tensor:
        """E[x0 | y], shape (B, n)."""
        return (self.weights(y)[..., None] * self.component_means(y)).sum(1)

    def covariance(self, y: Tensor) -> Tensor:
        """Cov[x0 | y] = sum_k p(k | y) (C_k + m_k m_k^T) - m m^T, shape (B, n, n)."""
        w, mk = self.weights(y), self.component_means(y)
        second = (w[..., None, None] * (self.covariances[None] + mk[..., :, None] * mk[..., None, :])).sum(1)
        m = (w[..., None] * mk).sum(1)
        return second - m[:, :, None] * m[:, None, :]

    def std(self, y: Tensor) -> Tensor:
        """The posterior's per-coordinate standard deviation (B, n) (0 where y fixes a coordinate)."""
        return torch.diagonal(self.covariance(y), dim1=1, dim2=2).clamp_min(0).sqrt()

    def sample(self, y: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """One exact draw per row of y, (B, *shape) float64: k ~ p(k | y), then Matheron's rule
        x = x_p + K_k (z - B x_p - noise_std n) with x_p ~ N(mu_k, Sigma_k), exact even where C_k is singular."""
        w = self.weights(y)
        k = torch.multinomial(w, 1, generator=generator)[:, 0]  # (B,)
        mu, var = self.prior.means[k], self.prior.variances[k]
        x_p = mu + var.sqrt() * torch.randn(mu.shape, generator=generator, dtype=torch.float64)
        n = torch.randn(len(k), len(self.B), generator=generator, dtype=torch.float64)
        resid = self._z(y) - x_p @ self.B.T - self.noise_std * n  # (B, r)
        x = x_p + (self.gain[k] @ resid[..., None])[..., 0]
        return x.reshape(len(k), *self.shape)
