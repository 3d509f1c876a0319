"""Linear multistep (Adams-Bashforth) on dx/dsigma = (x - D) / sigma with variable steps in sigma."""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

from ..denoiser import sigma_batch
from .common import Callback, add_scaled, check_sigmas, report
from .method import Method

Tensor = torch.Tensor

# 2-point Gauss-Legendre on [-1, 1] (weights 1): exact for polynomials of degree <= 3, as the Lagrange basis
# through at most 4 nodes is
_GL_NODES = (-1 / math.sqrt(3), 1 / math.sqrt(3))


def lms_coefficients(nodes: list[float], a: float, b: float) -> list[float]:
    """c_j = int_a^b prod_(k != j) (t - t_k) / (t_j - t_k) dt: the Adams-Bashforth weights of the Lagrange polynomial
    through `nodes` (Hairer et al., Solving ODEs I, Sec. III.1, eq. 1.5 for variable steps). The quadrature points lie
    strictly inside the step while the nodes are its start and earlier levels, so prod_k (t - t_k) / (t - t_j) is the
    basis numerator without a zero division."""
    mid, half = 0.5 * (a + b), 0.5 * (b - a)
    out = [0.0] * len(nodes)
    for u in _GL_NODES:
        t = mid + half * u
        ps = [t - tk for tk in nodes]
        whole = math.prod(ps)
        for j, p in enumerate(ps):
            out[j] += whole / p
    for j, tj in enumerate(nodes):
        out[j] *= half / math.prod([tj - tk for k, tk in enumerate(nodes) if k != j])
    return out


@functools.lru_cache(maxsize=32)
def lms_weights(sigmas: tuple[float, ...], order: int) -> tuple[tuple[float, ...], ...]:
    """Step i's Adams-Bashforth weights of x - D at sigmas[i], sigmas[i-1], ... (newest first, at most `order`), each
    coefficient divided by its level; cached, since `sample` runs one grid batch after batch."""
    out = []
    for i in range(len(sigmas) - 1):
        nodes = sigmas[max(i - order + 1, 0):i + 1][::-1]
        out.append(tuple(c / sk for c, sk in zip(lms_coefficients(list(nodes), sigmas[i], sigmas[i + 1]), nodes)))
    return tuple(out)


@torch.no_grad()
def sample_lms(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
               callback: Callback | None = None, order: int = 4, **cond: Any) -> Tensor:
    """Linear multistep of order <= 4: Adams-Bashforth over the last `order` derivatives, integrated exactly in sigma
    (Hairer et al., Solving ODEs I, III.1; the k-diffusion "lms"); the first steps use the history available."""
    if not 1 <= order <= 4:
        raise ValueError(f"LMS order must be in 1..4, got {order}")
    sigmas = check_sigmas(x, sigmas).tolist()
    weights = lms_weights(tuple(sigmas), order)
    # x - D (sigma times the derivative) at sigmas[i], sigmas[i-1], ..., most recent first; 1/sigma is in the
    # weights, which saves a whole-tensor pass per step
    ds: list[Tensor] = []
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = denoiser(x, sigma_batch(s, x), **cond)
        report(callback, i, x, s, s_next, x0)
        ds = [x - x0] + ds[:order - 1]
        x = add_scaled(x, weights[i], ds)
    return x



# Adams-Bashforth weights for equal steps, newest derivative first (Hairer et al., Solving ODEs I, Table III.1.1)
_AB = ((1.0,), (3 / 2, -1 / 2), (23 / 12, -16 / 12, 5 / 12), (55 / 24, -59 / 24, 37 / 24, -9 / 24))


@torch.no_grad()
def sample_ipndm(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                 callback: Callback | None = None, order: int = 4, **cond: Any) -> Tensor:
    """Improved PNDM (Zhang & Chen 2023, "DEIS", Sec. 4 and eq. 26): Adams-Bashforth with equal-step weights on
    eps = (x - D) / sigma, stepping x' = x + (s' - s) sum_j b_j eps_(i-j), lower orders while history builds."""
    if not 1 <= order <= 4:
        raise ValueError(f"iPNDM order must be in 1..4, got {order}")
    sigmas = check_sigmas(x, sigmas).tolist()
    ds: list[Tensor] = []
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = denoiser(x, sigma_batch(s, x), **cond)
        report(callback, i, x, s, s_next, x0)
        ds = [(x - x0).div_(s)] + ds[:order - 1]
        x = add_scaled(x, [(s_next - s) * b for b in _AB[len(ds) - 1]], ds)
    return x


LMS = Method(sample_lms, "ODE", 4, 1)
IPNDM = Method(sample_ipndm, "ODE", 2, 1, grid="exponential")
