"""A request's error shown in the page (gr.Error) instead of a traceback; the server keeps serving."""

from __future__ import annotations

import functools
import sys
import traceback
from typing import Any, Callable

import gradio as gr


def user_errors() -> tuple[type[BaseException], ...]:
    """What a user's input or a run's files can cause (the CLI's exit-2 errors): shown as they are."""
    from ..config import ConfigError
    from ..data import DatasetNotFoundError
    from ..train.checkpoint import CheckpointError

    return (ConfigError, CheckpointError, DatasetNotFoundError, ValueError, OSError, OverflowError, MemoryError)


def message(e: BaseException) -> str:
    """One paragraph of at most 1000 characters."""
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    if isinstance(e, MemoryError):
        text = f"out of memory ({text}); ask for fewer or smaller images"
    return text if len(text) <= 1000 else text[:997] + "..."


def shown_in_page(fn: Callable[..., Any]) -> Callable[..., Any]:
    """fn with its errors turned into gr.Error: a user's error by its message, a bug of ours as 'internal error'
    with the traceback printed to the server's log."""
    @functools.wraps(fn)  # gradio reads the signature (gr.Progress parameters) through __wrapped__
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except user_errors() as e:
            raise gr.Error(message(e), print_exception=False) from None
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            raise gr.Error(f"internal error ({type(e).__name__}): this is a bug in torchdiffusion, not a problem "
                           f"with your input; the traceback is in the server's log", print_exception=False) from None
    return wrapped
