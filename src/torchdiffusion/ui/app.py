"""The page: four tabs over one folder of runs, a queue that runs one request at a time per model, served on
localhost with nothing fetched from the network (no share link, no telemetry, system fonts)."""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when gradio is imported: no telemetry, no version check
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402

from . import compare_tab, edit_tab, generate_tab, limits, watch_tab  # noqa: E402
from .context import Context  # noqa: E402
from .runs import Models, find_runs  # noqa: E402

TITLE = "torchdiffusion"
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # nothing to download
SYSTEM_MONO = ["ui-monospace", "monospace"]
# samples are a few pixels wide: show them as squares, not a blur, and the measurement at the panel's size
CSS = "img { image-rendering: pixelated; } #edit-measured img { width: 100%; height: 100%; object-fit: contain; }"


def theme() -> gr.themes.Base:
    """Gradio's default look with system fonts only (its own fonts would be fetched from Google Fonts)."""
    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=SYSTEM_MONO)


def headline(root: Path, trained: list[str], every: list[str]) -> str:
    return f"## torchdiffusion: {root}  \n{len(trained)} trained run(s), {len(every)} run(s) in all"


def build(root: str | Path, *, device: str = "cpu", concurrency: int = 1, workdir: str | Path | None = None
          ) -> tuple[gr.Blocks, Context]:
    """The Blocks app over the runs under root (queue configured; not launched)."""
    root = Path(root)
    find_runs(root)  # a missing folder is refused before anything is built
    ctx = Context(Models(root, device), Path(workdir or tempfile.mkdtemp(prefix="torchdiffusion-ui-")),
                  limits.integer("concurrency", concurrency, 1, 64))
    trained, every = ctx.models.names(), ctx.models.names(trained_only=False)
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        with gr.Row():
            heading = gr.Markdown(headline(root, trained, every))
            rescan = gr.Button("Rescan the folder for runs", size="sm", scale=0, elem_id="rescan")
        with gr.Tabs():
            pickers = [generate_tab.build(ctx, trained), compare_tab.build(ctx, trained),
                       edit_tab.build(ctx, trained)]
            watch = watch_tab.build(ctx, every)

        def scan() -> list[Any]:
            trained, every = ctx.models.names(), ctx.models.names(trained_only=False)
            return [headline(root, trained, every)] + [gr.update(choices=trained)] * len(pickers) + \
                [gr.update(choices=every)]

        rescan.click(scan, None, [heading, *pickers, watch])
        for fn, inputs, outputs in ctx.on_load:
            demo.load(fn, inputs, outputs)
    demo.queue(max_size=limits.QUEUE_SIZE, default_concurrency_limit=1)
    return demo, ctx


def launch(demo: gr.Blocks, ctx: Context, *, host: str = "127.0.0.1", port: int | None = None,
           block: bool = True) -> str:
    """Serve the app; returns its local URL (blocks until interrupted when block)."""
    kwargs: dict[str, Any] = dict(server_name=host, server_port=port, share=False, inbrowser=False, quiet=True,
                                  show_error=True, max_file_size=limits.MAX_UPLOAD, theme=theme(), css=CSS,
                                  allowed_paths=[str(ctx.models.root), str(ctx.workdir)], ssr_mode=False,
                                  pwa=False, mcp_server=False, enable_monitoring=False, prevent_thread_lock=True)
    demo.launch(**kwargs)
    url = demo.local_url
    print(f"torchdiffusion ui: serving {ctx.models.root} at {url} (Ctrl+C stops it)", flush=True)
    if block:
        demo.block_thread()
    return url
