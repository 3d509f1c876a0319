"""Inverse problems and editing over any denoiser: measurement operators, the exact mixture posterior, posterior
samplers (`solve` over `METHODS`, each an `InverseMethod` beside its function), and SDEdit, DDIM inversion and
interpolation, and super-resolution by a conditional model with cascades (`superres`; docs/inverse.md)."""

from ..registry import INVERSE as METHODS
from .editing import INVERTIBLE, Inversion, ddim_invert, decode, interpolate, sdedit, slerp, strength_sigma
from .decoded import DecodedOperator
from .latent import check_latent_method, latent_inpaint, latent_mask, latent_solve
from .method import InverseMethod
from .operators import Blur, Compose, Downsample, Mask, Matrix, Operator, gaussian_kernel, motion_kernel
from .posterior import MixturePosterior
from .solve import solve
from .specs import MASK_PRESETS, OPERATORS, mask_preset, operator_from_spec
from .superres import Cascade, cascade, upscale
from .svd import SVD

__all__ = ["INVERTIBLE", "MASK_PRESETS", "METHODS", "OPERATORS", "SVD", "Blur", "Cascade", "Compose", "DecodedOperator",
           "Downsample", "InverseMethod", "Inversion", "Mask", "Matrix", "MixturePosterior", "Operator", "cascade",
           "check_latent_method", "ddim_invert", "decode", "gaussian_kernel", "interpolate", "latent_inpaint",
           "latent_mask", "latent_solve", "mask_preset", "motion_kernel", "operator_from_spec", "sdedit", "slerp",
           "solve", "strength_sigma", "upscale"]
