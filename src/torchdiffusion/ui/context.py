"""What every tab shares: the served folder's models, the work folder for downloads, the queue's concurrency."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .conditions import model_conditions
from .runs import Models

MODEL_QUEUE = "model"  # concurrency id of every event that runs a model


@dataclass
class Context:
    models: Models
    workdir: Path
    concurrency: int = 1  # model requests running at once (each model still one at a time)
    # (fn, inputs, outputs) run on every page load, to fill the fields of the first run
    on_load: list[tuple[Callable[..., Any], Any, Any]] = field(default_factory=list)

    def queued(self) -> dict[str, Any]:
        """Keyword arguments of an event listener that runs a model: it waits in the shared queue."""
        return {"concurrency_id": MODEL_QUEUE, "concurrency_limit": self.concurrency}

    def describe(self, run: str | None) -> dict[str, Any]:
        """What the page needs to lay out a run's fields: shape, conditions, the config's sampler and steps."""
        if not run:
            return {}
        with self.models.use(run) as loaded:
            shape = loaded.data_shape if loaded.codec is None else loaded.codec.image_shape  # what the page shows
            return {"shape": list(shape), **model_conditions(loaded.model),
                    "sampler": loaded.config.sample.sampler, "steps": loaded.config.sample.steps,
                    "step": loaded.meta["step"], "checkpoint": loaded.meta["path"]}
