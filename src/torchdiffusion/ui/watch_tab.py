"""The Watch training tab: a run's newest sample grids, its loss curve from metrics.jsonl, its step and throughput,
refreshed by a timer while it trains."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from .context import Context
from .errors import shown_in_page
from .training import latest_grids, read_metrics, summary, thin

REFRESH_S = 5.0


def status_text(name: str, info: dict[str, Any]) -> str:
    """One line of a run's progress."""
    if info["loss"] is None:
        return f"`{name}`: no logged step yet"
    speed = f", {info['images_per_s']:.1f} images/s" if info["images_per_s"] is not None else ""
    return (f"`{name}`: step **{info['step']}**, loss {info['loss']:.4f} (mean of the last 10 logged: "
            f"{info['loss_last10']:.4f}){speed}")


def build(ctx: Context, runs: list[str]) -> gr.Dropdown:
    """The tab's components and events, inside an open gr.Blocks; returns its run picker."""
    with gr.Tab("Watch training", id="watch"):
        with gr.Row():
            run = gr.Dropdown(runs, value=runs[0] if runs else None, label="Run directory", elem_id="watch-run")
            auto = gr.Checkbox(True, label=f"Refresh every {REFRESH_S:g} s", elem_id="watch-auto")
            refresh = gr.Button("Refresh now", elem_id="watch-refresh")
        status = gr.Markdown(elem_id="watch-status")
        with gr.Row():
            curve = gr.LinePlot(x="step", y="loss", title="Training loss (metrics.jsonl)", height=320,
                                elem_id="watch-loss")
            grids = gr.Gallery(label="Newest sample grids (samples/step-*.png)", columns=2, height=320,
                               elem_id="watch-grids")
        timer = gr.Timer(REFRESH_S)

        @shown_in_page
        def show(name: str | None):
            if not name:
                return "No run found under the served folder.", None, []
            path = ctx.models.path(name)
            rows = thin(read_metrics(path))
            frame = pd.DataFrame({"step": [r["step"] for r in rows], "loss": [float(r["loss"]) for r in rows]})
            return (status_text(name, summary(rows)), frame,
                    [(str(p), f"step {int(p.stem.split('-')[-1])}") for p in latest_grids(path)])

        run.change(show, run, [status, curve, grids])
        refresh.click(show, run, [status, curve, grids])
        timer.tick(show, run, [status, curve, grids])
        auto.change(lambda on: gr.Timer(active=on), auto, timer)
        ctx.on_load.append((show, run, [status, curve, grids]))
    return run
