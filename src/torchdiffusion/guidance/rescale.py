"""CFG-rescale (Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed", eqs. 15-16).

The paper rescales the guided prediction so that its per-sample std matches the conditional prediction's,
x_final = phi * x_cfg * std(x_pos) / std(x_cfg) + (1 - phi) * x_cfg, and states it on the network's output: their
models predict v, and diffusers applies it to eps or v, whichever the network predicts. CFG itself is the same in
every parameterization (eps, v, score and x0 are affine in one another for fixed x and sigma), but a std ratio is
not: rescaling eps by f moves x0 by (f - 1) sigma eps, which at sigma = 80 is huge. So the space is a choice, made
explicit here rather than inherited from how a backbone happens to be trained:

- "v" (default, the paper's setting): v of the variance-preserving state with the same SNR, x_t = x / sqrt(1 +
  sigma^2), v = alpha eps - sigma_t x0 = (x - (1 + sigma^2) D) / (sigma sqrt(1 + sigma^2)). The per-sample factor
  1 / (sigma sqrt(1 + sigma^2)) cancels in the ratio, so u = x - (1 + sigma^2) D is rescaled (no division by sigma).
- "x0": the denoised prediction D itself; phi = 1 gives std(D_final) = std(D_cond) per sample.
- "eps": eps = (x - D) / sigma, rescaled as u = x - D (same ratio); the diffusers convention for eps-networks.

The std is taken per sample over all non-batch dims (population std, so one element gives 0 and the factor 1).
"""

from __future__ import annotations

import torch

from ..processes import expand_like

Tensor = torch.Tensor
SPACES = ("v", "x0", "eps")


def _to_u(d: Tensor, x: Tensor, s2: Tensor, space: str) -> Tensor:
    """The quantity whose std is matched, u = a x + b D, proportional per sample to the space's prediction."""
    if space == "x0":
        return d
    if space == "eps":
        return x - d
    return x - (1 + s2) * d


def _from_u(u: Tensor, x: Tensor, s2: Tensor, space: str) -> Tensor:
    """Inverse of _to_u: the x0 prediction D from u."""
    if space == "x0":
        return u
    if space == "eps":
        return x - u
    return (x - u) / (1 + s2)


def check_rescale(phi: float, space: str) -> float:
    """phi in [0, 1] and a known space; ValueError otherwise."""
    phi = float(phi)
    if not 0.0 <= phi <= 1.0:  # also rejects NaN
        raise ValueError(f"rescale phi must lie in [0, 1], got {phi}")
    if space not in SPACES:
        raise ValueError(f"unknown rescale space {space!r}; choose one of {SPACES}")
    return phi


def rescale_std(guided: Tensor, reference: Tensor, x: Tensor, sigma: Tensor, phi: float,
                space: str = "v") -> Tensor:
    """The guided x0 with its per-sample std in `space` pulled towards the reference's (Lin et al. 2024, eqs. 15-16)."""
    phi = check_rescale(phi, space)
    if phi == 0.0:
        return guided
    s2 = expand_like(sigma, x) ** 2
    u_g, u_r = _to_u(guided, x, s2, space), _to_u(reference, x, s2, space)
    dims = tuple(range(1, x.ndim))
    std_g = u_g.std(dim=dims, correction=0, keepdim=True)
    std_r = u_r.std(dim=dims, correction=0, keepdim=True)
    ratio = torch.where(std_g > 0, std_r / std_g.clamp_min(torch.finfo(x.dtype).tiny), torch.ones_like(std_g))
    # eq. 16: phi * (ratio * u) + (1 - phi) * u
    return _from_u(u_g * (phi * ratio + (1 - phi)), x, s2, space)
