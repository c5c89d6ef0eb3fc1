"""A fused forward for Llama-style bases: the same maths as transformers' eager path, less work.

The population's training step is dominated by the frozen base's matmuls (4*N*D FLOPs per learner
step). On a small CPU model, the transformers forward spent about half its time on everything else:
- many small element-wise kernels, each a pass over memory;
- three q/k/v matmuls and two gate/up matmuls where one each would do;
- autograd backwards that concatenate, scale and copy;
- the last block run on every position, although only the positions that predict an answer token
  reach the loss (about 7 of 32 in a probe-sized batch).

This path is for `LlamaForCausalLM`-shaped models only. It:
- fuses q/k/v into one [M, H] x [H, 3H] matmul. The modules' weights become views into the fused
  tensors, so no memory is duplicated and the transformers path still sees the same weights;
- in block 0, gathers the normed input and base q/k/v from a per-token table when the vocabulary
  is smaller than the pass (they depend on the token id alone);
- applies every learner's LoRA on q and v with one A-bmm for both (dropout 0), adds the B-bmm
  into the base output, and lays out the backward's products with the rank as a row count;
- uses autograd functions with hand-written backwards for RMSNorm, RoPE (written straight into
  the attention's [N, heads, T, d] layout), attention, and the SwiGLU MLP (when no adapter sits
  on its modules; in chunks of 512 rows so each chunk's intermediates stay in cache, keeping
  only gate and up for the backward). For float32 CPU tensors their element-wise work and the
  attention's small products run in C kernels (learners/kernels.py), one pass each; otherwise
  in torch ops. The attention reads and writes the projections' layout, so no copies between;
- runs only the columns that reach a label (learners/encoding.predicting, in the callers);
- adds residuals inside the output GEMMs (addmm);
- attends with a causal mask alone. The population's batches are right-padded, so no real token
  attends to padding;
- in the last block, takes queries (their GEMM and LoRA too) only from the first labelled
  position on, and runs o_proj, the MLP, the final norm and the LM head on the labelled positions
  only (when no adapter sits on those modules). This is exact: a block's output at position t
  feeds nothing but the next block (there is none) and the LM head.

Each of these was timed against the previous step on one thread, P = 16, 512 tokens per learner
(docs/learners.md lists the figures; bench/population.py has the population-level ones).

The tensor layout is the population's: learner g's rows are the g-th block of B rows of the
[G*B, T] batch. `FastLlama.supports(model)` says whether a model can use this path; otherwise the
population runs the transformers forward (learners/population.py). Equality with PEFT and with
the transformers forward is tested in tests/learners/test_fastpath.py. Probes use the same path
under no_grad (learners/probe.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from learners import kernels
from learners.lora import StackedLoRALinear

_TAIL = ("o_proj", "gate_proj", "up_proj", "down_proj")  # modules the last block runs on K rows


@dataclass
class _Block:
    """One decoder block's weights as the fast path uses them."""

    ln1: nn.Module
    ln2: nn.Module
    w_qkv: torch.Tensor      # [H + 2*Hkv, H] frozen: q, k, v rows stacked
    o_proj: nn.Module
    w_gu: torch.Tensor       # [2*I, H] frozen: gate, up rows stacked
    gate_proj: nn.Module
    up_proj: nn.Module
    down_proj: nn.Module
    lora: dict[str, StackedLoRALinear]  # adapted modules of this block by short name


def _fuse(modules: Sequence[nn.Module]) -> torch.Tensor:
    """Stack the frozen weights of `modules` row-wise and make each module's weight a view of it."""
    weights: list[torch.Tensor] = []
    for m in modules:
        w = m.weight
        assert isinstance(w, torch.Tensor)
        weights.append(w.detach())
    fused = torch.cat(weights, dim=0).contiguous()
    row = 0
    for m, w in zip(modules, weights, strict=True):
        n = w.shape[0]
        m.weight = nn.Parameter(fused[row:row + n], requires_grad=False)
        row += n
    return fused


def _base(module: nn.Module) -> nn.Module:
    return module.base if isinstance(module, StackedLoRALinear) else module


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


class FastLlama:
    """The fused forward over a (population-owned) `LlamaForCausalLM` with stacked LoRA layers."""

    @staticmethod
    def supports(model: nn.Module) -> bool:
        """Llama layout, no biases, SiLU MLP, default RoPE, eager-equivalent attention, no dropout."""
        cfg = getattr(model, "config", None)
        if cfg is None or getattr(cfg, "model_type", None) != "llama":
            return False
        rope = getattr(cfg, "rope_scaling", None) or getattr(cfg, "rope_parameters", None) or {}
        rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
        return (not getattr(cfg, "attention_bias", False) and not getattr(cfg, "mlp_bias", False)
                and getattr(cfg, "hidden_act", "silu") == "silu" and rope_type == "default"
                and not getattr(cfg, "attention_dropout", 0.0)
                and getattr(cfg, "pretraining_tp", 1) == 1)

    def __init__(self, model: Any, layers: dict[str, StackedLoRALinear]) -> None:
        """`model`: a `LlamaForCausalLM` (checked by `supports`) whose adapted modules are `layers`."""
        inner, cfg = model.model, model.config
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.scaling = self.head_dim ** -0.5
        self.embed, self.norm, self.rotary = inner.embed_tokens, inner.norm, inner.rotary_emb
        by_module = {id(layer): layer for layer in layers.values()}
        self.blocks: list[_Block] = []
        for blk in inner.layers:
            att, mlp = blk.self_attn, blk.mlp
            mods = {"q_proj": att.q_proj, "k_proj": att.k_proj, "v_proj": att.v_proj,
                    "o_proj": att.o_proj, "gate_proj": mlp.gate_proj, "up_proj": mlp.up_proj,
                    "down_proj": mlp.down_proj}
            lora = {k: m for k, m in mods.items() if id(m) in by_module}
            self.blocks.append(_Block(
                ln1=blk.input_layernorm, ln2=blk.post_attention_layernorm,
                w_qkv=_fuse([_base(mods[k]) for k in ("q_proj", "k_proj", "v_proj")]),
                o_proj=mods["o_proj"],
                w_gu=_fuse([_base(mods[k]) for k in ("gate_proj", "up_proj")]),
                gate_proj=mods["gate_proj"], up_proj=mods["up_proj"], down_proj=mods["down_proj"], lora=lora))
        # the last block may run its tail on the labelled rows only when no adapter sits there
        self.trim_tail = not any(k in self.blocks[-1].lora for k in _TAIL)

    # --- pieces ---------------------------------------------------------------------------------
    @staticmethod
    def _norm(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        w = module.weight
        assert isinstance(w, torch.Tensor)
        return _RMSNorm.apply(x, w, module.variance_epsilon)

    @staticmethod
    def _linear(module: nn.Module, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """residual + module(x) for 2D x: one addmm when the module has no adapter."""
        if isinstance(module, StackedLoRALinear):
            return residual + module(x)
        w = module.weight
        assert isinstance(w, torch.Tensor)
        return torch.addmm(residual, x, w.t())

    def _qkv(self, b: _Block, x: torch.Tensor, G: int, qkv: torch.Tensor | None = None,
             N: int = 1, t0: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q [N, T-t0, hq] for the positions t0.. and k, v [M, hk] of normed x [M, H] (M = N*T),
        with every learner's LoRA added (drawn in transformers' order q, k, v, so dropout masks
        match). q and v share one A-bmm and add their B-bmm into the base output (baddbmm) when
        only they are adapted, dropout 0; then, for t0 > 0, q's GEMM and LoRA run on the rows
        from t0 on only. `qkv`: the base's part x W_qkv^T [M, hq + 2hk] when the caller has it."""
        hq, hk = self.heads * self.head_dim, self.kv_heads * self.head_dim
        T, H = x.shape[0] // N, x.shape[1]
        lq, lk, lv = (b.lora.get(name) for name in ("q_proj", "k_proj", "v_proj"))
        fused_qv = lq is not None and lv is not None and lk is None and not (
            lq.training and bool(((lq.drop > 0) | (lv.drop > 0)).any()))
        xq: torch.Tensor | None = None
        if t0 and qkv is None and (fused_qv or lq is None):    # q on rows t0.. alone
            xq = x.view(N, T, H)[:, t0:].reshape(-1, H)                    # [N*(T-t0), H]
            q = xq @ b.w_qkv[:hq].t()
            k, v = (x @ b.w_qkv[hq:].t()).split((hk, hk), dim=-1)
        else:
            if qkv is None:
                qkv = x @ b.w_qkv.t()                                    # [M, hq + 2hk]
            q, k, v = qkv.split((hq, hk, hk), dim=-1)
        if fused_qv:
            assert lq is not None and lv is not None
            lo, hi = lq.span
            A = torch.cat([lq.lora_A[lo:hi], lv.lora_A[lo:hi]], dim=1)        # [G, 2r, in]
            # the scale alpha/r on B's columns instead of on h: the same product, a smaller tensor
            bq = lq.lora_B[lo:hi] * lq.gain[lo:hi, None, :]                 # [G, hq, r]
            bv = lv.lora_B[lo:hi] * lv.gain[lo:hi, None, :]                 # [G, hk, r]
            q, v = _LoRAQV.apply(x.view(G, -1, H), None if xq is None else xq.view(G, -1, H),
                                 A, bq, bv, q.view(G, -1, hq), v.view(G, -1, hk))
            v = v.view(-1, hk)
        else:
            q, k, v = (t if m is None else t + m.lora_out(x) for t, m in ((q, lq), (k, lk), (v, lv)))
        q = q.reshape(N, -1, hq)
        return (q if xq is not None else q[:, t0:]), k, v

    def _attention(self, b: _Block, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   bias: torch.Tensor, N: int, G: int, t0: int = 0, qkv: torch.Tensor | None = None
                   ) -> torch.Tensor:
        """Causal self-attention of block b on normed x [M, H] (M = N*T) for the query positions
        t0..T-1 of every row -> [N*(T-t0), heads*head_dim] (keys and values: all positions)."""
        M = x.shape[0]
        T, d, h, hk = M // N, self.head_dim, self.heads, self.kv_heads
        q, k, v = self._qkv(b, x, G, qkv, N, t0)
        q = _Rope.apply(q.view(N, T - t0, h, d), cos[t0:], sin[t0:])     # [N, h, T-t0, d]
        k = _Rope.apply(k.view(N, T, hk, d), cos, sin)                    # [N, hk, T, d]
        v = v.view(N, T, hk, d)
        if hk != h:
            k, v = k.repeat_interleave(h // hk, dim=1), v.repeat_interleave(h // hk, dim=2)
        o = _Attention.apply(q, k, v, bias, t0, self.scaling)            # [N, T-t0, h, d]
        return o.view(N * (T - t0), h * d)

    def _mlp(self, b: _Block, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """residual + MLP(x), x [M, H]."""
        if any(k in b.lora for k in ("gate_proj", "up_proj", "down_proj")):   # the modules' path
            return self._linear(b.down_proj, nn.functional.silu(b.gate_proj(x)) * b.up_proj(x),
                                residual)
        inter = b.w_gu.shape[0] // 2
        wd = b.down_proj.weight
        assert isinstance(wd, torch.Tensor)
        return _MLP.apply(x, residual, b.w_gu[:inter], b.w_gu[inter:], wd)

    def _first_block_inputs(self, b: _Block, ids: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Block 0's normed input [M, H] and base q/k/v [M, hq + 2hk], or None for the latter.

        Both depend on the token id alone (the embedding and the base are frozen), so when the
        vocabulary has fewer rows than the batch has tokens they are rows of a per-token table:
        one [V, H] x [H, 3H] GEMM and two gathers instead of a norm and an [M, H] x [H, 3H] GEMM.
        (The embedded base has V = 102 against M = 2,048 tokens per pass.)"""
        emb = self.embed.weight
        assert isinstance(emb, torch.Tensor)
        flat = ids.reshape(-1)
        if emb.requires_grad or emb.shape[0] > flat.shape[0]:
            return self._norm(b.ln1, self.embed(ids).view(flat.shape[0], -1)), None
        table = self._norm(b.ln1, emb)                                   # [V, H]
        return table[flat], (table @ b.w_qkv.t())[flat]

    # --- the forward ----------------------------------------------------------------------------
    def hidden(self, ids: torch.Tensor, mask: torch.Tensor, sel: torch.Tensor, G: int) -> torch.Tensor:
        """Final-normed hidden states at the positions `sel` [N, T] bool marks: [K, H].

        ids, mask [N, T] with N = G*B, right-padded (padding only after a row's tokens, as
        `encode_pairs` lays it out); sel[n, t] = position t of row n predicts a label. Equal to the
        transformers forward's `last_hidden_state[sel]`. With right padding a causal mask alone is
        exact: a token attends only to earlier positions, none of them padding, so `mask` is not
        needed (padding positions see other values, but reach no label).
        """
        N, T = ids.shape
        h = self.embed(ids).view(N * T, -1)                              # [M, H]
        pos = torch.arange(T, device=ids.device)[None]
        cos, sin = self.rotary(h[None], pos)                             # [1, T, d]
        half = self.head_dim // 2
        cos, sin = cos[0, :, :half].contiguous(), sin[0, :, :half].contiguous()  # [T, d/2]
        bias = torch.zeros(T, T, dtype=h.dtype, device=h.device)
        bias.masked_fill_(~torch.ones(T, T, dtype=torch.bool, device=h.device).tril(),
                          torch.finfo(h.dtype).min)
        last = len(self.blocks) - 1
        for i, b in enumerate(self.blocks):
            trim = i == last and self.trim_tail
            t0 = 0
            if trim:   # queries from the first labelled position on (answers end each row)
                cols = sel.any(0).nonzero()
                t0 = int(cols[0, 0]) if len(cols) else T - 1
            x, qkv = self._first_block_inputs(b, ids) if i == 0 else (self._norm(b.ln1, h), None)
            att = self._attention(b, x, cos, sin, bias, N, G, t0, qkv)
            if trim:   # o_proj and the MLP on the labelled rows only: [K, H]
                tail = sel[:, t0:].reshape(-1)
                h, att = h.view(N, T, -1)[:, t0:].reshape(-1, h.shape[-1])[tail], att[tail]
            h = self._linear(b.o_proj, att, h)
            h = self._mlp(b, self._norm(b.ln2, h), h)
        h = self._norm(self.norm, h)
        return h if self.trim_tail else h[sel.reshape(-1)]


__all__ = ["FastLlama"]
