"""Likelihoods of diffusion models: the probability-flow ODE's exact log-density and variational bounds."""

from .bpd import bits_per_dim, uniform_dequantize
from .elbo import stratified_vlb_bpd, vdm_diffusion_loss, vdm_elbo
from .ode import gaussian_prior_log_prob, ode_log_likelihood
from .proposal import LogSNRProposal, fit_log_snr_proposal

__all__ = ["LogSNRProposal", "bits_per_dim", "fit_log_snr_proposal", "gaussian_prior_log_prob", "ode_log_likelihood",
           "stratified_vlb_bpd", "uniform_dequantize", "vdm_diffusion_loss", "vdm_elbo"]
