"""The King James Bible as character-level text, offline: Debian's `bible-kjv-text`, decoded by `bible` (`bible-kjv`).

The verses (31102) are split by position, every 20th verse (the 20th, 40th, ...) held out; each split is its verses
joined by "\\n" and cut into non-overlapping windows of seq_len characters, so a held-out window never shares a verse
with a training one. The vocabulary is fixed (64 characters, `VOCAB`), so a model's ids mean the same on every
machine. `path` reads another text, one verse per line, instead of the package (the tests use it).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

import torch

from .images import DatasetNotFoundError

Tensor = torch.Tensor

# "\n" (verse boundary), punctuation, A-Z, a-z: every character of the KJV text (its capitals lack only "X")
VOCAB = "\n !'(),-.:;?" + "".join(map(chr, range(65, 91))) + "".join(map(chr, range(97, 123)))
HELD_OUT_EVERY = 20  # verse i (1-based) is held out when i % 20 == 0
KJV_PACKAGES = ("bible-kjv", "bible-kjv-text")
BIBLE_DATA = Path("/usr/lib/bible.data")
ALL_VERSES = "Gen1:1-Rev22:21"
REFERENCE = re.compile(r"^\S+?\d+:\d+ ")  # "Ge1:1 ", "1Cor13:4 ": the reference `bible -f` puts before a verse
SPLITS = ("train", "test")


def encode(text: str) -> Tensor:
    """Characters -> (len,) long ids in VOCAB; a character outside it is a ValueError naming it."""
    table = {c: i for i, c in enumerate(VOCAB)}
    try:
        return torch.tensor([table[c] for c in text], dtype=torch.long)
    except KeyError as e:
        raise ValueError(f"character {e.args[0]!r} is not in the KJV vocabulary ({len(VOCAB)} characters: "
                         f"{VOCAB!r})") from None


def decode(ids: Tensor) -> str:
    """(len,) ids -> text; an id outside the vocabulary (e.g. [MASK]) is shown as "_"."""
    return "".join(VOCAB[i] if 0 <= i < len(VOCAB) else "_" for i in torch.as_tensor(ids).tolist())


def _missing(why: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"the KJV text is not available ({why}). Install it with `sudo apt-get install {' '.join(KJV_PACKAGES)}` "
        f"(or `make data`), or give data.options.path: a text file with one verse per line.")


@functools.lru_cache(maxsize=4)
def kjv_verses(path: str | None = None) -> tuple[str, ...]:
    """Every verse's text in canonical order, references stripped (decoding takes a fraction of a second)."""
    if path is not None:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DatasetNotFoundError(f"data.options.path {path}: cannot read it ({e})") from None
        return tuple(line for line in lines if line.strip())
    program = shutil.which("bible")
    if program is None:
        raise _missing("the `bible` program of the Debian package bible-kjv is not on PATH")
    if not BIBLE_DATA.is_file():
        raise _missing(f"{BIBLE_DATA} of the Debian package bible-kjv-text is missing")
    # -f turns pretty-printing off: one verse per line after its reference (bible(1))
    out = subprocess.run([program, "-f", ALL_VERSES], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "LC_ALL": "C"})
    verses = tuple(REFERENCE.sub("", line) for line in out.stdout.splitlines() if line.strip())
    if out.returncode != 0 or len(verses) < 30000:
        raise _missing(f"`bible -f {ALL_VERSES}` gave {len(verses)} verses, status {out.returncode}")
    return verses


def split_verses(verses: tuple[str, ...] | list[str], split: str) -> list[str]:
    """The verses of a split: "test" every 20th verse (1-based positions 20, 40, ...), "train" all others."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    held = split == "test"
    return [v for i, v in enumerate(verses, start=1) if (i % HELD_OUT_EVERY == 0) == held]


def windows(ids: Tensor, seq_len: int) -> Tensor:
    """Non-overlapping windows (N, seq_len) of a (len,) id stream; the remainder (< seq_len) is dropped."""
    n = len(ids) // seq_len
    return ids[: n * seq_len].view(n, seq_len)


def load_kjv(split: str = "train", seq_len: int = 128, path: str | None = None) -> tuple[Tensor, Tensor]:
    """(windows (N, seq_len) long ids in VOCAB, zero labels (N,)) of one split of the KJV text."""
    if not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"data.options.seq_len must be a whole number >= 1, got {seq_len!r}")
    text = "\n".join(split_verses(kjv_verses(path), split)) + "\n"
    data = windows(encode(text), seq_len)
    return data, torch.zeros(len(data), dtype=torch.long)
