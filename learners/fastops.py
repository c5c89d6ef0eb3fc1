"""The fast path's autograd functions: RMSNorm, RoPE, causal attention, q/v LoRA, SwiGLU MLP.

Each has a hand-written backward, and runs its element-wise work in the C kernels of
learners/kernels.py where it can (float32 CPU tensors), else in torch ops. learners/fastpath.py
composes them into the fused Llama forward and says what each saves.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from learners import kernels


class _RMSNorm(torch.autograd.Function):
    """y = x * rsqrt(mean(x^2) + eps) * w over the last dim, w frozen. One pass each way with the
    C kernels (learners/kernels.py), else two: transformers' RMSNorm takes five forward, and
    autograd's backward of it ran 10x its forward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.kernel = kernels.usable(x, w)
        if ctx.kernel:
            y, r = kernels.rmsnorm_fwd(x, w, eps)
            ctx.save_for_backward(x, w, r)
            return y
        xf = x.float()  # half-precision inputs are normed in float32, as transformers does
        r = torch.linalg.vector_norm(xf, dim=-1, keepdim=True).square_().div_(x.shape[-1])
        r = r.add_(eps).rsqrt_()                                          # [..., 1]
        ctx.save_for_backward(x, w, r)
        return torch.mul(xf, r).to(x.dtype).mul_(w)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        x, w, r = ctx.saved_tensors
        if ctx.kernel:
            return kernels.rmsnorm_bwd(x, w, r, dy), None, None
        xf = x.float()
        g = (dy * w).float()
        s = torch.linalg.vecdot(g, xf).unsqueeze_(-1).mul_(r.pow(3)).div_(x.shape[-1])
        return g.mul_(r).sub_(xf * s).to(x.dtype), None, None


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor,
            sign: float = 1.0) -> None:
    """out = RoPE rotation of x (transformers' half-split layout) by the angles whose cos/sin
    [T, d/2] are given (sign -1: the opposite angles); x and out [N, T, heads, d], any strides
    with a unit last one. One pass with the C kernel, else four fused multiply(-add) passes."""
    if kernels.usable(x, out):
        kernels.rope(x, out, cos, sin, sign)
        return
    half = x.shape[-1] // 2
    c, s = cos[:, None], sin[:, None] * sign                          # [T, 1, d/2]
    x1, x2, o1, o2 = x[..., :half], x[..., half:], out[..., :half], out[..., half:]
    torch.mul(x1, c, out=o1)
    o1.addcmul_(x2, s, value=-1)
    torch.mul(x2, c, out=o2)
    o2.addcmul_(x1, s)


class _Rope(torch.autograd.Function):
    """x [N, T, heads, d] -> RoPE(x) laid out [N, heads, T, d] contiguous (what the attention bmm
    reads); the backward rotates back by the opposite angle. cos, sin: [T, d/2] contiguous."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        N, T, h, d = x.shape
        out = x.new_empty(N, h, T, d)
        _rotate(x, cos, sin, out.transpose(1, 2))
        ctx.save_for_backward(cos, sin)
        return out

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        cos, sin = ctx.saved_tensors
        N, h, T, d = dy.shape
        dx = dy.new_empty(N, T, h, d)
        _rotate(dy.transpose(1, 2) if dy.stride(-1) == 1 else dy.contiguous().transpose(1, 2),
                cos, sin, dx, -1.0)
        return dx, None, None


class _Attention(torch.autograd.Function):
    """Causal softmax(q k^T * scale) v for queries q [N, h, Tq, d] at positions t0.. and keys k
    [N, h, T, d] (contiguous, as _Rope lays them out) and values v [N, T, h, d] (the projections'
    layout, any strides with a unit last one) -> o [N, Tq, h, d] contiguous, the layout o_proj
    reads (query i sees keys j <= t0 + i).

    With the C kernels (float32 CPU, d <= 32): one (row, head) at a time in L1 with register
    tiles, the causal half of the scores only, reading v and writing o (and in the backward
    reading do and writing dv) in the projections' layout, so no tensor is copied between the
    layouts; torch's bmm ran these 32x32x32 products at about 35 GFLOP/s. Else five bmm and one
    softmax-backward kernel, by hand: autograd's backward of the same three ops took twice as long
    at T = 32 (it scales and copies the transposed operands)."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                t0: int, scale: float) -> torch.Tensor:
        """bias [T, T]: 0 on and below the diagonal, the dtype's min above (the torch ops' mask)."""
        ctx.kernel, ctx.scale, ctx.t0 = kernels.attention_usable(q), scale, t0
        N, h, tq, d = q.shape
        if ctx.kernel:
            q, k = q.contiguous(), k.contiguous()
            o = q.new_empty(N, tq, h, d)
            p = kernels.attention_fwd(q, k, v.transpose(1, 2), o.transpose(1, 2), t0, scale)
            ctx.save_for_backward(q, k, v, p)
            return o
        q, k = q.reshape(N * h, tq, d), k.reshape(N * h, -1, d)
        v = v.transpose(1, 2).reshape(N * h, -1, d)
        p = torch.softmax(torch.baddbmm(bias[t0:], q, k.transpose(1, 2), alpha=scale), dim=-1,
                          dtype=torch.float32).to(q.dtype)  # float32 softmax, as transformers
        ctx.save_for_backward(q, k, v, p)
        return torch.bmm(p, v).view(N, h, tq, d).transpose(1, 2).contiguous()

    @staticmethod
    def backward(ctx: Any, do: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q, k, v, p = ctx.saved_tensors
        if do.stride(-1) != 1:
            do = do.contiguous()
        if ctx.kernel:
            dv = torch.empty_like(v, memory_format=torch.contiguous_format)     # [N, T, h, d]
            dq, dk = kernels.attention_bwd(q, k, v.transpose(1, 2), p, do.transpose(1, 2),
                                           dv.transpose(1, 2), ctx.t0, ctx.scale,
                                           need_dk=ctx.needs_input_grad[1])
            return dq, dk, dv if ctx.needs_input_grad[2] else None, None, None, None
        N, tq, h, d = do.shape
        do = do.transpose(1, 2).reshape(N * h, tq, d)
        ds = torch.ops.aten._softmax_backward_data(torch.bmm(do, v.transpose(1, 2)), p, -1, p.dtype)
        ds.mul_(ctx.scale)
        need = ctx.needs_input_grad
        return (torch.bmm(ds, k).view(N, h, tq, d) if need[0] else None,
                torch.bmm(ds.transpose(1, 2), q).view(N, h, -1, d) if need[1] else None,
                torch.bmm(p.transpose(1, 2), do).view(N, h, -1, d).transpose(1, 2) if need[2] else None,
                None, None, None)


class _LoRAQV(torch.autograd.Function):
    """Every learner's LoRA on q and v added to the base's outputs, with one A-bmm for both:
    h = x [A_q; A_v]^T, q + h_q B_q^T, v + h_v B_v^T, learner g's rows in batch g. Where q is
    wanted on some rows only (the last block's queries), its input xq is those rows and q and v
    take one A-bmm each.

    The backward lays out its products so that the narrow rank r is a row count, never a column
    count: at r = 8, [G, R, out] x [G, out, r] ran at 10 GFLOP/s and its transpose, [G, r, out] x
    [G, out, R], 3x faster. Autograd's backward of the same bmm ops takes the slow layouts."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, xq: torch.Tensor | None, A: torch.Tensor,
                bq: torch.Tensor, bv: torch.Tensor, q: torch.Tensor, v: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [G, R, H] (v's input, and q's where xq is None) and xq [G, Rq, H]; A [G, 2r, H] (q's
        rows, then v's); bq [G, hq, r] and bv [G, hk, r] (B with the scale alpha/r on its
        columns); q [G, Rq, hq] and v [G, R, hk] the base outputs (any strides) -> new q, v."""
        r = bq.shape[2]
        if xq is None:
            h = torch.bmm(x, A.transpose(1, 2))                           # [G, R, 2r]
            hq, hv = h[..., :r], h[..., r:]
        else:
            hq, hv = torch.bmm(xq, A[:, :r].transpose(1, 2)), torch.bmm(x, A[:, r:].transpose(1, 2))
        ctx.save_for_backward(x, xq, A, bq, bv, hq, hv)
        return torch.baddbmm(q, hq, bq.transpose(1, 2)), torch.baddbmm(v, hv, bv.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, dq: torch.Tensor, dv: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, xq, A, bq, bv, hq, hv = ctx.saved_tensors
        r = bq.shape[2]
        need = ctx.needs_input_grad
        dhq = torch.bmm(bq.transpose(1, 2), dq.transpose(1, 2))          # [G, r, Rq]
        dhv = torch.bmm(bv.transpose(1, 2), dv.transpose(1, 2))          # [G, r, R]
        dx = dxq = None
        if xq is None:
            dhT = torch.cat([dhq, dhv], dim=1)                            # [G, 2r, R]
            dx = torch.bmm(dhT.transpose(1, 2), A) if need[0] else None
            dA = torch.bmm(dhT, x)
        else:
            dx = torch.bmm(dhv.transpose(1, 2), A[:, r:]) if need[0] else None
            dxq = torch.bmm(dhq.transpose(1, 2), A[:, :r]) if need[1] else None
            dA = torch.cat([torch.bmm(dhq, xq), torch.bmm(dhv, x)], dim=1)
        dbq = torch.bmm(hq.transpose(1, 2), dq).transpose(1, 2)           # [G, hq, r]
        dbv = torch.bmm(hv.transpose(1, 2), dv).transpose(1, 2)
        return (dx, dxq, dA, dbq, dbv, dq if need[5] else None, dv if need[6] else None)


class _MLP(torch.autograd.Function):
    """residual + down(silu(x Wg^T) * (x Wu^T)) for frozen Wg, Wu [I, H], Wd [H, I], computed
    in chunks of rows so that each chunk's [rows, I] intermediates stay in the core's cache
    between the GEMMs and the element-wise passes. The gate and up GEMMs write into one
    chunk-sized buffer each, reused; the forward keeps g and u for the backward, which recomputes
    sigmoid(g) (an exp per element costs less than a third [M, I] tensor through memory:
    interleaved A/B, 4% faster step than keeping silu(g) and sigmoid(g) too). The element-wise
    work between the GEMMs is one C kernel each way where learners/kernels.py can (float32 CPU),
    which also streams g and u out to memory; else torch ops."""

    CHUNK = 512  # rows per chunk on CPU; on CUDA one chunk (many small kernels would cost more)

    @staticmethod
    def _rows(x: torch.Tensor) -> int:
        return max(1, x.shape[0]) if x.is_cuda else _MLP.CHUNK

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, residual: torch.Tensor, wg: torch.Tensor,
                wu: torch.Tensor, wd: torch.Tensor) -> torch.Tensor:
        M, inter, rows = x.shape[0], wg.shape[0], _MLP._rows(x)
        fused = kernels.usable(x)
        g, u = (x.new_empty(M, inter) for _ in range(2))                 # saved for the backward
        y = x.new_empty(min(M, rows), inter)                             # one chunk, reused
        gs, us = (x.new_empty(y.shape) for _ in range(2)) if fused else (g, u)  # the GEMMs' outputs
        out = torch.empty_like(residual)
        for a in range(0, M, rows):
            z = slice(a, a + rows)
            n = x[z].shape[0]
            yc = y[:n]
            # with the kernel, the GEMMs write into the chunk's buffers (in cache) and the kernel
            # streams g and u out; else straight into g and u
            c = slice(0, n) if fused else z
            gc, uc = torch.mm(x[z], wg.t(), out=gs[c]), torch.mm(x[z], wu.t(), out=us[c])
            if fused:
                kernels.swiglu_fwd(gc, uc, g[z], u[z], yc)
            else:
                torch.mul(nn.functional.silu(gc), uc, out=yc)
            torch.addmm(residual[z], yc, wd.t(), out=out[z])
        ctx.save_for_backward(g, u, wg, wu, wd)
        ctx.fused = fused
        return out

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None, None]:
        g, u, wg, wu, wd = ctx.saved_tensors
        M, inter, rows = g.shape[0], g.shape[1], _MLP._rows(g)
        dx = dout.new_empty(M, wg.shape[1])
        dy, du = (dout.new_empty(min(M, rows), inter) for _ in range(2))
        for a in range(0, M, rows):
            z = slice(a, a + rows)
            n = g[z].shape[0]
            dyc, duc = torch.mm(dout[z], wd, out=dy[:n]), du[:n]        # [rows, I]
            if ctx.fused:
                kernels.swiglu_bwd(dyc, g[z], u[z], duc)                  # dyc -> dg
            else:
                sig = torch.sigmoid(g[z])
                s = g[z] * sig
                torch.mul(s, dyc, out=duc)
                # d silu(g)/dg = sig + silu(g) * (1 - sig)
                dyc.mul_(u[z]).mul_(s.addcmul_(s, sig, value=-1).add_(sig))
            torch.mm(dyc, wg, out=dx[z]).addmm_(duc, wu)
        return dx, dout, None, None, None


__all__ = ["_RMSNorm", "_Rope", "_Attention", "_LoRAQV", "_MLP", "_rotate"]
