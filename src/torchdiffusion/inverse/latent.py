"""Editing a latent diffusion model (Rombach et al. 2022): the image is taken to the latent space by the model's
codec (an object with `encode(x)` / `decode(z)`, e.g. latent.LatentCodec), edited there, and decoded.

SDEdit, DDIM inversion and interpolation need no measurement, so they are exact in latent space. Inpainting is
the latent-replacement approximation (Blended Latent Diffusion, Avrahami et al. 2023): the mask is min-pooled to
the latent grid (a latent cell counts as observed only if every pixel of its patch is), the posterior is sampled
given the encoded observed latent cells, the draw is decoded and the observed pixels are pasted back. It is
approximate: the encoder's receptive field reaches across the mask's edge, and the decoder's output near it need
not agree with the pasted pixels. Operators that mix pixels (blur, downsampling) have no such latent counterpart.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .operators import Mask
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


def latent_refusal(path: str, task: str) -> str:
    """Why `task` (a pixel-space measurement: blur, downsampling) is refused on a latent model, in one paragraph."""
    return (f"{path} is a latent diffusion model, and {task} needs a measurement of the decoded image (a blur, a "
            f"downsampling) that has no counterpart on the autoencoder's latent grid: posterior sampling in latent "
            f"space cannot make the decoded result fit it without differentiating through the decoder (latent DPS, "
            f"not implemented here), and the results would look plausible without fitting the measurement. Use a "
            f"pixel-space model for {task}; img2img, invert, interpolate and inpaint (latent replacement, "
            f"approximate) do work on latent models (docs/latent.md)")
