"""Latent diffusion (Rombach et al. 2022): autoencoders (KL and VQ, with a patch discriminator), trained by
`train_autoencoder`; `load_autoencoder(run)` for their codec; and `LatentTrainer`, the diffusion Trainer on scaled
latents, whose runs `torchdiffusion.load_run` loads with their autoencoder to decode samples.

`encode(x)` returns a latent tensor: the posterior MEAN for the KL autoencoder, the QUANTISED latent (nearest
codes) for the VQ one. `decode(z)` returns images in [-1, 1] (the VQ decoder snaps z to its codes first).
"""

from .autoencoder import Autoencoder, AutoencoderConfig, DiagonalGaussian
from .codec import LatentCodec, load_autoencoder
from .config import AutoencoderRunConfig, load_autoencoder_config
from .ldm import LatentTrainer, train_latent
from .train_ae import AutoencoderTrainer, train_autoencoder

__all__ = ["Autoencoder", "AutoencoderConfig", "AutoencoderRunConfig", "AutoencoderTrainer", "DiagonalGaussian",
           "LatentCodec", "LatentTrainer", "load_autoencoder", "load_autoencoder_config", "train_autoencoder",
           "train_latent"]
