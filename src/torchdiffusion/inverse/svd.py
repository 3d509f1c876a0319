"""Singular value decompositions of measurement operators, A = U diag(s) V^T on flattened samples (Kawar et al.
2022, Sec. 3): the dense one for any operator of a few thousand numbers per sample, and structured ones that never
form a (numel x numel) matrix -- diagonal (masks), block-orthogonal (average pooling) and Kronecker (separable
blur) -- so DDRM, Pi-GDM and SMC run on large images.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
Shape = tuple[int, ...]

DENSE_SVD_LIMIT = 4096  # numbers per sample above which a dense SVD (O(numel^3) time, numel^2 memory) is refused
RTOL = 1e-10  # singular values below RTOL * max are zero (the null space)


class SVD:
    """A = U diag(s) V^T in V's coordinates: s (n,) is 0 on the null space; `observed` marks s > 0.

    `vt` maps samples (B, *shape) to their n spectral coordinates (B, n), `v` maps back, `ut` maps measurements to
    the same n coordinates (0 where s = 0) and `u` back."""

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


def dense_svd(A: Tensor, shape: Shape, out_shape: Shape, rtol: float = RTOL) -> SVD:
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


def check_dense_size(shape: Shape, what: str) -> None:
    """ValueError when a dense SVD of samples of `shape` would be too large to build."""
    n = math.prod(shape)
    if n > DENSE_SVD_LIMIT:
        raise ValueError(f"{what} has no structured SVD and a dense one on samples of shape {tuple(shape)} ({n} "
                         f"numbers, a {n} x {n} matrix) is too large (limit {DENSE_SVD_LIMIT}); operators with "
                         f"structured SVDs: Mask, Downsample and Blur with a separable kernel (Gaussian, horizontal "
                         f"or vertical motion)")


def pooling_svd(factor: int, shape: Shape) -> SVD:
    """The SVD of f x f average pooling over the last two dims of `shape` (..., H, W): each block's row is
    (1 / f^2) 1^T, so its one singular value is 1 / f with right vector 1 / f (the block's first coordinate in an
    orthonormal basis Q of R^{f^2}) and U = I. Coordinates are ordered (..., H / f, W / f, f^2)."""
    f, (H, W) = factor, shape[-2:]
    lead, h, w = tuple(shape[:-2]), H // f, W // f
    # Q: orthonormal (f^2, f^2) with first column 1 / f, from the QR of [1, e_2, ..., e_{f^2}]
    basis = torch.eye(f * f, dtype=torch.float64)
    basis[:, 0] = 1.0
    Q, _ = torch.linalg.qr(basis)
    Q = Q * torch.sign(Q[0, 0])  # first column +1 / f
    s = torch.zeros(*lead, h, w, f * f, dtype=torch.float64)
    s[..., 0] = 1.0 / f

    def blocks(x: Tensor) -> Tensor:  # (B, *lead, H, W) -> (B, *lead, h, w, f^2)
        b = x.reshape(x.shape[0], *lead, h, f, w, f)
        k = b.ndim
        return b.permute(*range(k - 4), k - 4, k - 2, k - 3, k - 1).reshape(x.shape[0], *lead, h, w, f * f)

    def unblocks(z: Tensor) -> Tensor:  # (B, *lead, h, w, f^2) -> (B, *lead, H, W)
        b = z.reshape(z.shape[0], *lead, h, w, f, f)
        k = b.ndim
        return b.permute(*range(k - 4), k - 4, k - 2, k - 3, k - 1).reshape(z.shape[0], *lead, H, W)

    def vt(x: Tensor) -> Tensor:
        return (blocks(x) @ Q.to(x)).reshape(x.shape[0], -1)

    def v(z: Tensor) -> Tensor:
        return unblocks(z.reshape(z.shape[0], *lead, h, w, f * f) @ Q.T.to(z))

    def ut(y: Tensor) -> Tensor:
        return F.pad(y.reshape(y.shape[0], *lead, h, w, 1), (0, f * f - 1)).reshape(y.shape[0], -1)

    def u(z: Tensor) -> Tensor:
        return z.reshape(z.shape[0], *lead, h, w, f * f)[..., 0]

    return SVD(s.reshape(-1), vt, v, ut, u)


def kronecker_svd(A_h: Tensor, A_w: Tensor, shape: Shape, rtol: float = RTOL) -> SVD:
    """The SVD of X -> A_h X A_w^T on the last two dims of `shape` (..., H, W) (A_h (H, H), A_w (W, W)), i.e. of
    A_h kron A_w on row-major flattened images (Van Loan 2000): U = U_h kron U_w, s_ij = s_h,i s_w,j,
    V = V_h kron V_w, from two small SVDs; singular values below rtol * max are zero."""
    lead, (H, W) = tuple(shape[:-2]), shape[-2:]
    Uh, Sh, Vht = torch.linalg.svd(A_h.double())
    Uw, Sw, Vwt = torch.linalg.svd(A_w.double())
    s = torch.outer(Sh, Sw)
    s = torch.where(s > rtol * s.max().clamp_min(1e-300), s, 0).expand(*lead, H, W).reshape(-1)

    def sandwich(L: Tensor, x: Tensor, R: Tensor) -> Tensor:  # L X R per image, (B, *lead, H, W)
        return L.to(x) @ x @ R.to(x)

    def vt(x: Tensor) -> Tensor:
        return sandwich(Vht, x.reshape(x.shape[0], *lead, H, W), Vwt.T).reshape(x.shape[0], -1)

    def v(z: Tensor) -> Tensor:
        return sandwich(Vht.T, z.reshape(z.shape[0], *lead, H, W), Vwt)

    def ut(y: Tensor) -> Tensor:
        return sandwich(Uh.T, y.reshape(y.shape[0], *lead, H, W), Uw).reshape(y.shape[0], -1)

    def u(z: Tensor) -> Tensor:
        return sandwich(Uh, z.reshape(z.shape[0], *lead, H, W), Uw.T)

    return SVD(s, vt, v, ut, u)


def separable_factors(kernel: Tensor, rtol: float = 1e-12) -> tuple[Tensor, Tensor] | None:
    """(a, b) with kernel = outer(a, b) when the 2-D kernel has rank one (Gaussian, axis-aligned motion), else None."""
    U, S, Vh = torch.linalg.svd(kernel.double())
    if len(S) > 1 and S[1] > rtol * S[0]:
        return None
    root = S[0].sqrt()
    return U[:, 0] * root, Vh[0] * root
