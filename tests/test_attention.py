"""dot_product_attention equals softmax(q k^T / sqrt(d)) v computed by hand in float64, on both of its kernels."""

import pytest
import torch

from torchdiffusion.nn.attention import dot_product_attention


def reference(q, k, v, mask):
    w = (q.double() @ k.double().transpose(-1, -2)) / q.shape[-1] ** 0.5
    w = w.masked_fill(~mask, float("-inf")) if mask is not None else w
    return w.softmax(-1) @ v.double()


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_the_formula_and_its_gradient(dtype, tol, masked):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g) for _ in range(3))
    mask = None
    if masked:
        mask = torch.rand(2, 1, 1, 7, generator=g) > 0.4
        mask[..., 0] = True  # every row keeps a key
    leaves = [t.to(dtype).requires_grad_() for t in (q, k, v)]
    out = dot_product_attention(*leaves, mask)
    assert out.dtype == dtype and out.shape == (2, 3, 7, 8)
    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    ref = reference(*ref_leaves, mask)
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=tol)
    w = torch.randn(out.shape, generator=g, dtype=torch.float64)
    (out.double() * w).sum().backward()
    (ref * w).sum().backward()
    for a, b in zip(leaves, ref_leaves):
        torch.testing.assert_close(a.grad.double(), b.grad, rtol=0, atol=4 * tol)
