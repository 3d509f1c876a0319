"""The Compare samplers tab: the same seeds under two to four samplers or step counts, side by side, timed."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ..sampling import METHODS
from . import limits, outputs
from .context import Context
from .draw import draw
from .errors import shown_in_page

NONE = "(none)"
DEFAULTS = [("ddim", 10), ("dpmpp_2m", 10), ("heun", 10), (NONE, 10)]


def columns(samplers: list[Any], steps: list[Any]) -> list[tuple[str, Any]]:
    """The (sampler, steps) pairs whose sampler is set; two to MAX_COMPARE of them."""
    chosen = [(s, n) for s, n in zip(samplers, steps) if s not in (None, "", NONE)]
    if not 2 <= len(chosen) <= limits.MAX_COMPARE:
        raise ValueError(f"pick 2 to {limits.MAX_COMPARE} samplers to compare, got {len(chosen)}")
    return chosen


def build(ctx: Context, runs: list[str]) -> gr.Dropdown:
    """The tab's components and events, inside an open gr.Blocks; returns its run picker."""
    with gr.Tab("Compare samplers", id="compare"):
        with gr.Row():
            run = gr.Dropdown(runs, value=runs[0] if runs else None, label="Model (run directory)", elem_id="cmp-run")
            seed = gr.Number(0, precision=0, minimum=0, label="Seed (image i uses seed + i)", elem_id="cmp-seed")
            batch = gr.Slider(1, limits.MAX_BATCH, value=4, step=1, label="Images per sampler", elem_id="cmp-batch")
            labels = gr.Textbox("all", label="Class labels (class-conditional models)", elem_id="cmp-labels")
            prompt = gr.Textbox("", label="Prompt (text-conditional models)", max_length=limits.MAX_PROMPT,
                                elem_id="cmp-prompt")
        samplers, steps, galleries, notes = [], [], [], []
        with gr.Row():
            for i, (s, n) in enumerate(DEFAULTS):
                with gr.Column(min_width=180):
                    samplers.append(gr.Dropdown([NONE] + sorted(METHODS), value=s, label=f"Sampler {i + 1}",
                                                elem_id=f"cmp-sampler-{i}"))
                    steps.append(gr.Slider(1, limits.MAX_STEPS, value=n, step=1, label="Steps",
                                           elem_id=f"cmp-steps-{i}"))
                    galleries.append(gr.Gallery(label=f"Column {i + 1}", format="png", columns=2, height="auto",
                                                elem_id=f"cmp-gallery-{i}"))
                    notes.append(gr.Markdown(elem_id=f"cmp-note-{i}"))
        go = gr.Button("Compare", variant="primary", elem_id="cmp-button")
        table = gr.JSON(label="Seconds and denoiser calls per column", elem_id="cmp-table")

        @shown_in_page
        def run_compare(name, seed_, batch_, labels_, prompt_, *picks, progress=gr.Progress()):
            k = len(DEFAULTS)
            columns(list(picks[:k]), list(picks[k:]))  # two to four set
            info = ctx.describe(name)
            labels_ = labels_ if info.get("num_classes") else ""
            prompt_ = prompt_ if info.get("context_dim") else ""
            out_galleries, out_notes, rows = [None] * k, [""] * k, []
            d = outputs.request_dir(ctx.workdir, "compare")
            for j, (sampler, n) in enumerate(zip(picks[:k], picks[k:])):
                if sampler in (None, "", NONE):
                    continue
                progress(len(rows) / k, desc=f"{sampler}, {n} steps")
                images, cfg = draw(ctx.models, name, sampler=sampler, steps=n, seed=seed_, batch=batch_,
                                   labels=labels_, prompt=prompt_)
                paths = outputs.save(d, images, [f"{j}-{sampler}-{cfg['steps']}-seed-{s}" for s in cfg["seeds"]],
                                     cfg)[:-1]
                out_galleries[j] = [(p, f"seed {s}") for p, s in zip(paths, cfg["seeds"])]
                out_notes[j] = f"**{sampler}**, {cfg['steps']} steps: {cfg['nfe']} calls, {cfg['seconds']:.2f} s"
                rows.append({"column": j + 1, "sampler": sampler, "steps": cfg["steps"], "nfe": cfg["nfe"],
                             "seconds": cfg["seconds"]})
            return out_galleries + out_notes + [{"seed": cfg["seed"], "seeds": cfg["seeds"], "columns": rows}]

        go.click(run_compare, [run, seed, batch, labels, prompt] + samplers + steps, galleries + notes + [table],
                 **ctx.queued())
    return run
