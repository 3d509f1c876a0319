"""Discrete diffusion: categorical processes over K classes, the p(x0 | x_t) denoiser contract, bounds, samplers.

D3PM kernels (Austin et al. 2021) with closed-form marginals and posteriors: `Uniform`, `Absorbing`
(interpolating.py), `DiscretizedGaussian`, `NearestNeighbour` (matrix.py), on the `CategoricalProcess` contract
(process.py); continuous-time masked diffusion (MDLM / MD4) in masked.py; the D3PM bound and hybrid loss in
bound.py; the denoiser contract in denoiser.py; ancestral sampling with caching in sampling.py; the exact denoiser of
a small sequence distribution and bounds by enumeration (the ground truth) in exact.py.
"""

from __future__ import annotations

from .bound import cross_entropy, d3pm_bound, d3pm_loss, step_terms
from .denoiser import BackboneDenoiser, CountingDenoiser, DiscreteDenoiser
from .exact import (ConditionalExactDenoiser, ExactDenoiser, SequenceDistribution, all_sequences, enumerated_d3pm_bound,
                    enumerated_masked_bound)
from .guidance import GUIDANCE_MODES, GuidedDenoiser, TransitionGuidedDenoiser, guided_denoiser, tilted_log_probs
from .interpolating import Absorbing, InterpolatingProcess, Uniform
from .masked import MaskedDiffusion, masked_loss, masked_terms, subs_logits
from .matrix import DiscretizedGaussian, MatrixProcess, NearestNeighbour
from .process import CategoricalProcess
from .sampling import ANCESTRAL, SamplerStats, ancestral, time_grid

__all__ = [
    "ANCESTRAL", "Absorbing", "BackboneDenoiser", "CategoricalProcess", "ConditionalExactDenoiser", "GuidedDenoiser",
    "TransitionGuidedDenoiser", "guided_denoiser", "GUIDANCE_MODES", "CountingDenoiser", "DiscreteDenoiser",
    "DiscretizedGaussian", "ExactDenoiser", "InterpolatingProcess", "MaskedDiffusion", "MatrixProcess",
    "NearestNeighbour", "SamplerStats", "SequenceDistribution", "Uniform", "all_sequences", "ancestral",
    "cross_entropy", "d3pm_bound", "d3pm_loss", "enumerated_d3pm_bound", "enumerated_masked_bound", "masked_loss",
    "masked_terms", "step_terms", "subs_logits", "tilted_log_probs", "time_grid",
]
