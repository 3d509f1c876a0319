"""Linear measurement operators y = A x on one sample's shape, batched over the leading dim: the forward map, its
adjoint, a dense matrix and an SVD for the spectral methods (DDRM, Pi-GDM, SMC), and composition (`A @ B`).

The SVD is A = U diag(s) V^T on flattened samples (Kawar et al. 2022, Sec. 3): `vt` maps a sample to its n spectral
coordinates, `v` maps back, `ut` maps a measurement to the same n coordinates (0 where s = 0) and `u` back. A mask
has a free diagonal SVD; every other operator gets a dense one built from its matrix, for samples of a few thousand
numbers at most (a structured fast form can replace `svd` where a method needs larger ones).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import math
from typing import Callable

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
Shape = tuple[int, ...]


class SVD:
    """A = U diag(s) V^T in V's coordinates: s (n,) is 0 on the null space; `observed` marks s > 0."""

    def __init__(self, s: Tensor, vt: Callable[[Tensor], Tensor], v: Callable[[Tensor], Tensor],
                 ut: Callable[[Tensor], Tensor], u: Callable[[Tensor], Tensor]):
        self.s, self.vt, self.v, self.ut, self.u = s, vt, v, ut, u
        self.observed = s > 0

    def y_bar(self, y: Tensor) -> Tensor:
        """S^+ U^T y (B, n): the measurement as noisy spectral coordinates of x0, 0 where unobserved."""
        s = self.s.to(y)
        return torch.where(s > 0, self.ut(y) / torch.where(s > 0, s, 1), 0)


def diagonal_svd(d: Tensor, shape: Shape) -> SVD:
    """The SVD of x -> d * x (U = V = I): singular values |d|, signs moved into U."""
    flat = d.reshape(-1)
    sign = torch.where(flat < 0, -1.0, 1.0).to(flat)
    return SVD(flat.abs(), lambda x: x.reshape(x.shape[0], -1), lambda z: z.reshape(z.shape[0], *shape),
               lambda y: y.reshape(y.shape[0], -1) * sign.to(y), lambda z: (z * sign.to(z)).reshape(z.shape[0], *shape))


def dense_svd(A: Tensor, shape: Shape, out_shape: Shape, rtol: float = 1e-10) -> SVD:
    """The SVD of a dense (m, n) matrix on flattened samples; singular values below rtol * max are zero."""
    m, n = A.shape
    U, S, Vh = torch.linalg.svd(A.double(), full_matrices=True)  # U (m, m), S (min(m, n),), Vh (n, n)
    r = min(m, n)
    s = torch.zeros(n, dtype=torch.float64)
    s[:r] = torch.where(S > rtol * S.max().clamp_min(1e-300), S, 0)

    def ut(y: Tensor) -> Tensor:
        z = y.reshape(y.shape[0], m) @ U.to(y)  # (B, m)
        return F.pad(z[:, :r], (0, n - r))

    def u(z: Tensor) -> Tensor:
        return (z[:, :r] @ U[:, :r].T.to(z)).reshape(z.shape[0], *out_shape)

    return SVD(s, lambda x: x.reshape(x.shape[0], n) @ Vh.T.to(x), lambda z: (z @ Vh.to(z)).reshape(z.shape[0], *shape),
               ut, u)


class Operator(ABC):
    """A linear map on samples of one shape: `A(x)` (B, *shape) -> (B, *out_shape), `adjoint`, `matrix`, `svd`."""

    @abstractmethod
    def __call__(self, x: Tensor) -> Tensor:
        """A x."""

    @abstractmethod
    def adjoint(self, y: Tensor) -> Tensor:
        """A^T y."""

    def out_shape(self, shape: Shape) -> Shape:
        """The shape of one measurement of a sample of this shape."""
        return tuple(self(torch.zeros(1, *shape, dtype=torch.float64)).shape[1:])

    def matrix(self, shape: Shape) -> Tensor:
        """A as a dense (m, n) float64 matrix on flattened samples (A applied to the identity's columns)."""
        n = math.prod(shape)
        with torch.no_grad():
            rows = self(torch.eye(n, dtype=torch.float64).reshape(n, *shape)).reshape(n, -1)  # row j: A e_j
        return rows.T.contiguous()

    def svd(self, shape: Shape) -> SVD:
        """A = U diag(s) V^T (dense unless the operator has a structured form); cached per shape."""
        cache = self.__dict__.setdefault("_svd", {})
        if shape not in cache:
            cache[shape] = dense_svd(self.matrix(shape), shape, self.out_shape(shape))
        return cache[shape]

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

    def svd(self, shape: Shape) -> SVD:
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
