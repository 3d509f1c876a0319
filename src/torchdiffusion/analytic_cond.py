"""Ground truth for conditioning and guidance: a labelled Gaussian mixture and the tilted noisy Gaussian.

LabeledGaussianMixture: components carry class labels, so p(x0 | y) is the mixture restricted to y's components and
p(x0) the whole mixture. At every sigma its exact E[x0 | x, y], E[x0 | x] and log p(y | x, sigma) (Bayes' rule on
the noisy component densities) are closed forms; it takes `class_labels` like the trained backbones, with
label == num_classes (or None) the null label, i.e. the unconditional model.

TiltedGaussian: for Gaussian p(x0 | c) and p(x0) with diagonal covariances, CFG's denoiser at noise sigma is the exact
denoiser of the tilted noisy density p_sigma(x | c)^w p_sigma(x)^(1 - w) / Z, because the score is linear in the
scores. That density is Gaussian at every sigma, so its probability-flow ODE is linear per dimension and its flow map
is known (flow_map). Tilting does not commute with noising: for w != 1 the family of tilted noisy densities does not
solve the heat equation, so the PF-ODE of CFG started from the tilted density at sigma_max does not end at the tilted
clean density p(x0 | c)^w p(x0)^(1 - w) / Z (see flow_map's docstring for the variances).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .analytic import GaussianMixture
from .denoiser import sigma_batch

Tensor = torch.Tensor


class LabeledGaussianMixture(GaussianMixture):
    """A diagonal Gaussian mixture with a class label per component: exact E[x0 | x, y], E[x0 | x], p(y | x, sigma)."""

    def __init__(self, weights: Tensor, means: Tensor, variances: Tensor | float, labels: Tensor,
                 num_classes: int | None = None):
        super().__init__(weights, means, variances)
        labels = torch.as_tensor(labels, dtype=torch.long)
        K = len(self.weights)
        if labels.shape != (K,) or bool((labels < 0).any()):
            raise ValueError(f"labels must be non-negative with shape ({K},), got {tuple(labels.shape)}")
        C = int(labels.max()) + 1 if num_classes is None else int(num_classes)
        counts = torch.bincount(labels, minlength=C)
        if len(counts) != C or bool((counts == 0).any()):
            raise ValueError(f"every class in [0, {C}) needs at least one component, and labels must be < {C}")
        self.labels, self.num_classes = labels, C

    @property
    def null_label(self) -> int:
        """The label that means "no condition" (the unconditional model), as for the trained backbones."""
        return self.num_classes

    def class_prior(self) -> Tensor:
        """p(y), shape (C,)."""
        return torch.zeros(self.num_classes, dtype=torch.float64).index_add_(0, self.labels, self.weights)

    def conditional(self, y: int) -> GaussianMixture:
        """p(x0 | y): the mixture of y's components, weights renormalised."""
        k = self.labels == y
        return GaussianMixture(self.weights[k], self.means[k], self.variances[k])

    def _class_labels(self, class_labels: Tensor | int | None, x: Tensor) -> Tensor:
        """Per-sample labels (B,) on x's device; None means the null label."""
        if class_labels is None:
            return torch.full((x.shape[0],), self.null_label, dtype=torch.long, device=x.device)
        y = torch.as_tensor(class_labels, dtype=torch.long, device=x.device)
        y = y.expand(x.shape[0]) if y.ndim == 0 else y
        if y.shape != (x.shape[0],) or bool(((y < 0) | (y > self.null_label)).any()):
            raise ValueError(f"class_labels must be in [0, {self.null_label}] with shape ({x.shape[0]},)")
        return y

    def _masked_log_probs(self, x: Tensor, sigma: Tensor, class_labels: Tensor | int | None) -> tuple[Tensor, Tensor]:
        """Component log-probabilities (B, K) with the components of other classes at -inf (none for null)."""
        logp, tot = self._component_log_probs(x, sigma)
        y = self._class_labels(class_labels, x)[:, None]
        keep = (self.labels.to(x.device)[None] == y) | (y == self.null_label)
        return logp.masked_fill(~keep, -math.inf), tot

    def denoise(self, x: Tensor, sigma: Tensor | float, class_labels: Tensor | int | None = None,
                **cond: object) -> Tensor:
        """Exact E[x0 | x, y] per sample (Tweedie on p_sigma(x | y)); E[x0 | x] for the null label."""
        logp, tot = self._masked_log_probs(x, sigma_batch(sigma, x), class_labels)
        return self._posterior_mean(x, logp, tot)

    __call__ = denoise

    def log_prob(self, x: Tensor, sigma: Tensor | float = 0.0, class_labels: Tensor | int | None = None) -> Tensor:
        """log p_sigma(x | y) per sample, shape (B,); log p_sigma(x) for the null label."""
        logp, _ = self._masked_log_probs(x, sigma_batch(sigma, x), class_labels)
        log_py = torch.log(torch.cat([self.class_prior(), torch.ones(1, dtype=torch.float64)])).to(x)  # null: 1
        return torch.logsumexp(logp, dim=1) - log_py[self._class_labels(class_labels, x)]

    def logits(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """log p(y | x, sigma) for every class, shape (B, C): an exact classifier (Bayes' rule on noisy densities)."""
        logp, _ = self._component_log_probs(x, sigma_batch(sigma, x))
        per_class = torch.stack([torch.logsumexp(logp[:, self.labels == c], dim=1) for c in range(self.num_classes)], 1)
        return torch.log_softmax(per_class, dim=1)


class TiltedGaussian:
    """p_sigma(x | c)^w p_sigma(x)^(1 - w) / Z for p(x0 | c) = N(mu_c, diag var_c), p(x0) = N(mu_u, diag var_u).

    Per dimension its precision is P(sigma) = w / (var_c + sigma^2) + (1 - w) / (var_u + sigma^2)
    = (w var_u + (1 - w) var_c + sigma^2) / ((var_c + sigma^2)(var_u + sigma^2)), positive at every sigma iff
    w var_u + (1 - w) var_c > 0, and its mean m(sigma) = (w mu_c / (var_c + sigma^2) + (1 - w) mu_u / (var_u +
    sigma^2)) / P(sigma). The score is -P (x - m), computed here from precisions, not from denoisers.
    """

    def __init__(self, mu_c: Tensor, var_c: Tensor, mu_u: Tensor, var_u: Tensor, w: float):
        f64 = lambda v: torch.as_tensor(v, dtype=torch.float64).reshape(-1)  # noqa: E731
        self.mu_c, self.var_c, self.mu_u, self.var_u = f64(mu_c), f64(var_c), f64(mu_u), f64(var_u)
        self.w = float(w)
        if bool((self.var_c <= 0).any() or (self.var_u <= 0).any()):
            raise ValueError("variances must be positive")
        if bool((self.w * self.var_u + (1 - self.w) * self.var_c <= 0).any()):
            raise ValueError("w var_u + (1 - w) var_c must be > 0: the tilted density is not normalisable at sigma = 0")
        self.dim = len(self.mu_c)

    def precision(self, sigma: Tensor | float) -> Tensor:
        """P(sigma), shape (B, d) for sigma of shape (B,) (a scalar gives (1, d))."""
        s2 = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1) ** 2
        return self.w / (self.var_c + s2) + (1 - self.w) / (self.var_u + s2)

    def mean(self, sigma: Tensor | float) -> Tensor:
        """m(sigma), shape (B, d)."""
        s2 = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1) ** 2
        eta = self.w * self.mu_c / (self.var_c + s2) + (1 - self.w) * self.mu_u / (self.var_u + s2)
        return eta / self.precision(sigma)

    def denoise(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """x + sigma^2 grad log of the tilted noisy density = x - sigma^2 P (x - m) (Tweedie)."""
        sigma = sigma_batch(sigma, x).double()
        x64 = x.double()
        out = x64 - sigma[:, None] ** 2 * self.precision(sigma) * (x64 - self.mean(sigma))
        return out.to(x.dtype)

    __call__ = denoise

    def transfer(self, sigma_to: float, sigma_from: float | Tensor) -> Tensor:
        """Phi(to; from) = ((var_c + to^2) / (var_c + from^2))^(w/2) ((var_u + to^2) / (var_u + from^2))^((1-w)/2),
        the solution of dPhi/dsigma = sigma P(sigma) Phi: integral sigma / (v + sigma^2) = log(v + sigma^2) / 2."""
        t2, f2 = sigma_to**2, sigma_from**2
        return (((self.var_c + t2) / (self.var_c + f2)) ** (self.w / 2)
                * ((self.var_u + t2) / (self.var_u + f2)) ** ((1 - self.w) / 2))

    def flow_map(self, sigma_from: float, sigma_to: float) -> tuple[Tensor, Tensor]:
        """(Phi, c) of shape (d,) with x(sigma_to) = Phi x(sigma_from) + c along the PF-ODE dx/dsigma = (x - D) / sigma
        = sigma P (x - m) of the tilted noisy densities (Karras et al. 2022, eq. 3).

        c = int_{sigma_to}^{sigma_from} Phi(sigma_to; s) s (w mu_c / (var_c + s^2) + (1 - w) mu_u / (var_u + s^2)) ds,
        by composite Gauss-Legendre quadrature in float64 (linear in s up to the data scale, in log s beyond; the
        integrand is analytic, so this is exact to round-off). Started from N(m, 1/P) at sigma_from the ODE ends at
        variance Phi^2 / P(sigma_from); at sigma_to = 0 and sigma_from -> infinity that tends to var_c^w var_u^(1 - w),
        while the tilted clean density has variance 1 / (w / var_c + (1 - w) / var_u): equal only for w in {0, 1} or
        var_c = var_u.
        """
        if not 0 <= sigma_to < sigma_from:
            raise ValueError(f"need 0 <= sigma_to < sigma_from, got {sigma_to}, {sigma_from}")
        knee = min(max(sigma_to, float(torch.sqrt(torch.maximum(self.var_c, self.var_u)).max())), sigma_from)
        s_lin, w_lin = _gauss_legendre(sigma_to, knee)
        u, w_log = _gauss_legendre(math.log(knee), math.log(sigma_from))
        s = torch.cat([s_lin, torch.exp(u)])[:, None]  # (N, 1) nodes
        weights = torch.cat([w_lin, w_log * torch.exp(u)])[:, None]  # ds = s du on the log piece
        s2 = s**2
        eta = self.w * self.mu_c / (self.var_c + s2) + (1 - self.w) * self.mu_u / (self.var_u + s2)  # P m at s
        integrand = self.transfer(sigma_to, s) * s * eta  # (N, d)
        return self.transfer(sigma_to, sigma_from), (weights * integrand).sum(0)


def _gauss_legendre(a: float, b: float, panels: int = 64, order: int = 16) -> tuple[Tensor, Tensor]:
    """Nodes and weights of composite Gauss-Legendre quadrature on [a, b] (empty if b <= a), float64."""
    if b <= a:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    x, w = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(a, b, panels + 1)
    half = (edges[1:] - edges[:-1])[:, None] / 2
    nodes = (edges[:-1, None] + half * (x[None] + 1)).reshape(-1)
    return torch.from_numpy(nodes), torch.from_numpy((half * w[None]).reshape(-1))
