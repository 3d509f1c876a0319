"""Discrete diffusion: categorical processes over K classes with closed-form marginals and posteriors.

D3PM kernels (Austin et al. 2021): `Uniform`, `Absorbing` (interpolating.py), `DiscretizedGaussian`,
`NearestNeighbour` (matrix.py), and continuous-time masked diffusion (MDLM / MD4, masked.py), on the
`CategoricalProcess` contract (process.py).
"""

from __future__ import annotations

from .interpolating import Absorbing, InterpolatingProcess, Uniform
from .masked import MaskedDiffusion, masked_loss, masked_terms, subs_logits
from .matrix import DiscretizedGaussian, MatrixProcess, NearestNeighbour
from .process import CategoricalProcess

__all__ = [
    "Absorbing", "CategoricalProcess", "DiscretizedGaussian", "InterpolatingProcess", "MaskedDiffusion",
    "MatrixProcess", "NearestNeighbour", "Uniform", "masked_loss", "masked_terms", "subs_logits",
]
