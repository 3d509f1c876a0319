"""`torchdiffusion ui`: serve the local web page (Generate, Compare samplers, Edit, Watch training) over a folder of
runs."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_device_argument, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("ui", help="serve a local web page over a folder of runs",
                        description="Serve a Gradio page over RUN_OR_RUNS_DIR (a run directory or a folder of "
                                    "them): generate, compare samplers, edit (inpaint, img2img, upscale, restore) "
                                    "and watch training. It binds 127.0.0.1 unless --host says otherwise, prints "
                                    "its URL and fetches nothing from the network. Needs the `ui` extra: "
                                    "pip install 'torchdiffusion[ui]'.")
    sp.add_argument("path", metavar="RUN_OR_RUNS_DIR", help="a run directory, or a folder with runs below it")
    sp.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 serves every interface)")
    sp.add_argument("--port", type=positive_int(65535), default=None,
                    help="port (default: the first free one from 7860)")
    sp.add_argument("--concurrency", type=positive_int(64), default=1,
                    help="model requests running at once (each model still serves one at a time; default 1)")
    add_device_argument(sp)
    sp.set_defaults(handler=run)


def run(a: argparse.Namespace) -> dict[str, Any]:
    from ..devices import resolve_device

    try:
        from ..ui import serve
        import gradio  # noqa: F401  (the optional dependency, checked before anything is built)
    except ImportError as e:
        raise ValueError(f"the web page needs gradio ({e}); install it with pip install 'torchdiffusion[ui]'") from None
    url = serve(a.path, host=a.host, port=a.port, device=str(resolve_device(a.device)), concurrency=a.concurrency)
    return {"url": url}
