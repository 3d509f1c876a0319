"""Editing a latent diffusion model (Rombach et al. 2022): the image is taken to the latent space by the model's
codec (an object with `encode(x)` / `decode(z)`, e.g. latent.LatentCodec), edited there, and decoded.

SDEdit, DDIM inversion and interpolation need no measurement, so they are exact in latent space. Inpainting is
the latent-replacement approximation (Blended Latent Diffusion, Avrahami et al. 2023): the mask is min-pooled to
the latent grid (a latent cell counts as observed only if every pixel of its patch is), the posterior is sampled
given the encoded observed latent cells, the draw is decoded and the observed pixels are pasted back. It is
approximate: the encoder's receptive field reaches across the mask's edge, and the decoder's output near it need
not agree with the pasted pixels. Operators that mix pixels (blur, downsampling) have no such latent counterpart:
`latent_solve` samples the posterior of the latent given a measurement of the decoded image by latent DPS (the
likelihood gradient through the decoder, `DecodedOperator`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..registry import INVERSE as METHODS
from .decoded import DecodedOperator
from .operators import Mask, Operator
from .solve import solve

Tensor = torch.Tensor


def latent_mask(mask: Tensor, latent_shape: tuple[int, int, int]) -> Tensor:
    """A pixel mask (C, H, W) of 0 (missing) / 1 (observed) on the latent grid (c, h, w): a cell is observed only if
    every pixel of its f x f patch (f = H / h) in every channel is (min-pooling)."""
    c, h, w = latent_shape
    if mask.ndim != 3 or mask.shape[1] % h or mask.shape[2] % w or mask.shape[1] // h != mask.shape[2] // w:
        raise ValueError(f"a mask of shape {tuple(mask.shape)} does not tile the latent grid {h}x{w}")
    f = mask.shape[1] // h
    observed = mask.float().amin(0, keepdim=True)[None]                # (1, 1, H, W): observed in every channel
    cells = -F.max_pool2d(-observed, kernel_size=f, stride=f)          # min-pool: (1, 1, h, w)
    return cells[0].expand(c, h, w).contiguous()


def latent_inpaint(denoiser: Any, codec: Any, x: Tensor, mask: Tensor, *, method: str = "repaint", nfe: int = 100,
                   generator: Any = None, **options: Any) -> Tensor:
    """Inpainting draws (B, C, H, W) of a latent model: x (B, C, H, W) images in [-1, 1] whose pixels with mask
    (C, H, W) = 1 are observed; `solve` with a latent Mask on the encoded observed pixels (missing ones set to 0),
    decoded, observed pixels pasted back. Approximate (see the module docstring)."""
    mask = mask.to(x)
    z_y = codec.encode(x * mask)
    m = latent_mask(mask, tuple(z_y.shape[1:]))
    if bool(m.all()):  # nothing to fill on the latent grid: cannot happen when a pixel is missing (min-pooling)
        return x.clone()
    op = Mask(m)
    z = solve(denoiser, op(z_y), op, noise_std=0.0, method=method, nfe=nfe, generator=generator, **options)
    return mask * x + (1 - mask) * codec.decode(z).to(x)


def latent_solve(denoiser: Any, codec: Any, y: Tensor, operator: Operator, *, noise_std: float, method: str = "dps",
                 nfe: int = 100, generator: Any = None, **options: Any) -> Tensor:
    """Images (B, C, H, W): draws of decode(z) given y = operator(decode(z)) + noise_std n (a pixel measurement, one
    per row) from a latent model: `solve` with `DecodedOperator(operator, codec)` (latent DPS, Chung et al. 2023
    through the decoder as in Rout et al. 2023; method must be a gradient method), then decoded."""
    check_latent_method(method, "a latent model")
    z = solve(denoiser, y, DecodedOperator(operator, codec), noise_std=noise_std, method=method, nfe=nfe,
              generator=generator, **options)
    return codec.decode(z).to(y)


def check_latent_method(method: str, where: str, task: str = "posterior sampling") -> None:
    """ValueError, one paragraph, where `method` cannot sample a latent model's posterior given a pixel measurement
    (it needs a linear operator); the gradient methods (dps) pass."""
    m = METHODS.lookup(method)
    if m.needs_linear:
        ok = ", ".join(n for n in METHODS if not METHODS[n].needs_linear)
        raise ValueError(f"{where} is a latent diffusion model, and {task} with method {method!r} is refused: "
                         f"{method} ({m.kind}) works with the measurement operator's adjoint or SVD, but the "
                         f"measurement is taken of the decoded image, A(decode(z)), which is not linear in the "
                         f"latent z (the decoder is a neural network). Use --method {ok} (latent DPS: the "
                         f"measurement's gradient through the decoder, docs/latent.md), the default on latent models")
