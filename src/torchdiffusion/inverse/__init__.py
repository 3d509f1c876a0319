"""Inverse problems and editing over any denoiser: measurement operators, the exact mixture posterior, posterior
samplers (`solve`, `METHODS`) and SDEdit, DDIM inversion and interpolation."""

from .operators import SVD, Blur, Compose, Downsample, Mask, Matrix, Operator, gaussian_kernel, motion_kernel
from .posterior import MixturePosterior

__all__ = ["SVD", "Blur", "Compose", "Downsample", "Mask", "Matrix", "MixturePosterior", "Operator", "gaussian_kernel",
           "motion_kernel"]
