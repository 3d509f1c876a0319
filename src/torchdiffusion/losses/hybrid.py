"""L_hybrid: L_simple plus the DDPM variational bound for a learned variance, with importance-sampled t
(Nichol & Dhariwal 2021, sec. 3.1 and 3.3)."""

from __future__ import annotations

from typing import Any

import torch

from ..likelihood.vlb import vlb_terms
from ..model_denoiser import ModelDenoiser
from ..rng import randn
from .denoising import diffusion_loss

Tensor = torch.Tensor


class ImportanceSampler:
    """Importance-sampled t with p_t proportional to sqrt(E[L_t^2]) over the last `history` values of each
    term, uniform until every t has a full history (Nichol & Dhariwal 2021, eq. 18)."""

    def __init__(self, T: int, history: int = 10, uniform_prob: float = 1e-3):
        self.T, self.history, self.uniform_prob = T, history, uniform_prob
        self.losses = torch.zeros(T, history, dtype=torch.float64)
        self.counts = torch.zeros(T, dtype=torch.long)

    def weights(self) -> Tensor:
        if bool((self.counts < self.history).any()):
            return torch.full((self.T,), 1.0 / self.T, dtype=torch.float64)
        w = torch.sqrt((self.losses**2).mean(1))
        w = w / w.sum()
        return w * (1 - self.uniform_prob) + self.uniform_prob / self.T

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """t of shape (n,) and the importance weights 1 / (T p_t) that keep the estimator unbiased."""
        p = self.weights()
        t = torch.multinomial(p, n, replacement=True, generator=generator)
        return t, 1.0 / (self.T * p[t])

    def update(self, t: Tensor, losses: Tensor) -> None:
        """Record the per-sample vlb terms just computed at steps t."""
        for ti, li in zip(t.tolist(), losses.detach().double().tolist()):
            if self.counts[ti] == self.history:
                self.losses[ti, :-1] = self.losses[ti, 1:].clone()
                self.losses[ti, -1] = li
            else:
                self.losses[ti, self.counts[ti]] = li
                self.counts[ti] += 1

    def state_dict(self) -> dict[str, Tensor]:
        return {"losses": self.losses.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.losses, self.counts = state["losses"].clone(), state["counts"].clone()


def hybrid_loss(model: ModelDenoiser, x0: Tensor, *, lam: float = 0.001, generator: torch.Generator | None = None,
                importance: ImportanceSampler | None = None, t: Tensor | None = None, eps: Tensor | None = None,
                **cond: Any) -> Tensor:
    """L_hybrid = L_simple + lambda L_vlb with a stop-gradient on the mean in L_vlb (Nichol & Dhariwal 2021, eq. 16).

    t (integer steps, (B,)) and eps may be given (then t is not importance-sampled); else they are drawn.
    """
    process = model.process
    if not model.learned_variance:
        raise ValueError("L_hybrid needs a model with a learned-variance head (learned_variance: true)")
    B = x0.shape[0]
    iw = torch.ones(B, dtype=torch.float64)
    if t is not None:
        t, importance = t.long(), None
    elif importance is not None:
        t, iw = importance.sample(B, generator)
    else:
        t = torch.randint(0, process.T, (B,), generator=generator)
    t, iw = t.to(x0.device), iw.to(x0.device)
    if eps is None:
        eps = randn(x0.shape, generator, dtype=x0.dtype, device=x0.device)
    xt = process.marginal(x0, t.double(), eps)
    simple = diffusion_loss(model, x0, t=t.double(), eps=eps, **cond)
    vlb = vlb_terms(model, x0, t, xt, detach_mean=True, **cond) / x0[0].numel()
    if importance is not None:
        importance.update(t, vlb)
    return simple + lam * iw.to(vlb.dtype) * vlb * process.T
