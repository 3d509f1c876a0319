"""The Generate tab: model, sampler, steps, seed, batch, conditions and guidance -> a grid of PNGs and the settings."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ..sampling import METHODS
from . import limits, outputs
from .context import Context
from .draw import draw
from .errors import shown_in_page


def condition_updates(info: dict[str, Any]) -> list[Any]:
    """Visibility of the class, prompt and guidance fields for a model with these conditions."""
    classes, text = bool(info.get("num_classes")), bool(info.get("context_dim"))
    return [gr.update(visible=classes), gr.update(visible=text), gr.update(visible=text),
            gr.update(visible=classes or text)]


def build(ctx: Context, runs: list[str]) -> gr.Dropdown:
    """The tab's components and events, inside an open gr.Blocks; returns its run picker."""
    with gr.Tab("Generate", id="generate"):
        with gr.Row():
            with gr.Column(scale=1):
                run = gr.Dropdown(runs, value=runs[0] if runs else None, label="Model (run directory)",
                                  elem_id="gen-run")
                about = gr.Markdown(elem_id="gen-about")
                with gr.Row():
                    sampler = gr.Dropdown(sorted(METHODS), value="ddim", label="Sampler", elem_id="gen-sampler")
                    steps = gr.Slider(1, limits.MAX_STEPS, value=20, step=1, label="Steps", elem_id="gen-steps")
                with gr.Row():
                    seed = gr.Number(0, precision=0, minimum=0, label="Seed (image i uses seed + i)",
                                     elem_id="gen-seed")
                    batch = gr.Slider(1, limits.MAX_BATCH, value=4, step=1, label="Batch size", elem_id="gen-batch")
                labels = gr.Textbox("all", label="Class labels (comma list, cycled; 'all' = every class in turn)",
                                    visible=False, elem_id="gen-labels")
                prompt = gr.Textbox(label="Prompt", visible=False, max_length=limits.MAX_PROMPT, elem_id="gen-prompt")
                negative = gr.Textbox(label="Negative prompt", visible=False, max_length=limits.MAX_PROMPT,
                                      elem_id="gen-negative")
                with gr.Group(visible=False) as guidance_box:
                    scale = gr.Slider(0, limits.MAX_GUIDANCE, value=1.0, step=0.1,
                                      label="Guidance scale w (1 = conditional model)", elem_id="gen-scale")
                    rescale = gr.Slider(0, 1, value=0.0, step=0.05, label="Guidance rescale phi", elem_id="gen-rescale")
                    with gr.Row():
                        lo = gr.Number(None, label="Guide only for sigma > (low)", elem_id="gen-lo")
                        hi = gr.Number(None, label="... and sigma <= (high)", elem_id="gen-hi")
                options = gr.Textbox("", label="Sampler options (YAML mapping, e.g. {eta: 0.5})", elem_id="gen-options")
                go = gr.Button("Generate", variant="primary", elem_id="gen-button")
            with gr.Column(scale=2):
                gallery = gr.Gallery(label="Samples", format="png", columns=4, height="auto", elem_id="gen-gallery",
                                     buttons=["download", "fullscreen"])
                files = gr.File(label="Download: each image as PNG, and settings.json", file_count="multiple",
                                elem_id="gen-files")
                settings = gr.JSON(label="Settings (exactly what produced the grid)", elem_id="gen-settings")

        @shown_in_page
        def pick(name: str | None) -> list[Any]:
            info = ctx.describe(name)
            if not info:
                return ["No trained run found under the served folder.", gr.update(), gr.update()] + \
                    condition_updates({})
            text = (f"`{name}`: data {tuple(info['shape'])}, step {info['step']}"
                    + (f", {info['num_classes']} classes" if info["num_classes"] else "")
                    + (", text prompts" if info["context_dim"] else ""))
            return [text, gr.update(value=info["sampler"]), gr.update(value=min(info["steps"], limits.MAX_STEPS))] \
                + condition_updates(info)

        @shown_in_page
        def run_generate(name, sampler_, steps_, seed_, batch_, labels_, prompt_, negative_, scale_, rescale_, lo_,
                         hi_, options_, progress=gr.Progress()):
            progress(0, desc="sampling")
            images, cfg = draw(ctx.models, name, sampler=sampler_, steps=steps_, seed=seed_, batch=batch_,
                               options=options_, labels=labels_, prompt=prompt_, negative_prompt=negative_,
                               scale=scale_, rescale=rescale_, interval_lo=lo_, interval_hi=hi_,
                               progress=lambda k, n: progress((k, n), desc="sampling", unit="steps"))
            d = outputs.request_dir(ctx.workdir, "generate")
            cfg["request"] = d.name  # the folder of this request's downloads
            paths = outputs.save(d, images, [f"seed-{s}" for s in cfg["seeds"]], cfg)
            return [(p, f"seed {s}") for p, s in zip(paths, cfg["seeds"])], paths, cfg  # paths[-1]: settings.json

        layout = [about, sampler, steps, labels, prompt, negative, guidance_box]
        run.change(pick, run, layout)
        ctx.on_load.append((pick, run, layout))
        go.click(run_generate, [run, sampler, steps, seed, batch, labels, prompt, negative, scale, rescale, lo, hi,
                                options], [gallery, files, settings], **ctx.queued())
    return run
