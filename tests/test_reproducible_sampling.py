"""The image for seed k is the same whatever the batch size it is drawn in, for every sampler whose steps treat
samples independently (all but pc's batch-mean Langevin step size and dopri5's batch-wide step control)."""

import pytest
import torch

from torchdiffusion.build import build_model
from torchdiffusion.config import ModelConfig, ProcessConfig
from torchdiffusion.generate import generate
from torchdiffusion.sampling import METHODS
from torchdiffusion.sampling.common import noise_like

BATCH_COUPLED = {"pc", "dopri5"}
SEED, NUM = 1234, 64


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    params = {"in_channels": 1, "image_size": 8, "base_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
              "attn_resolutions": [4], "num_heads": 2}
    model, _ = build_model(ModelConfig(backbone="unet", prediction="eps", params=params),
                           ProcessConfig(name="ddpm", T=100))
    return model.eval()


@pytest.mark.parametrize("sampler", sorted(set(METHODS) - BATCH_COUPLED))
def test_sample_k_is_the_same_at_batch_sizes_1_7_and_64(unet, sampler):
    full, _ = generate(unet, (1, 8, 8), NUM, sampler=sampler, steps=2, seed=SEED, batch_size=64)
    by7, _ = generate(unet, (1, 8, 8), NUM, sampler=sampler, steps=2, seed=SEED, batch_size=7)
    assert torch.equal(by7, full)
    for k in (0, 9, 63):  # alone, as another process drawing samples k.. of the same seed would
        one, _ = generate(unet, (1, 8, 8), 1, sampler=sampler, steps=2, seed=SEED + k, batch_size=1)
        assert torch.equal(one[0], full[k]), k


def test_stochastic_samples_differ_between_seeds(unet):
    a, _ = generate(unet, (1, 8, 8), 2, sampler="ddpm", steps=3, seed=0)
    assert not torch.equal(a[0], a[1])


def test_per_sample_generators_give_each_row_its_own_stream():
    gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
    x = noise_like(torch.zeros(2, 5), gens)
    assert torch.equal(x[1], torch.randn(5, generator=torch.Generator().manual_seed(4)))
    with pytest.raises(ValueError, match="one per sample"):
        noise_like(torch.zeros(3, 5), gens)
