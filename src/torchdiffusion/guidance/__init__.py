"""Guidance: functions from Denoiser to Denoiser, so every sampler gets them for free (docs/guidance.md).

    cfg = classifier_free(model, cond={"class_labels": y}, uncond={"class_labels": null}, scale=3.0)
    x = sample(cfg, x, method="dpmpp_2m", nfe=30)
"""

from .base import GuidedDenoiser, check_scale
from .batching import evaluate_branches, expand_cond, stack_conds
from .cfg import LinearGuidance, classifier_free, composable, negative_conditioning
from .classifier import ClassifierGuidance, classifier_guidance, classifier_log_prob, log_prob_grad, process_classifier
from .interval import LimitedInterval, limited_interval
from .rescale import rescale_std
from .threshold import Thresholded, dynamic_threshold, static_threshold, thresholded

__all__ = ["ClassifierGuidance", "GuidedDenoiser", "LimitedInterval", "LinearGuidance", "Thresholded",
           "check_scale", "classifier_free", "classifier_guidance", "classifier_log_prob", "composable",
           "dynamic_threshold", "evaluate_branches", "expand_cond", "limited_interval", "log_prob_grad",
           "negative_conditioning", "process_classifier", "rescale_std", "stack_conds", "static_threshold",
           "thresholded"]
