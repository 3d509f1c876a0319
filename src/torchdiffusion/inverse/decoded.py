"""A measurement of a latent model's decoded image, y = A(decode(z)) + noise (latent DPS: Chung et al. 2023's DPS
with the likelihood gradient taken through the decoder, as Rout et al. 2023 do for latent diffusion models).

The map z -> A(decode(z)) is not linear (the decoder is a network), so it has no adjoint or SVD: only the gradient
methods of `solve` (DPS) take it, and `solve` refuses the others with the reason.
"""

from __future__ import annotations

from typing import Any

import torch

from .operators import Operator, Shape

Tensor = torch.Tensor


def _differentiable(codec: Any, name: str) -> Any:
    """The codec's `differentiable_<name>` (e.g. LatentCodec's, without torch.no_grad), else its plain `<name>`."""
    return getattr(codec, f"differentiable_{name}", None) or getattr(codec, name)


class DecodedOperator(Operator):
    """z (B, *latent_shape) -> operator(codec.decode(z)): a pixel-space measurement of the decoded latent.

    codec: an object with `decode(z)` (and `encode(x)` for the gluing term) that autograd can differentiate, or
    with `differentiable_decode` / `differentiable_encode` (LatentCodec). latent_shape: one latent's shape
    (default `codec.latent_shape`)."""

    linear = False
    nonlinear_reason = ("the measurement of a latent model is taken of the decoded image, A(decode(z)), which is not "
                        "linear in the latent z (the decoder is a neural network)")

    def __init__(self, operator: Operator, codec: Any, latent_shape: Shape | None = None):
        self.operator, self.codec = operator, codec
        shape = getattr(codec, "latent_shape", None) if latent_shape is None else latent_shape
        if shape is None:
            raise ValueError("DecodedOperator needs latent_shape when the codec does not declare one")
        self.latent_shape = tuple(int(n) for n in shape)
        self._decode, self._encode = _differentiable(codec, "decode"), _differentiable(codec, "encode")

    def decode(self, z: Tensor) -> Tensor:
        """decode(z), checked to carry z's gradient (a decoder under torch.no_grad would silently give DPS none)."""
        x = self._decode(z)
        if z.requires_grad and torch.is_grad_enabled() and not x.requires_grad:
            raise ValueError(f"the codec's decode ({type(self.codec).__name__}) does not pass gradients; latent DPS "
                             f"differentiates through the decoder (give the codec a differentiable_decode)")
        return x

    def __call__(self, z: Tensor) -> Tensor:
        return self.operator(self.decode(z))

    def gluing(self, z0: Tensor) -> Tensor:
        """||z0 - E(decode(z0))||^2 per row (B,): Rout et al. 2023's gluing term (their GML-DPS), zero on latents
        the autoencoder maps to themselves."""
        return (z0 - self._encode(self.decode(z0))).reshape(len(z0), -1).pow(2).sum(1)

    def sample_shape(self, y: Tensor) -> Shape:
        return self.latent_shape

    def out_shape(self, shape: Shape) -> Shape:
        with torch.no_grad():
            return tuple(self(torch.zeros(1, *shape)).shape[1:])

    def adjoint(self, y: Tensor) -> Tensor:
        raise ValueError(f"a DecodedOperator has no adjoint: {self.nonlinear_reason}")

    def matrix(self, shape: Shape) -> Tensor:
        raise ValueError(f"a DecodedOperator has no matrix: {self.nonlinear_reason}")

    def svd(self, shape: Shape) -> Any:
        raise ValueError(f"a DecodedOperator has no SVD: {self.nonlinear_reason}")
