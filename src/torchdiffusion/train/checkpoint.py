"""Checkpoints as one safetensors file: tensors (model, EMA, optimizer, RNG) plus JSON metadata.

Written to a temporary file, flushed and fsynced, then atomically renamed, so a crash never leaves a
partial checkpoint under a final name. No pickles: loading never executes code. From format 2 the content
hash covers the metadata too, so an edited step or config is caught like a flipped weight.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

FORMAT_VERSION = 2  # 2: the content hash covers the metadata and each tensor's dtype and shape
READABLE_FORMATS = (1, 2)  # format 1 (tensor bytes only in the hash) still loads
CKPT_RE = re.compile(r"^ckpt-(\d{8})\.safetensors$")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, foreign or incompatible."""


def optimizer_to_flat(opt: torch.optim.Optimizer, sharded: torch.nn.Module | None = None
                      ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into named tensors and JSON-able metadata.

    For a model sharded with FSDP pass it as `sharded`: the whole state is gathered (a collective; rank 0
    gets it) and keyed by parameter index like an unsharded optimizer's, so the file is the same either way.
    """
    sd = _full_optimizer_state(opt, sharded) if sharded is not None else opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{k}"] = v.detach().cpu().clone().contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                        sharded: torch.nn.Module | None = None) -> None:
    """Inverse of optimizer_to_flat (every rank passes the whole state; FSDP keeps its shard)."""
    state: dict[int, dict[str, Any]] = {}
    for name, v in tensors.items():
        if name.startswith("optim."):
            _, idx, k = name.split(".", 2)
            state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    sd = {"state": state, "param_groups": meta["param_groups"]}
    if sharded is None:
        opt.load_state_dict(sd)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
    names = [n for n, _ in sharded.named_parameters()]
    by_name = {"state": {names[i]: st for i, st in sd["state"].items()},
               "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in sd["param_groups"]]}
    set_optimizer_state_dict(sharded, opt, by_name, options=StateDictOptions(full_state_dict=True))


def _full_optimizer_state(opt: torch.optim.Optimizer, sharded: torch.nn.Module) -> dict[str, Any]:
    """The whole optimizer state of an FSDP model, keyed by parameter index (empty on ranks > 0)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
    sd = get_optimizer_state_dict(sharded, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    index = {n: i for i, (n, _) in enumerate(sharded.named_parameters())}
    return {"state": {index[n]: st for n, st in sd.get("state", {}).items()},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in sd.get("param_groups", [])]}


def content_hash(tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None,
                  version: int = FORMAT_VERSION) -> str:
    """sha256 of the tensors (names and bytes; from format 2 also dtypes, shapes and the metadata but its hash)."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        h.update(k.encode())
        if version >= 2:  # a dtype or shape edit keeps the byte count, so the bytes alone do not catch it
            h.update(f"|{t.dtype}|{tuple(t.shape)}|".encode())
        flat = t.reshape(-1)
        h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    if version >= 2:
        h.update(b"|meta|" + canonical_json(meta or {}).encode())
    return h.hexdigest()


def canonical_json(meta: dict[str, Any]) -> str:
    """The metadata as hashed: sorted keys, no spaces, the content hash itself left out."""
    return json.dumps({k: v for k, v in meta.items() if k != "content_hash"}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True)


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Atomically write tensors + metadata (format version and content hash added) to `path`.

    A failed write (a full disk, say) removes its partial temporary file and raises an OSError naming `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    # hashed as it will be read back (tuples become lists, int keys strings), so load recomputes the same text
    full_meta = json.loads(json.dumps({k: v for k, v in meta.items() if k != "content_hash"}))
    full_meta["format_version"] = FORMAT_VERSION
    full_meta["content_hash"] = content_hash(tensors, full_meta)
    blob = save(tensors, metadata={"torchdiffusion": json.dumps(full_meta)})
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:  # also an interrupt: a partial file must not outlive its writer
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OSError(e.errno, f"could not write checkpoint {path}: {e.strerror or first_line(e)} "
                                   f"(the partial file {tmp.name} was removed)") from e
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return path


def load_checkpoint(path: Path, verify: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint, checking its format version, content hash and step; a clear error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open
        with safe_open(str(path), "pt") as f:
            raw = (f.metadata() or {}).get("torchdiffusion")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is truncated or not a safetensors file ({e})") from None
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file but not a torchdiffusion checkpoint (no metadata)")
    try:
        meta = json.loads(raw)
    except ValueError as e:
        raise CheckpointError(f"{path}: its metadata is not valid JSON ({e}); the file is corrupt") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its metadata is not a JSON object; the file is corrupt")
    version = meta.get("format_version")
    if version not in READABLE_FORMATS:
        raise CheckpointError(f"{path}: checkpoint format {version} is not supported "
                              f"(this version reads formats {', '.join(map(str, READABLE_FORMATS))})")
    if verify and meta.get("content_hash") != content_hash(tensors, meta, version):
        raise CheckpointError(f"{path}: content hash mismatch, the file is corrupt or was edited")
    named = CKPT_RE.match(path.name)
    if named and meta.get("step") != int(named[1]):  # a renamed file would resume at a step it never reached
        raise CheckpointError(f"{path}: its metadata says step {meta.get('step')} but its name says step "
                              f"{int(named[1])}; the file was renamed or edited")
    return tensors, meta


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors by name from a foreign weights file: safetensors, or a torch.save file read with weights_only=True.

    Pickled code (a class, a function, anything but tensors and plain containers) is refused, never run.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) == 8 and 0 < int.from_bytes(head, "little") < path.stat().st_size:  # safetensors header length
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError):
            pass
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many kinds on foreign bytes
        text = str(e)
        if "Weights only load failed" in text:
            what = next((ln.strip() for ln in text.splitlines() if "GLOBAL" in ln.upper()), "")
            raise CheckpointError(f"{path}: refused to load; the file holds pickled objects other than tensors, "
                                  f"which could run code ({what or 'not weights only'}). Convert it to safetensors "
                                  f"where it was made.") from None
        raise CheckpointError(f"{path} is neither a safetensors file nor a readable torch.save file "
                              f"({type(e).__name__}: {first_line(e)})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a mapping of names to tensors, got {type(obj).__name__}")
    return obj


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (by the step in their names; not yet read)."""
    d = Path(run_dir) / "checkpoints"
    return sorted(p for p in d.glob("ckpt-*.safetensors") if CKPT_RE.match(p.name)) if d.is_dir() else []


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """Where a run's checkpoint of `step` lives."""
    return Path(run_dir) / "checkpoints" / f"ckpt-{step:08d}.safetensors"


def checkpoint_step(path: Path) -> int:
    """The step in a checkpoint's file name."""
    return int(CKPT_RE.match(Path(path).name)[1])


@dataclass
class Newest:
    """The newest readable checkpoint of a run directory, read, and the newer files that could not be read."""

    path: Path | None = None  # None: no readable checkpoint
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    unreadable: list[CheckpointError] = field(default_factory=list)  # newer than `path`, newest first


def read_newest(run_dir: Path) -> Newest:
    """Read a run's checkpoints from the newest down and stop at the first readable one."""
    found = Newest()
    for path in reversed(list_checkpoints(run_dir)):
        try:
            found.tensors, found.meta = load_checkpoint(path)
        except CheckpointError as e:
            found.unreadable.append(e)
            continue
        found.path = path
        break
    return found


def unreadable_lines(errors: list[CheckpointError]) -> str:
    """One indented line per unreadable checkpoint (each error names its file and why)."""
    return "".join(f"\n  {first_line(e)}" for e in errors)


def read_checkpoint(path: Path) -> tuple[Path, dict[str, torch.Tensor], dict[str, Any]]:
    """(file, tensors, metadata) of a checkpoint file, or of a run directory's newest readable checkpoint.

    Newer checkpoints of the run that could not be read are named on stderr (using a model needs no resume, so an
    older one serves); a run directory where none is readable is a CheckpointError naming each file.
    """
    path = Path(path)
    if path.is_file():
        return (path, *load_checkpoint(path))
    if not path.is_dir():
        raise CheckpointError(f"{path} is neither a checkpoint file nor a run directory")
    found = read_newest(path)
    if found.path is None and not found.unreadable:
        raise CheckpointError(f"run directory {path} has no checkpoints under {path / 'checkpoints'}")
    if found.path is None:
        raise CheckpointError(f"run directory {path} has {len(found.unreadable)} checkpoint(s) and none can be read:"
                              + unreadable_lines(found.unreadable))
    if found.unreadable:
        print(f"[torchdiffusion] warning: using {found.path} (step {found.meta['step']}); skipped "
              f"{len(found.unreadable)} newer unreadable checkpoint(s):" + unreadable_lines(found.unreadable),
              file=sys.stderr, flush=True)
    return found.path, found.tensors, found.meta


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint file, or the newest readable checkpoint of a run directory (see read_checkpoint)."""
    path = Path(path)
    return path if path.is_file() else read_checkpoint(path)[0]


def prune_checkpoints(run_dir: Path, keep_last: int, step: int, verified: set[tuple] | None = None
                      ) -> list[CheckpointError]:
    """Delete readable checkpoints at or below `step` beyond the newest `keep_last` readable ones.

    A file that cannot be read is never deleted nor counted as kept (a stray one must not push good ones out),
    and nothing above `step` is touched. `verified` caches the files known readable (see file_signature), so
    each is read at most once. Returns the errors of the files kept because they could not be read.
    """
    verified = set() if verified is None else verified
    keep_last = max(1, keep_last)  # the checkpoint just written is never the one deleted
    kept, unreadable = 0, []
    for path in reversed(list_checkpoints(run_dir)):
        if checkpoint_step(path) > step:
            continue
        try:
            sig = file_signature(path)
        except FileNotFoundError:
            continue
        if sig not in verified:
            try:
                load_checkpoint(path)
            except CheckpointError as e:
                unreadable.append(e)
                continue
            verified.add(sig)
        if kept < keep_last:
            kept += 1
        else:
            path.unlink(missing_ok=True)
            verified.discard(sig)
    return unreadable


def file_signature(path: Path) -> tuple:
    """(name, size, mtime, inode): a file rewritten or replaced since it was read has another signature."""
    st = Path(path).stat()
    return Path(path).name, st.st_size, st.st_mtime_ns, st.st_ino


def save_and_prune(run_dir: Path, step: int, tensors: dict, meta: dict, keep_last: int, verified: set[tuple]
                   ) -> tuple[Path, list[CheckpointError]]:
    """Write step's checkpoint into run_dir, remember it as verified, and prune the old ones beyond keep_last:
    (its path, the unreadable checkpoints kept, as prune_checkpoints reports them)."""
    path = checkpoint_path(run_dir, step)
    save_checkpoint(path, tensors, meta)
    verified.add(file_signature(path))
    return path, prune_checkpoints(run_dir, keep_last, step, verified)
