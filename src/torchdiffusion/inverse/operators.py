"""Linear measurement operators y = A x on one sample's shape, batched over the leading dim: the forward map, its
adjoint, a dense matrix and an SVD for the spectral methods (DDRM, Pi-GDM, SMC), and composition (`A @ B`).

The SVD is A = U diag(s) V^T on flattened samples (`svd.py`). Mask, Downsample and Blur with a separable kernel have
structured SVDs that never form a dense matrix (diagonal, block-orthogonal, Kronecker); other operators get a dense
one built from their matrix, for samples of at most DENSE_SVD_LIMIT numbers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import math

import torch
import torch.nn.functional as F

from .svd import SVD, check_dense_size, dense_svd, diagonal_svd, kronecker_svd, pooling_svd, separable_factors

Tensor = torch.Tensor
Shape = tuple[int, ...]


class Operator(ABC):
    """A linear map on samples of one shape: `A(x)` (B, *shape) -> (B, *out_shape), `adjoint`, `matrix`, `svd`.
    `linear` is False only for a nonlinear map (`DecodedOperator`), which only the gradient methods (DPS) take."""

    linear: bool = True

    @abstractmethod
    def __call__(self, x: Tensor) -> Tensor:
        """A x."""

    @abstractmethod
    def adjoint(self, y: Tensor) -> Tensor:
        """A^T y."""

    def out_shape(self, shape: Shape) -> Shape:
        """The shape of one measurement of a sample of this shape."""
        return tuple(self(torch.zeros(1, *shape, dtype=torch.float64)).shape[1:])

    def sample_shape(self, y: Tensor) -> Shape:
        """The shape of one sample whose measurement is a row of y (that of A^T y)."""
        with torch.no_grad():
            return tuple(self.adjoint(y[:1]).shape[1:])

    def matrix(self, shape: Shape) -> Tensor:
        """A as a dense (m, n) float64 matrix on flattened samples (A applied to the identity's columns)."""
        n = math.prod(shape)
        with torch.no_grad():
            rows = self(torch.eye(n, dtype=torch.float64).reshape(n, *shape)).reshape(n, -1)  # row j: A e_j
        return rows.T.contiguous()

    def svd(self, shape: Shape) -> SVD:
        """A = U diag(s) V^T (`structured_svd` where the operator has one, else dense); cached per shape."""
        shape = tuple(shape)
        cache = self.__dict__.setdefault("_svd", {})
        if shape not in cache:
            cache[shape] = self.structured_svd(shape)
            if cache[shape] is None:
                check_dense_size(shape, type(self).__name__)
                cache[shape] = dense_svd(self.matrix(shape), shape, self.out_shape(shape))
        return cache[shape]

    def structured_svd(self, shape: Shape) -> SVD | None:
        """An SVD that needs no dense matrix, or None (then `svd` builds a dense one)."""
        return None

    def pinv(self, y: Tensor, shape: Shape) -> Tensor:
        """A^+ y = V S^+ U^T y, the least-norm solution of A x = y."""
        return self.svd(shape).v(self.svd(shape).y_bar(y))

    def __matmul__(self, other: Operator) -> Compose:
        return Compose(self, other)


class Compose(Operator):
    """(outer @ inner)(x) = outer(inner(x)); adjoint inner^T(outer^T(y))."""

    def __init__(self, outer: Operator, inner: Operator):
        self.outer, self.inner = outer, inner

    def __call__(self, x: Tensor) -> Tensor:
        return self.outer(self.inner(x))

    def adjoint(self, y: Tensor) -> Tensor:
        return self.inner.adjoint(self.outer.adjoint(y))


class Mask(Operator):
    """Inpainting: A x = mask * x (1 = observed), measurements keep the sample's shape; its SVD is diagonal."""

    def __init__(self, mask: Tensor):
        self.mask = torch.as_tensor(mask).to(torch.float64)
        if not bool(((self.mask == 0) | (self.mask == 1)).all()):
            raise ValueError("a mask holds 0 (missing) and 1 (observed) only")

    def __call__(self, x: Tensor) -> Tensor:
        return x * self.mask.to(x)

    adjoint = __call__

    def out_shape(self, shape: Shape) -> Shape:
        return shape

    def structured_svd(self, shape: Shape) -> SVD:
        if tuple(self.mask.shape) != tuple(shape):
            raise ValueError(f"the mask has shape {tuple(self.mask.shape)}, the samples {tuple(shape)}")
        return diagonal_svd(self.mask, shape)


class Matrix(Operator):
    """A dense (m, numel) matrix on flattened samples of `shape` (default (numel,)): y (B, m)."""

    def __init__(self, A: Tensor, shape: Shape | None = None):
        self.A = torch.as_tensor(A)
        if self.A.ndim != 2:
            raise ValueError(f"A must be a matrix (m, numel), got shape {tuple(self.A.shape)}")
        self.shape = (self.A.shape[1],) if shape is None else tuple(shape)
        if math.prod(self.shape) != self.A.shape[1]:
            raise ValueError(f"A has {self.A.shape[1]} columns, samples of shape {self.shape} {math.prod(self.shape)}")

    def __call__(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1) @ self.A.T.to(x)

    def adjoint(self, y: Tensor) -> Tensor:
        return (y @ self.A.to(y)).reshape(y.shape[0], *self.shape)

    def out_shape(self, shape: Shape) -> Shape:
        return (self.A.shape[0],)

    def matrix(self, shape: Shape) -> Tensor:
        return self.A.double()


def _as_images(x: Tensor) -> tuple[Tensor, Shape]:
    """(B, ..., H, W) -> (B * ..., 1, H, W) and the leading shape to restore."""
    if x.ndim < 3:
        raise ValueError(f"image operators need samples of shape (..., H, W), got batch shape {tuple(x.shape)}")
    return x.reshape(-1, 1, *x.shape[-2:]), tuple(x.shape[:-2])


class Downsample(Operator):
    """Super-resolution: average pooling over factor x factor blocks of (..., H, W); adjoint spreads each value / f^2."""

    def __init__(self, factor: int):
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        self.factor = int(factor)

    def __call__(self, x: Tensor) -> Tensor:
        f = self.factor
        if x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"H and W must be multiples of the factor {f}, got {tuple(x.shape[-2:])}")
        img, lead = _as_images(x)
        return F.avg_pool2d(img, f).reshape(*lead, x.shape[-2] // f, x.shape[-1] // f)

    def adjoint(self, y: Tensor) -> Tensor:
        f = self.factor
        return y.repeat_interleave(f, -1).repeat_interleave(f, -2) / f**2

    def structured_svd(self, shape: Shape) -> SVD:
        if len(shape) < 2 or shape[-1] % self.factor or shape[-2] % self.factor:
            raise ValueError(f"H and W must be multiples of the factor {self.factor}, got shape {tuple(shape)}")
        return pooling_svd(self.factor, shape)


class Blur(Operator):
    """Deblurring: 'same' cross-correlation of each channel with a 2-D kernel (odd size), zeros outside the image."""

    def __init__(self, kernel: Tensor):
        self.kernel = torch.as_tensor(kernel).to(torch.float64)
        if self.kernel.ndim != 2 or self.kernel.shape[0] % 2 == 0 or self.kernel.shape[1] % 2 == 0:
            raise ValueError(f"a blur kernel is a 2-D tensor of odd sizes, got shape {tuple(self.kernel.shape)}")

    def _pad(self) -> tuple[int, int]:
        return self.kernel.shape[0] // 2, self.kernel.shape[1] // 2

    def __call__(self, x: Tensor) -> Tensor:
        img, lead = _as_images(x)
        return F.conv2d(img, self.kernel.to(x)[None, None], padding=self._pad()).reshape(*lead, *x.shape[-2:])

    def adjoint(self, y: Tensor) -> Tensor:
        img, lead = _as_images(y)
        return F.conv_transpose2d(img, self.kernel.to(y)[None, None], padding=self._pad()).reshape(*lead, *y.shape[-2:])

    def structured_svd(self, shape: Shape) -> SVD | None:
        """A separable kernel outer(a, b) blurs columns by a and rows by b: the Kronecker SVD of the two 1-D 'same'
        correlations (exact, zero padding kept; no circulant approximation). None for other kernels."""
        ab = separable_factors(self.kernel)
        if ab is None or len(shape) < 2:
            return None
        H, W = shape[-2:]
        A_h = Blur(ab[0][:, None]).matrix((H, 1))  # (H, H): correlation down the columns with a
        A_w = Blur(ab[1][None, :]).matrix((1, W))  # (W, W): along the rows with b
        return kronecker_svd(A_h, A_w, shape)


def gaussian_kernel(size: int, std: float) -> Tensor:
    """A normalised size x size Gaussian kernel exp(-r^2 / (2 std^2)) (size odd)."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (r / std) ** 2)
    k = torch.outer(g, g)
    return k / k.sum()


def motion_kernel(size: int, angle: float = 0.0, length: float | None = None) -> Tensor:
    """A normalised linear motion blur: a segment of `length` pixels (default size) through the centre at `angle`
    degrees, rasterised by splatting points along it bilinearly (size odd)."""
    if size < 3 or size % 2 == 0:
        raise ValueError(f"a motion kernel has an odd size >= 3, got {size}")
    length = float(size if length is None else length)
    t = ((torch.arange(8 * size, dtype=torch.float64) + 0.5) / (8 * size) - 0.5) * length  # midpoints of the segment
    c = (size - 1) / 2
    px = (c + t * math.cos(math.radians(angle))).clamp(0, size - 1)
    py = (c - t * math.sin(math.radians(angle))).clamp(0, size - 1)
    k = torch.zeros(size, size, dtype=torch.float64)
    x0, y0 = px.floor().long().clamp(max=size - 2), py.floor().long().clamp(max=size - 2)
    fx, fy = px - x0, py - y0
    for dy, dx, w in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        k.index_put_((y0 + dy, x0 + dx), w, accumulate=True)
    return k / k.sum()
