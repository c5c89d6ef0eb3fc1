"""The fused C kernels (learners/kernels.c) equal the torch ops they replace, propagate NaN and inf
like them (a diverging learner must still read as failed), and a broken compiler falls back."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.testing import assert_close

from learners import kernels

pytestmark = pytest.mark.skipif(kernels.library() is None, reason="no C compiler on this machine")


def test_swiglu_forward_and_backward_equal_autograd() -> None:
    g0 = torch.randn(37, 63, generator=torch.Generator().manual_seed(0)) * 6  # odd size: a tail
    u, dy0 = torch.randn(37, 63), torch.randn(37, 63)
    g_save, u_save, y = (torch.empty_like(g0) for _ in range(3))
    g = g0.clone()
    kernels.swiglu_fwd(g, u, g_save, u_save, y)
    ref_g = g0.clone().requires_grad_()
    ref_u = u.clone().requires_grad_()
    ref = torch.nn.functional.silu(ref_g) * ref_u
    ref.backward(dy0)
    assert torch.equal(g_save, g0) and torch.equal(u_save, u) and torch.equal(g, g0)
    assert_close(y, ref.detach())
    odd = torch.empty(3 * g0.numel() + 1)[1:]                    # unaligned: the plain-store path
    g2, u2, y2 = odd[:g0.numel()], odd[g0.numel():2 * g0.numel()], odd[2 * g0.numel():]
    kernels.swiglu_fwd(g, u, g2, u2, y2)
    assert torch.equal(g2, g0.flatten()) and torch.equal(u2, u.flatten()) and torch.equal(y2, y.flatten())
    dy, du = dy0.clone(), torch.empty_like(g0)
    kernels.swiglu_bwd(dy, g_save, u_save, du)
    assert_close(du, ref_u.grad)
    assert_close(dy, ref_g.grad)                                # dy now holds d/dg


def test_swiglu_handles_extremes_nan_and_inf_like_torch() -> None:
    g0 = torch.tensor([float("nan"), float("inf"), -float("inf"), 1e30, -1e30, 88.5, -88.5, 100.0,
                       -100.0, 0.0, -0.0, 1e-30])
    one = torch.ones_like(g0)
    y = torch.empty_like(g0)
    kernels.swiglu_fwd(g0, one, torch.empty_like(g0), torch.empty_like(g0), y)
    ref = torch.nn.functional.silu(g0)
    finite = torch.isfinite(g0)
    assert_close(y[finite], ref[finite])
    assert torch.isnan(y[0]) and y[1] == float("inf")           # NaN in, NaN out; silu(inf) = inf
    dy, du = torch.ones_like(g0), torch.empty_like(g0)
    kernels.swiglu_bwd(dy, g0, one, du)
    assert torch.isnan(dy[0]) and torch.isnan(du[0])            # a NaN gradient reads as failed
    assert_close(du[finite], ref[finite])


def test_exp_matches_expf_across_the_float_range() -> None:
    """The kernel's exp, seen through silu(x) = x / (1 + exp(-x)), within a few ulp of torch's
    over [-87, 88]."""
    x = torch.linspace(-87.0, 88.0, 200_001)
    y = torch.empty_like(x)
    kernels.swiglu_fwd(x, torch.ones_like(x), torch.empty_like(x), torch.empty_like(x), y)
    assert_close(y, torch.nn.functional.silu(x), atol=0, rtol=5e-7)


def test_rmsnorm_forward_and_backward_equal_autograd_on_strided_rows() -> None:
    wide = torch.randn(20, 48, generator=torch.Generator().manual_seed(1))
    x = wide[:, 8:40]                                            # rows 48 floats apart
    w = torch.rand(32) + 0.5
    y, r = kernels.rmsnorm_fwd(x, w, 1e-6)
    xr = x.clone().requires_grad_()
    ref = xr * torch.rsqrt(xr.pow(2).mean(-1, keepdim=True) + 1e-6) * w
    assert_close(y, ref.detach())
    dy = torch.randn(20, 32)
    ref.backward(dy)
    assert_close(kernels.rmsnorm_bwd(x, w, r, dy), xr.grad)
    x[3, 5] = float("nan")
    y, _ = kernels.rmsnorm_fwd(x, w, 1e-6)
    assert bool(torch.isnan(y[3]).all()) and bool(torch.isfinite(y[[0, 1, 2, 4]]).all())


def test_rope_equals_transformers_and_inverts() -> None:
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    n, t, heads, d = 3, 7, 2, 8
    src = torch.randn(n, t, 3 * heads * d)                      # q as a slice of fused qkv rows
    x = src[..., : heads * d].view(n, t, heads, d)
    ang = torch.rand(t, d // 2) * 6
    cos, sin = ang.cos(), ang.sin()
    out = torch.empty(n, heads, t, d)                           # written as [n, t, heads, d]
    kernels.rope(x, out.transpose(1, 2), cos, sin)
    full_cos, full_sin = torch.cat([cos, cos], -1)[None], torch.cat([sin, sin], -1)[None]
    ref, _ = apply_rotary_pos_emb(x.transpose(1, 2), x.transpose(1, 2), full_cos, full_sin)
    assert_close(out, ref)
    back = torch.empty(n, t, heads, d)
    kernels.rope(out.transpose(1, 2), back, cos, sin, -1.0)    # the backward's inverse rotation
    assert_close(back, x)


def test_a_failing_compiler_falls_back_to_torch_ops_with_a_warning(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CC", "false")                           # a compiler that always fails
    monkeypatch.setenv("EVOLVE_CACHE", str(tmp_path))
    kernels.library.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert kernels.library() is None
        assert any("EVOLVE_KERNELS=0" in str(w.message) for w in caught)
        assert not kernels.usable(torch.ones(2))
        assert not list(tmp_path.rglob("*.so"))
        monkeypatch.setenv("EVOLVE_KERNELS", "0")
        kernels.library.cache_clear()
        with warnings.catch_warnings():
            warnings.simplefilter("error")                      # switched off: no warning
            assert kernels.library() is None
    finally:
        kernels.library.cache_clear()


@pytest.mark.parametrize("t,d,t0", [(9, 8, 0), (9, 8, 5), (33, 32, 20), (17, 16, 3), (7, 24, 0)])
@pytest.mark.parametrize("layout", ["projections", "contiguous"])
def test_causal_attention_equals_autograd_of_masked_softmax(t, d, t0, layout) -> None:
    """t0 > 0: the last block's queries, from the first labelled position on; t not a multiple of
    the kernels' 8-wide tiles. v, o, do and dv either in the projections' [N, T, h, d] layout (as
    the fast path passes them, transposed views) or contiguous [N, h, T, d]."""
    N, h = 2, 3
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(N, h, n, d, generator=gen) for n in (t - t0, t, t))

    def laid_out(x: torch.Tensor) -> torch.Tensor:      # the same values in the chosen layout
        return x.transpose(1, 2).contiguous().transpose(1, 2) if layout == "projections" else x.clone()

    o = laid_out(torch.empty(N, h, t - t0, d))
    p = kernels.attention_fwd(q, k, laid_out(v), o, t0, 0.3)
    qr, kr, vr = (x.clone().requires_grad_() for x in (q, k, v))
    mask = torch.ones(t, t, dtype=torch.bool).tril()[t0:]
    ref_p = (qr @ kr.transpose(-1, -2) * 0.3).masked_fill(~mask, float("-inf")).softmax(-1)
    ref = ref_p @ vr
    assert_close(p, ref_p.detach().reshape(N * h, t - t0, t))
    assert_close(o, ref.detach())
    do = torch.randn(N, h, t - t0, d, generator=gen)
    ref.backward(do)
    dv = laid_out(torch.empty(N, h, t, d))
    dq, dk = kernels.attention_bwd(q, k, laid_out(v), p, laid_out(do), dv, t0, 0.3)
    for got, want in zip((dq, dk, dv), (qr, kr, vr), strict=True):
        assert_close(got, want.grad)
    dq2, none = kernels.attention_bwd(q, k, laid_out(v), p, laid_out(do), dv, t0, 0.3, need_dk=False)
    assert none is None
    assert_close(dq2, qr.grad)
