"""Training losses: denoising losses with weightings on the x0 error, L_hybrid, the noisy classifier's
cross-entropy, and the trainer's objectives by loss.kind."""

from .coupling import COUPLINGS, couple, ot_permutation
from .denoising import T_SAMPLINGS, WEIGHTINGS, classifier_loss, diffusion_loss, edm_loss, sample_t, x0_weight
from .hybrid import ImportanceSampler, hybrid_loss
from .objectives import TrainingObjective

__all__ = ["COUPLINGS", "T_SAMPLINGS", "WEIGHTINGS", "ImportanceSampler", "TrainingObjective", "classifier_loss", "couple", "diffusion_loss",
           "edm_loss", "hybrid_loss", "ot_permutation", "sample_t", "x0_weight"]
