"""A local web page over the library (Gradio; `pip install torchdiffusion[ui]`): Generate, Compare samplers, Edit,
Watch training. `torchdiffusion ui RUNS` serves it; see docs/ui.md."""

from .limits import MAX_BATCH, MAX_STEPS

__all__ = ["MAX_BATCH", "MAX_STEPS", "serve"]


def serve(root: str, *, host: str = "127.0.0.1", port: int | None = None, device: str = "cpu",
          concurrency: int = 1, block: bool = True) -> str:
    """Build the page over the runs under root and serve it on host:port; returns its URL."""
    from .app import build, launch

    demo, ctx = build(root, device=device, concurrency=concurrency)
    return launch(demo, ctx, host=host, port=port, block=block)
