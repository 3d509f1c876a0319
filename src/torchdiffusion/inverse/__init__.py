"""Inverse problems and editing over any denoiser: measurement operators, the exact mixture posterior, posterior
samplers (`solve` over `METHODS`, each an `InverseMethod` beside its function), and SDEdit, DDIM inversion and
interpolation, and super-resolution by a conditional model with cascades (`superres`; docs/inverse.md)."""

from ..registry import INVERSE as METHODS
from .editing import Inversion, ddim_invert, decode, interpolate, sdedit, slerp, strength_sigma
from .method import InverseMethod
from .operators import SVD, Blur, Compose, Downsample, Mask, Matrix, Operator, gaussian_kernel, motion_kernel
from .posterior import MixturePosterior
from .solve import solve
from .superres import Cascade, cascade, upscale

__all__ = ["METHODS", "SVD", "Blur", "Cascade", "Compose", "Downsample", "InverseMethod", "Inversion", "Mask", "Matrix",
           "MixturePosterior", "Operator", "ddim_invert", "decode", "gaussian_kernel", "interpolate", "motion_kernel",
           "sdedit", "slerp", "solve", "strength_sigma", "cascade", "upscale"]
