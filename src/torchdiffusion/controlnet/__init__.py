"""ControlNet (Zhang et al. 2023): a trainable copy of a frozen U-Net's encoder steering it with a control image."""

from .conditions import CONTROL_KINDS, control_image, read_control_png
from .model import ControlledUNet, ControlNet, controlled_denoiser
from .train import ControlNetTrainer, load_controlled_run, train_controlnet

__all__ = ["CONTROL_KINDS", "ControlNet", "ControlNetTrainer", "ControlledUNet", "control_image",
           "controlled_denoiser", "load_controlled_run", "read_control_png", "train_controlnet"]
