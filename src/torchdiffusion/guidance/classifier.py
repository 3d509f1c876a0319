"""Classifier guidance (Dhariwal & Nichol 2021, Sec. 4 and Alg. 2) in VE coordinates.

Tweedie's formula gives E[x0 | x] = x + sigma^2 grad log p_sigma(x), and Bayes' rule grad log p_sigma(x | y) =
grad log p_sigma(x) + grad log p(y | x, sigma). So the exact conditional denoiser is
E[x0 | x, y] = D(x, sigma) + sigma^2 grad_x log p(y | x, sigma), and scale s tilts it: s = 1 is exact conditioning.
This is their Alg. 2 (eps_hat = eps - sqrt(1 - abar) grad_{x_t} log p) moved to x = x_t / alpha: the chain rule
grad_x = alpha grad_{x_t} turns sqrt(1 - abar) / sqrt(abar) * sqrt(1 - abar) into sigma^2.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from ..processes import GaussianProcess, expand_like
from .base import GuidedDenoiser, Output, call, check_scale
from .batching import expand_cond

Tensor = torch.Tensor
LogProb = Callable[[Tensor, Tensor], Tensor]  # (x (B, ...), sigma (B,)) -> log p(y | x, sigma), shape (B,)


def log_prob_grad(log_prob: LogProb, x: Tensor, sigma: Tensor) -> Tensor:
    """grad_x log p(y | x, sigma) per sample, by autograd of the batch sum (samples must not interact)."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        lp = log_prob(xg, sigma)
        if lp.shape != (x.shape[0],):
            raise ValueError(f"log_prob must return shape ({x.shape[0]},), got {tuple(lp.shape)}")
        (grad,) = torch.autograd.grad(lp.sum(), xg)
    return grad.detach()


class ClassifierGuidance(GuidedDenoiser):
    """D(x, sigma) + s sigma^2 grad_x log p(y | x, sigma) (Dhariwal & Nichol 2021, Alg. 2 in VE coordinates)."""

    def __init__(self, denoiser: Any, log_prob: LogProb, scale: float, cond: Mapping[str, Any] | None = None):
        super().__init__(denoiser)
        self.log_prob, self.scale = log_prob, check_scale(scale, "classifier scale")
        self.cond = dict(cond or {})

    def evaluate(self, x: Tensor, sigma: Tensor, cond: dict[str, Any], with_variance: bool) -> Output:
        x0, frac = call(self.denoiser, x, sigma, expand_cond({**cond, **self.cond}, x.shape[0]), with_variance)
        if self.scale == 0.0:
            return x0, frac
        grad = log_prob_grad(self.log_prob, x, sigma)
        return x0 + (self.scale * expand_like(sigma, x) ** 2) * grad, frac


def classifier_guidance(denoiser: Any, log_prob: LogProb, scale: float,
                        cond: Mapping[str, Any] | None = None) -> ClassifierGuidance:
    """Guide `denoiser` (called with cond, if given) by a differentiable log p(y | x, sigma) in VE coordinates."""
    return ClassifierGuidance(denoiser, log_prob, scale, cond)


def classifier_log_prob(logits_fn: Callable[[Tensor, Tensor], Tensor], labels: Tensor) -> LogProb:
    """log p(y | x, sigma) = log_softmax(logits_fn(x, sigma))[y] for per-sample labels y (B,) or one label (1,)."""
    labels = torch.as_tensor(labels).long().reshape(-1)

    def log_prob(x: Tensor, sigma: Tensor) -> Tensor:
        y = expand_cond({"labels": labels}, x.shape[0], "classifier")["labels"].to(x.device)
        logits = logits_fn(x, sigma)
        if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(f"logits must have shape ({x.shape[0]}, K), got {tuple(logits.shape)}")
        return torch.log_softmax(logits, dim=1).gather(1, y[:, None])[:, 0]

    return log_prob


def process_classifier(net: Callable[[Tensor, Tensor], Tensor], process: GaussianProcess,
                       noise_level: Callable[[Tensor], Tensor] | None = None) -> Callable[[Tensor, Tensor], Tensor]:
    """A noise-conditional classifier net(x_t, noise_level) trained in a process's coordinates, seen in VE ones.

    (x, sigma) -> net(alpha(t) x, noise_level(t)) with t = t_of_sigma_ve(sigma); noise_level maps process time to
    what the net was trained on (default: t itself; e.g. `lambda t: t.round()` for a discrete DDPM table). Autograd
    through alpha(t) x gives grad_x = alpha grad_{x_t}, the change of coordinates.
    """
    level = noise_level or (lambda t: t)

    def logits_fn(x: Tensor, sigma: Tensor) -> Tensor:
        t = process.t_of_sigma_ve(sigma.double())
        xt = expand_like(process.alpha(t), x) * x
        return net(xt, level(t).to(x.dtype))

    return logits_fn
