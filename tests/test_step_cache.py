"""Step caching (DeepCache, Ma et al. 2023): interval 1 is the plain model exactly, a cached call skips the deep
blocks, a cached call on unchanged inputs reproduces the full pass, and it works under every sampler and guidance."""

from __future__ import annotations

import math

import pytest
import torch

from torchdiffusion import sample
from torchdiffusion.model_denoiser import ModelDenoiser
from torchdiffusion.nn.unet import UNet, UNetConfig
from torchdiffusion.processes import VPLinear
from torchdiffusion.step_cache import CachedUNet, step_cached


def random_unet(seed: int = 0, levels: int = 3, **kw) -> UNet:
    """A small U-Net with every parameter random (its zero-initialised layers too, or the output would be 0)."""
    torch.manual_seed(seed)
    cfg = UNetConfig(in_channels=2, image_size=12, base_channels=8, channel_mult=(1, 2, 2)[:levels],
                     num_res_blocks=1, attn_resolutions=(6,), num_heads=2, groups=4, **kw)
    net = UNet(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.15)
    return net.eval()


def model_of(net: UNet) -> ModelDenoiser:
    return ModelDenoiser(net, VPLinear(), "eps")


def count_calls(module: torch.nn.Module) -> list[int]:
    """A one-element counter incremented by each forward of module."""
    n = [0]
    module.register_forward_hook(lambda *_: n.__setitem__(0, n[0] + 1))
    return n


@torch.no_grad()
@pytest.mark.parametrize("method", ["ddim", "ipndm", "heun", "dpmpp_2m"])
def test_interval_one_is_the_plain_model_exactly(method):
    model = model_of(random_unet())
    noise = torch.randn(3, 2, 12, 12, generator=torch.Generator().manual_seed(1)) * model.sigma_max
    plain = sample(model, noise, method=method, nfe=10)
    cached = sample(step_cached(model, 1), noise, method=method, nfe=10)
    assert torch.equal(plain, cached)


@torch.no_grad()
def test_a_cached_call_on_the_same_inputs_reproduces_the_full_pass():
    """The split (level 0 rerun, the rest stored) is the U-Net's own forward: same inputs, same output bit for bit."""
    for levels in (2, 3):
        net = random_unet(levels=levels)
        c = CachedUNet(net)
        x, t = torch.randn(2, 2, 12, 12), torch.tensor([0.3, 0.7])
        full = net(x, t)
        c.full = True
        assert torch.equal(c(x, t), full)
        c.full = False
        assert torch.equal(c(x, t), full)
        assert (c.deep_calls, c.shallow_calls) == (1, 1)


@torch.no_grad()
@pytest.mark.parametrize("interval", [2, 3, 5])
def test_cached_steps_skip_the_deep_blocks(interval):
    net = random_unet()
    deep = [count_calls(m) for m in (net.down[1][0], net.downsample[0], net.mid_res1, net.up[0][0], net.up[1][1])]
    shallow = [count_calls(m) for m in (net.conv_in, net.down[0][0], net.up[2][0], net.up[2][1], net.conv_out)]
    model = step_cached(model_of(net), interval, None)  # the uniform 1:N schedule
    steps = 10
    noise = torch.randn(2, 2, 12, 12, generator=torch.Generator().manual_seed(2)) * model.sigma_max
    out = sample(model, noise, method="euler", nfe=steps)  # one call per step
    full = math.ceil(steps / interval)
    assert all(n[0] == full for n in deep)
    assert all(n[0] == steps for n in shallow)
    assert (model.cached.deep_calls, model.cached.shallow_calls) == (full, steps - full)
    plain = sample(model_of(net), noise, method="euler", nfe=steps)
    assert torch.isfinite(out).all() and not torch.equal(out, plain)  # the reuse changes the result a little


@torch.no_grad()
def test_each_trajectory_starts_with_a_full_pass():
    """A second sample() (a new batch) does not reuse the last trajectory's features: same result as a fresh wrapper."""
    model = model_of(random_unet())
    noise = torch.randn(2, 2, 12, 12, generator=torch.Generator().manual_seed(3)) * model.sigma_max
    cached = step_cached(model, 3, None)
    first = sample(cached, noise, method="ipndm", nfe=8)
    again = sample(cached, noise, method="ipndm", nfe=8)
    fresh = sample(step_cached(model, 3, None), noise, method="ipndm", nfe=8)
    assert torch.equal(first, again) and torch.equal(first, fresh)


@torch.no_grad()
def test_guidance_branches_keep_their_own_features():
    """Classifier-free guidance through the wrapper: branches that do not batch (one with context, one without)
    each reuse their own stored features; interval 1 equals the plain guided model."""
    from torchdiffusion.guidance import classifier_free

    net = random_unet(num_classes=3)
    model = model_of(net)
    labels = torch.tensor([0, 2])
    noise = torch.randn(2, 2, 12, 12, generator=torch.Generator().manual_seed(4)) * model.sigma_max

    def guided(d):
        return classifier_free(d, scale=2.0, cond={"class_labels": labels}, uncond={})

    plain = sample(guided(model), noise, method="ddim", nfe=6)
    assert torch.equal(sample(guided(step_cached(model, 1)), noise, method="ddim", nfe=6), plain)
    cached = step_cached(model, 2, None)
    sample(guided(cached), noise, method="ddim", nfe=6)
    assert set(cached.cached.store) == {0, 1}  # two branches, two slots
    assert cached.cached.deep_calls == 2 * 3 and cached.cached.shallow_calls == 2 * 3


@torch.no_grad()
def test_features_of_a_full_pass_above_max_sigma_are_never_reused():
    """Non-uniform refresh: every step after a full pass at sigma > max_sigma is a full pass; below it, 1:N."""
    net = random_unet()
    deep = count_calls(net.mid_res1)
    model = step_cached(model_of(net), 3, 10.0)
    x = torch.randn(2, 2, 12, 12)
    sigmas = [100.0, 50.0, 20.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    full = []
    for s in sigmas:
        before = deep[0]
        model(x, torch.full((2,), s, dtype=torch.float64))
        full.append(deep[0] > before)
    # full at 100, 50, 20 (each's predecessor was above 10), at 5 (its predecessor 20 was), then 1:3 from 5
    assert full == [True, True, True, True, False, False, True, False]
    assert (model.cached.deep_calls, model.cached.shallow_calls) == (5, 3)
    uniform = step_cached(model_of(net), 3, None)
    for s in sigmas:
        uniform(x, torch.full((2,), s, dtype=torch.float64))
    assert uniform.cached.deep_calls == 3  # steps 0, 3, 6


def test_the_default_cap_follows_the_parameterisation():
    """eps and score models reach x0_hat through sigma * output, so their cap is 20 sigma_data; bounded ones 1."""
    from torchdiffusion.step_cache import default_max_sigma

    net = random_unet()
    for prediction, want in (("eps", 20 * 0.5), ("score", 20 * 0.5), ("v", 0.5), ("x0", 0.5)):
        m = ModelDenoiser(net, VPLinear(), prediction, sigma_data=0.5)
        assert default_max_sigma(m) == want
        cap = step_cached(m, 2).max_sigma
        assert cap == want


def test_bad_requests_are_value_errors():
    model = model_of(random_unet())
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="interval"):
            step_cached(model, bad)
    for bad in (0.0, -1.0, float("nan"), True, "10"):
        with pytest.raises(ValueError, match="max_sigma"):
            step_cached(model, 2, bad)
    with pytest.raises(ValueError, match="at least two levels"):
        step_cached(model_of(random_unet(levels=1)), 2)
    with pytest.raises(ValueError, match="U-Net"):
        step_cached(ModelDenoiser(torch.nn.Linear(2, 2), VPLinear(), "eps"), 2)
