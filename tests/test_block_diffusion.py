"""Block diffusion (BD3-LM, Arriola et al. 2025) against ground truth: the [x_t, x0] attention mask against its
definition entry by entry, the block bound at block size 1 against the network's own autoregressive NLL read from
prefixes, at block size L against MDLM's bound, its Monte Carlo estimates against the enumerated bound, and block
sampling with an exact denoiser against the data distribution."""

from __future__ import annotations

import math
from itertools import product

import pytest
import torch

from torchdiffusion.config import ConfigError, load_config
from torchdiffusion.discrete import ExactDenoiser, MaskedDiffusion, SequenceDistribution, enumerated_masked_bound
from torchdiffusion.discrete.block import BlockDenoiser, block_ancestral, block_diffusion_mask, block_ids
from torchdiffusion.discrete.denoiser import BackboneDenoiser
from torchdiffusion.discrete.exact import all_sequences
from torchdiffusion.discrete.generate import generate_tokens
from torchdiffusion.evaluate.text import sequence_nll
from torchdiffusion.losses.discrete import MASKED
from torchdiffusion.nn.sequence import SequenceTransformer, SequenceTransformerConfig

K, L = 3, 4  # data classes ([MASK] = 3) and sequence length of the small cases


def random_net(seed: int = 0, length: int = L) -> SequenceTransformer:
    """A bidirectional transformer without time input whose every weight is random (adaLN-Zero's zeros replaced, so
    the output depends on the input)."""
    torch.manual_seed(seed)
    net = SequenceTransformer(SequenceTransformerConfig(vocab_size=K + 1, seq_len=length, hidden_dim=16, depth=2,
                                                        num_heads=2, positions="rotary", time_conditioning=False))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return net.eval()


def enumerated_block_bound(model, x0: torch.Tensor, block_size: int) -> torch.Tensor:
    """sum_b int_0^1 (1/t) E_q[sum_(masked n in b) -log p(x0^n | x_t^b, x0^(<b))] dt by brute force: every mask
    pattern of every block, later blocks filled with arbitrary tokens, and int_0^1 t^(k-1) (1-t)^(m-k) dt = B(k, m-k+1)
    for k of the block's m tokens masked (linear schedule) -> (N,) nats."""
    N, length = x0.shape
    blocks = block_ids(length, block_size)
    g = torch.Generator().manual_seed(1)
    total = torch.zeros(N, dtype=torch.float64)
    for b in blocks.unique().tolist():
        pos = (blocks == b).nonzero()[:, 0].tolist()
        m = len(pos)
        for pattern in product([0, 1], repeat=m):
            k = sum(pattern)
            if not k:
                continue  # nothing masked: no term
            x_t = torch.randint(K + 1, x0.shape, generator=g)  # later blocks: anything, they must not matter
            x_t[:, blocks < b] = x0[:, blocks < b]
            for n, masked in zip(pos, pattern):
                x_t[:, n] = K if masked else x0[:, n]
            log_p = model(x_t, None, context=x0).double()
            nll = -log_p.gather(-1, x0[..., None])[..., 0]
            beta = math.gamma(k) * math.gamma(m - k + 1) / math.gamma(m + 1)
            total += beta * sum(nll[:, n] for n, masked in zip(pos, pattern) if masked)
    return total


def test_the_attention_mask_matches_its_definition_entry_by_entry():
    for length, size in [(7, 1), (7, 3), (8, 4), (6, 6), (5, 8)]:
        got = block_diffusion_mask(length, size)
        want = torch.zeros(2 * length, 2 * length, dtype=torch.bool)
        for i in range(2 * length):
            for j in range(2 * length):
                bi, bj = (i % length) // size, (j % length) // size
                if i < length:  # a noisy token: its own block of x_t, and the clean blocks before it
                    want[i, j] = bi == bj if j < length else bj < bi
                else:  # a clean token: clean blocks up to its own, never x_t
                    want[i, j] = j >= length and bj <= bi
        assert torch.equal(got, want), (length, size)


def test_at_block_size_one_the_bound_is_the_networks_autoregressive_nll_read_from_prefixes():
    net = random_net()
    model = BlockDenoiser(net, MaskedDiffusion(K, block_size=1))
    x0 = all_sequences(K, L)[::5]
    by_prefix = torch.zeros(len(x0), dtype=torch.float64)
    for n in range(L):  # token n from x0_(<n) alone: a sequence that stops at n, [MASK] at n
        x_t = torch.cat([x0[:, :n], torch.full((len(x0), 1), K)], dim=1)
        by_prefix -= model(x_t, None, context=x0[:, :n + 1]).double()[:, n].gather(1, x0[:, n:n + 1])[:, 0]
    torch.testing.assert_close(enumerated_block_bound(model, x0, 1), by_prefix, rtol=1e-6, atol=1e-6)


def test_at_block_size_l_the_bound_is_mdlms_bound_of_the_same_network():
    net = random_net(1)
    x0 = all_sequences(K, L)[::7]
    block = enumerated_block_bound(BlockDenoiser(net, MaskedDiffusion(K, block_size=L)), x0, L)
    mdlm = enumerated_masked_bound(BackboneDenoiser(net, MaskedDiffusion(K)), x0)
    torch.testing.assert_close(block, mdlm, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size", [1, 2, 3])
def test_the_held_out_estimate_and_the_training_loss_are_unbiased_for_the_block_bound(size):
    model = BlockDenoiser(random_net(2), MaskedDiffusion(K, block_size=size))
    x0 = all_sequences(K, L)[[0, 17, 40, 80]]
    want = enumerated_block_bound(model, x0, size)
    reps = 3000
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        held_out = sequence_nll(model, x0.repeat(reps, 1), strata=4, generator=g).view(reps, -1)
        loss = MASKED(model, x0.repeat(reps, 1), generator=g).view(reps, -1) * L  # nats per token -> per sequence
    for est in (held_out, loss):  # within 4.5 standard errors, at most 6% of the bound
        se = est.std(0) / math.sqrt(reps)
        assert bool(((est.mean(0) - want).abs() < 4.5 * se).all()), (est.mean(0), want, se)
        assert bool((se < 0.06 * want).all())


class ExactBlockDenoiser:
    """The exact p(x0^n | x_t^b, x0^(<b)) of a SequenceDistribution: the exact masked denoiser on the clean blocks
    before b, block b as it is, and every later token [MASK]; inputs shorter than the data are [MASK]-padded. It is
    asked at t = 1/2: under masking the posterior does not depend on t, but at t = 1 a clean token has no likelihood."""

    time_independent = True

    def __init__(self, data: SequenceDistribution, process: MaskedDiffusion):
        self.exact, self.process = ExactDenoiser(data, process), process

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x_t if context is None else context
        n, full = x_t.shape[1], self.exact.data.length
        pad = torch.full((len(x_t), full - n), self.process.mask_id)
        x_t, context = torch.cat([x_t, pad], 1), torch.cat([context, pad], 1)
        blocks = block_ids(full, self.process.block_size)
        t = torch.full_like(torch.as_tensor(t, dtype=torch.float64), 0.5)
        out = torch.empty(*x_t.shape, self.process.num_classes, dtype=torch.float64)
        for b in blocks.unique().tolist():
            x = torch.where(blocks < b, context, torch.where(blocks == b, x_t, self.process.mask_id))
            out[:, blocks == b] = self.exact(x, t)[:, blocks == b]
        return out[:, :n]


@pytest.mark.parametrize("size,prompt", [(2, 0), (3, 0), (2, 1)])
def test_block_sampling_with_the_exact_denoiser_draws_the_data_distribution(size, prompt):
    seqs = all_sequences(K, L)
    probs = torch.rand(len(seqs), generator=torch.Generator().manual_seed(3)) ** 4
    probs[0] = 0.0
    if prompt:  # condition on the first token 1: the samples follow p(x | x^0 = 1)
        probs[seqs[:, 0] != 1] = 0.0
    probs /= probs.sum()
    data = SequenceDistribution(seqs, probs)
    denoiser = ExactBlockDenoiser(data, MaskedDiffusion(K, block_size=size))
    n = 6000
    x = torch.full((n, L), K)
    x[:, :prompt] = 1
    # 128 steps a block: two tokens of a block revealed in one step would be drawn independently
    out = block_ancestral(denoiser, x, 256, generator=torch.Generator().manual_seed(0), prompt_len=prompt)
    freq = torch.bincount(data.index_of(out), minlength=len(seqs)).double() / n
    assert bool((data.index_of(out) >= 0).all())
    assert float((freq - probs).abs().sum()) < 0.08  # total variation (x2) of 6000 draws over 81 sequences


def test_generate_tokens_keeps_the_prompt_and_counts_one_call_per_step():
    model = BlockDenoiser(random_net(4, length=8), MaskedDiffusion(K, block_size=2))
    ids, stats = generate_tokens(model, 5, 8, steps=8, prompt=torch.tensor([2, 0, 1]), seed=0)
    assert ids.shape == (5, 8) and bool((ids[:, :3] == torch.tensor([2, 0, 1])).all()) and bool((ids < K).all())
    assert stats["steps"] == 3 * 2  # blocks 1-3 (block 0 is the prompt's), 8 steps / 4 blocks each


@pytest.mark.parametrize("override,message", [
    (["process.block_size=0"], "process.block_size must be an integer >= 1"),
    (["process.block_size=8", "model.params.time_conditioning=true"], "without time or class conditioning"),
])
def test_bad_block_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("kjv_mdlm", override)


def test_a_block_size_on_a_d3pm_kernel_is_a_config_error():
    with pytest.raises(ConfigError, match="block diffusion is a masked process option"):
        load_config("kjv_d3pm", ["process.block_size=4"])


def test_the_packaged_block_config_is_block_diffusion_on_the_mdlm_backbone():
    bd3, mdlm = load_config("kjv_bd3lm"), load_config("kjv_mdlm")
    assert bd3.process.block_size is not None and 1 < bd3.process.block_size < bd3.data.options["seq_len"]
    assert bd3.model.params == mdlm.model.params and bd3.train == mdlm.train
