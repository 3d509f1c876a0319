"""Measurement operators: <A x, y> = <x, A^T y> on random tensors, the SVD reconstructs A and the sample, the
pseudo-inverse solves A x = y, and each operator is what its name says (mask, block average, blur)."""

import pytest
import torch

from torchdiffusion.inverse import Blur, Compose, Downsample, Mask, Matrix, gaussian_kernel, motion_kernel

SHAPE = (2, 6, 6)


def operators():
    g = torch.Generator().manual_seed(1)
    mask = (torch.rand(SHAPE, generator=g) > 0.4).double()
    return {
        "mask": Mask(mask), "downsample": Downsample(2), "gaussian_blur": Blur(gaussian_kernel(5, 1.2)),
        "motion_blur": Blur(motion_kernel(5, 30.0)),
        "matrix": Matrix(torch.randn(20, 72, generator=g, dtype=torch.float64), SHAPE),
        "sr_of_blur": Downsample(3) @ Blur(gaussian_kernel(3, 0.7)),
        "mask_of_matrix": Mask(torch.tensor([1.0, 0.0, 1.0])) @ Matrix(torch.randn(3, 72, generator=g), SHAPE),
    }


@pytest.mark.parametrize("name", list(operators()))
def test_adjoint_is_the_transpose(name):
    op, g = operators()[name], torch.Generator().manual_seed(2)
    x = torch.randn(4, *SHAPE, generator=g, dtype=torch.float64)
    y = torch.randn(op(x).shape, generator=g, dtype=torch.float64)
    lhs, rhs = (op(x) * y).flatten(1).sum(1), (x * op.adjoint(y)).flatten(1).sum(1)
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)
    assert op.adjoint(y).shape == x.shape and op.out_shape(SHAPE) == tuple(y.shape[1:])


@pytest.mark.parametrize("name", list(operators()))
def test_svd_reconstructs_the_operator_and_the_sample(name):
    op, g = operators()[name], torch.Generator().manual_seed(3)
    x = torch.randn(3, *SHAPE, generator=g, dtype=torch.float64)
    svd = op.svd(SHAPE)
    z = svd.vt(x)
    torch.testing.assert_close(svd.v(z), x)  # V orthogonal
    torch.testing.assert_close(svd.u(svd.s * z), op(x))  # A = U diag(s) V^T
    n = x[0].numel()
    A = op.matrix(SHAPE)
    torch.testing.assert_close(svd.s.sort(descending=True).values[:min(A.shape)],
                               torch.linalg.svdvals(A).clamp_min(0), atol=1e-10, rtol=1e-10)
    # the pseudo-inverse: A A^+ y = y for y in A's range, and A^+ y matches the dense pinv
    y = op(x)
    torch.testing.assert_close(op(op.pinv(y, SHAPE)), y)
    dense = (torch.linalg.pinv(A) @ y.reshape(3, -1).T).T.reshape(3, *SHAPE)
    torch.testing.assert_close(op.pinv(y, SHAPE), dense, atol=1e-9, rtol=1e-9)
    assert z.shape == (3, n)


def test_each_operator_does_what_its_name_says():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    m = torch.zeros(1, 4, 4)
    m[0, 1:3, 1:3] = 1
    assert torch.equal(Mask(m)(x), x * m)
    assert torch.equal(Downsample(2)(x)[0, 0], torch.tensor([[2.5, 4.5], [10.5, 12.5]]))
    delta = torch.zeros(1, 1, 5, 5)
    delta[0, 0, 2, 2] = 1
    k = gaussian_kernel(5, 1.0)
    torch.testing.assert_close(Blur(k)(delta)[0, 0], k.float())  # a symmetric kernel's impulse response
    assert torch.allclose(k.sum(), torch.tensor(1.0, dtype=torch.float64)) and torch.allclose(k, k.T)
    horizontal = motion_kernel(5, 0.0)
    torch.testing.assert_close(horizontal[2], torch.full((5,), 0.2, dtype=torch.float64), atol=0.03, rtol=0)
    assert horizontal.sum(0).count_nonzero() == 5 and horizontal[[0, 1, 3, 4]].abs().max() < 1e-12
    assert isinstance(Downsample(2) @ Mask(m), Compose)


def test_operators_keep_dtype_and_reject_bad_inputs():
    x = torch.randn(2, 1, 4, 4)
    for op in (Mask(torch.ones(1, 4, 4)), Downsample(2), Blur(gaussian_kernel(3, 1.0)), Matrix(torch.randn(3, 16), (1, 4, 4))):
        assert op(x).dtype == torch.float32 and op.adjoint(op(x)).dtype == torch.float32
    with pytest.raises(ValueError, match="0 \\(missing\\) and 1"):
        Mask(torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="multiples of the factor"):
        Downsample(3)(x)
    with pytest.raises(ValueError, match="odd"):
        Blur(torch.ones(2, 2))
    with pytest.raises(ValueError, match="columns"):
        Matrix(torch.randn(3, 10), (1, 4, 4))


def _as_dense(op, shape):
    """The same operator seen only through its matrix (so `svd` builds the dense SVD)."""
    return Matrix(op.matrix(shape), shape)


@pytest.mark.parametrize("op,shape", [(Downsample(2), (2, 6, 4)), (Downsample(3), (1, 6, 9)),
                                      (Blur(gaussian_kernel(5, 1.2)), (2, 7, 5)), (Blur(motion_kernel(5, 0.0)), (1, 6, 6)),
                                      (Blur(gaussian_kernel(3, 0.5)), (6, 4))])
def test_structured_svds_equal_the_dense_one(op, shape):
    """The structured forms (block-orthogonal pooling, Kronecker blur) agree with the dense SVD: same singular values,
    same y_bar's observed part up to the basis, and the same pseudo-inverse and projections."""
    assert op.structured_svd(shape) is not None
    g = torch.Generator().manual_seed(4)
    fast, dense = op.svd(shape), _as_dense(op, shape).svd(shape)
    torch.testing.assert_close(fast.s.sort(descending=True).values, dense.s.sort(descending=True).values,
                               atol=1e-12, rtol=1e-10)
    x = torch.randn(3, *shape, generator=g, dtype=torch.float64)
    y = op(x)
    torch.testing.assert_close(op.pinv(y, shape), _as_dense(op, shape).pinv(y.reshape(3, -1), shape),
                               atol=1e-8, rtol=1e-8)
    # the projection onto the row space, V diag(observed) V^T x, is basis-free
    proj = lambda svd: svd.v(svd.vt(x) * svd.observed)  # noqa: E731
    torch.testing.assert_close(proj(fast), proj(dense), atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(fast.u(fast.ut(y)), y)  # U orthogonal on the range


def test_large_images_get_structured_svds_and_others_a_clear_error():
    shape = (3, 64, 64)  # 12288 numbers: a dense SVD would be 12288 x 12288
    x = torch.randn(2, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    for op in (Mask((x[0] > 0).double()), Downsample(4), Blur(gaussian_kernel(9, 2.0))):
        svd = op.svd(shape)
        torch.testing.assert_close(svd.v(svd.vt(x)), x)
        torch.testing.assert_close(svd.u(svd.s * svd.vt(x)), op(x))
    assert Blur(motion_kernel(5, 30.0)).structured_svd(shape) is None  # not separable
    with pytest.raises(ValueError, match="no structured SVD .* too large"):
        Blur(motion_kernel(5, 30.0)).svd(shape)
