"""The Edit tab: inpaint a painted (or uploaded) mask, img2img with a strength slider, upscale, deblur."""

from __future__ import annotations

import gradio as gr

from ..inverse import METHODS
from ..sampling import METHODS as SAMPLERS
from . import limits, outputs
from .context import Context
from .edit import TASKS, edit
from .errors import shown_in_page

HELP = """**inpaint**: upload an image, paint over what to fill in (or upload a mask, black = fill in, white = keep, as the CLI).
**img2img**: SDEdit, noise the image to the strength and sample back. **upscale** and **restore** (deblur): with
*simulate* on, the upload is the clean image and the low-resolution or blurred measurement is made from it; off, the
upload is the measurement itself; on a latent model they take method **dps** only (latent DPS: the measurement of
the decoded image, differentiated through the decoder). Method options are the inverse method's keyword options as
YAML (replacement: eta; repaint: jump_length, jump_n_sample; dps: zeta, eta, gamma (latent models: the gluing
weight); pigdm: eta, scale; ddrm: eta, eta_b; smc: particles, ess_threshold)."""


def build(ctx: Context, runs: list[str]) -> gr.Dropdown:
    """The tab's components and events, inside an open gr.Blocks; returns its run picker."""
    with gr.Tab("Edit", id="edit"):
        gr.Markdown(HELP)
        with gr.Row():
            with gr.Column(scale=1):
                run = gr.Dropdown(runs, value=runs[0] if runs else None, label="Model (run directory)",
                                  elem_id="edit-run")
                task = gr.Radio(list(TASKS), value="inpaint", label="Task", elem_id="edit-task")
                editor = gr.ImageEditor(label="Image (paint the region to fill in)", type="numpy", image_mode="RGBA",
                                        sources=["upload", "clipboard"], layers=False, transforms=(),
                                        brush=gr.Brush(colors=["#ff0000"], default_size=8, color_mode="fixed"),
                                        elem_id="edit-editor", height=360)
                mask = gr.Image(label="Or upload a mask (black = fill in, white = keep)", type="numpy", sources=["upload"],
                                elem_id="edit-mask", height=160)
                with gr.Row():
                    method = gr.Dropdown(sorted(METHODS), value="replacement", label="Inverse method",
                                         elem_id="edit-method")
                    sampler = gr.Dropdown(sorted(SAMPLERS), value="ddim", label="Sampler (img2img)",
                                          elem_id="edit-sampler")
                with gr.Row():
                    nfe = gr.Slider(1, limits.MAX_STEPS, value=50, step=1, label="Denoiser calls", elem_id="edit-nfe")
                    strength = gr.Slider(0, 1, value=0.6, step=0.05, label="Strength (img2img)",
                                         elem_id="edit-strength")
                with gr.Row():
                    noise_std = gr.Number(0.0, minimum=0, maximum=limits.MAX_NOISE_STD, label="Measurement noise std",
                                          elem_id="edit-noise")
                    factor = gr.Dropdown([2, 4, 8], value=2, label="Upscaling factor", elem_id="edit-factor")
                with gr.Row():
                    blur_size = gr.Slider(1, 15, value=5, step=2, label="Blur kernel size", elem_id="edit-blur-size")
                    blur_std = gr.Slider(0.1, 10, value=1.0, step=0.1, label="Blur std", elem_id="edit-blur-std")
                with gr.Row():
                    simulate = gr.Checkbox(True, label="Simulate the measurement from the upload",
                                           elem_id="edit-simulate")
                    count = gr.Slider(1, limits.MAX_BATCH, value=4, step=1, label="Results", elem_id="edit-count")
                    seed = gr.Number(0, precision=0, minimum=0, label="Seed", elem_id="edit-seed")
                options = gr.Textbox("", label="Method options (YAML mapping)", elem_id="edit-options")
                go = gr.Button("Edit", variant="primary", elem_id="edit-button")
            with gr.Column(scale=1):
                measured = gr.Image(label="Measurement y (what the method sees)", type="pil", format="png",
                                    elem_id="edit-measured", height=200)
                gallery = gr.Gallery(label="Results", format="png", columns=4, height="auto", elem_id="edit-gallery")
                files = gr.File(label="Download: each result as PNG, and settings.json", file_count="multiple",
                                elem_id="edit-files")
                settings = gr.JSON(label="Settings", elem_id="edit-settings")

        @shown_in_page
        def run_edit(name, task_, editor_, mask_, method_, sampler_, nfe_, strength_, noise_, factor_, blur_size_,
                     blur_std_, simulate_, count_, seed_, options_, progress=gr.Progress()):
            editor_ = editor_ or {}
            progress(0, desc=task_)
            y, images, cfg = edit(ctx.models, name, task_, editor_.get("background"), painted=editor_.get("layers"),
                                  mask_image=mask_, method=method_, sampler=sampler_, nfe=nfe_, noise_std=noise_,
                                  strength=strength_, factor=factor_, blur_size=blur_size_, blur_std=blur_std_,
                                  simulate=simulate_, count=count_, seed=seed_, options=options_,
                                  progress=lambda k, n: progress((k, n), desc=task_, unit="calls"))
            d = outputs.request_dir(ctx.workdir, "edit")
            cfg["request"] = d.name  # the folder of this request's downloads
            paths = outputs.save(d, images, [f"{task_}-{i}" for i in range(len(images))], cfg)
            return y, [(p, f"result {i}") for i, p in enumerate(paths[:-1])], paths, cfg

        go.click(run_edit, [run, task, editor, mask, method, sampler, nfe, strength, noise_std, factor, blur_size,
                            blur_std, simulate, count, seed, options], [measured, gallery, files, settings],
                 **ctx.queued())
    return run
