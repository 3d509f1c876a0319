"""Few-step generation by distillation: progressive distillation, consistency distillation and training, and
rectified flow's reflow, each a `Distiller` over a teacher Denoiser and a student ModelDenoiser (docs/fewstep.md)."""

from ..losses.consistency import pseudo_huber
from .common import Distiller, ddim_step, heun_step
from .consistency import ConsistencyDistiller
from .loop import fit
from .progressive import ProgressiveDistiller, progressive_target
from .reflow import ReflowDistiller, draw_reflow_pairs, reflow_pairs, straightness

__all__ = ["ConsistencyDistiller", "Distiller", "ProgressiveDistiller", "ReflowDistiller", "ddim_step",
           "draw_reflow_pairs", "fit", "heun_step", "progressive_target", "pseudo_huber", "reflow_pairs",
           "straightness"]
