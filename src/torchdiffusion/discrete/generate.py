"""Drawing token sequences from a trained token model, diffusion or autoregressive, with an optional prompt.

A masked (absorbing) model starts from all [MASK] and the prompt's tokens are put back in place after every step
(replacement, as in inpainting: at t = 1 the forward process has masked every token, so the prompt cannot come from
it), and the model infills the rest around them; the autoregressive model continues the prompt. Batch b draws from one generator
seeded with seed + b, so a run is reproducible for a given batch size.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn
from tqdm.auto import tqdm

from .autoregressive import AutoregressiveModel, autoregressive
from .block import BlockDenoiser, block_ancestral
from .guidance import guided_denoiser
from .sampling import SamplerStats, ancestral

Tensor = torch.Tensor


def model_seq_len(model: nn.Module) -> int:
    """The longest sequence the model's backbone was built for."""
    return int(model.backbone.config.seq_len)


def check_request(model: nn.Module, length: int, prompt: Tensor | None, steps: int | None,
                  class_labels: Tensor | None = None, num: int | None = None) -> None:
    """ValueError for a length the model cannot produce, a prompt it cannot keep, or labels it does not take."""
    L = model_seq_len(model)
    if not 1 <= length <= L:
        raise ValueError(f"--length must be in [1, {L}] (the model's seq_len), got {length}")
    if prompt is not None and len(prompt) > length:
        raise ValueError(f"the prefix has {len(prompt)} characters, more than --length {length}")
    is_ar = isinstance(model, AutoregressiveModel)
    if prompt is not None and not is_ar and model.process.mask_id is None:
        raise ValueError("a prefix needs an absorbing ([MASK]) process: this model's kernel would resample it")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if class_labels is not None:
        k = int(getattr(model, "num_classes", 0))
        if not k:
            raise ValueError("class labels (--class) need a class-conditional model (model.params.num_classes > 0); "
                             "this one is unconditional")
        if class_labels.shape != (num,) or bool((class_labels < 0).any()) or bool((class_labels >= k).any()):
            raise ValueError(f"class labels must be {num} integers in [0, {k - 1}], got {class_labels.tolist()}")


@torch.no_grad()
def generate_tokens(model: nn.Module, num: int, length: int, *, steps: int | None = None, seed: int = 0,
                    prompt: Tensor | None = None, batch_size: int = 256, progress: bool = False,
                    class_labels: Tensor | None = None,
                    guidance_scale: float = 1.0, guidance_mode: str = "x0") -> tuple[Tensor, dict[str, int]]:
    """num sequences (num, length) of ids and the cost (denoiser calls, rows evaluated and reused).

    steps: the diffusion sampler's steps (default: length); ignored by the autoregressive model (one per token).
    prompt: (P,) ids that every sample starts with.
    class_labels: (num,) classes of a conditional diffusion model (None: unconditional); guidance_scale s != 1
    samples the classifier-free-guided p(x0 | x_t, c)^s p(x0 | x_t)^(1 - s) (discrete/guidance.py, two calls a step);
    guidance_mode "transition" tilts the reverse step p(x_s | x_t, c)^s p(x_s | x_t)^(1 - s) instead (Schiff et al.
    2024's D-CFG).
    """
    check_request(model, length, prompt, steps, class_labels, num)
    if guidance_scale != 1.0 and class_labels is None:
        raise ValueError("a guidance scale other than 1 needs class labels (--class) to guide towards")
    device = next(model.parameters()).device
    is_ar = isinstance(model, AutoregressiveModel)
    steps = length if steps is None else steps
    guided = guided_denoiser(model, guidance_scale, guidance_mode)  # checks the mode even at scale 1
    denoiser = model if guidance_scale == 1.0 else guided
    stats, out = SamplerStats(), []
    P = 0 if prompt is None else len(prompt)
    for b, start in enumerate(tqdm(range(0, num, batch_size), disable=not progress, desc="sampling")):
        n = min(batch_size, num - start)
        g = torch.Generator(device=device).manual_seed(seed + b)
        head = (torch.empty(n, 0, dtype=torch.long) if prompt is None else prompt.long().expand(n, -1)).to(device)
        if is_ar:
            x = autoregressive(model, head, length - P, generator=g)
            stats.steps += length - P
            stats.calls += length - P
            stats.rows += n * (length - P)
        else:
            x_T = model.process.sample_prior((n, length), g, device)
            x_T[:, :P] = head
            if isinstance(model, BlockDenoiser):  # block diffusion: block by block, `steps` spread over them
                out.append(block_ancestral(model, x_T, steps, generator=g, stats=stats, prompt_len=P).cpu())
                continue

            def keep_prompt(i: int, t: float, x: Tensor) -> None:
                x[:, :P] = head  # in place: the sampler's next step reads this tensor

            labels = None if class_labels is None else class_labels[start:start + n].to(device)
            x = ancestral(denoiser, x_T, steps, generator=g, stats=stats, callback=keep_prompt if P else None,
                          class_labels=labels)
        out.append(x.cpu())
    return torch.cat(out), asdict(stats)
