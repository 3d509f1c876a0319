"""torchdiffusion: diffusion generative models, correct against ground truth and fast on a CPU."""

from .analytic import GaussianMixture
from .denoiser import Denoiser
from .loading import load
from .model_denoiser import ModelDenoiser
from .processes import EDM, VE, DiscreteVP, Flow, GaussianProcess, SubVP, VPLinear
from .sampling import METHODS, sample

__version__ = "0.1.0"
__all__ = ["EDM", "METHODS", "VE", "Denoiser", "DiscreteVP", "Flow", "GaussianMixture", "GaussianProcess",
           "ModelDenoiser", "SubVP", "VPLinear", "load", "sample"]
