"""A fused forward for Llama-style bases: the same maths as transformers' eager path, less work.

The population's training step is dominated by the frozen base's matmuls (4*N*D FLOPs per learner
step). On a small CPU model, the transformers forward spent about half its time on everything else:
- many small element-wise kernels, each a pass over memory;
- three q/k/v matmuls and two gate/up matmuls where one each would do;
- autograd backwards that concatenate, scale and copy;
- the last block run on every position, although only the positions that predict an answer token
  reach the loss (about 7 of 32 in a probe-sized batch).

This path is for `LlamaForCausalLM`-shaped models only (Llama, SmolLM2, and Qwen2, whose q/k/v
biases ride along in the fused GEMM). It:
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
- in training (`hidden(..., share=True)`), runs the tokens all rows of a pass start with (a chat
  template's system turn: 24 of SmolLM2's 48 columns in bench/population.py) once per learner
  instead of once per row; the rows attend to their learner's prefix keys and values. Exact
  without dropout (the rows' prefix states are equal); 1.70x fewer CPU-seconds a SmolLM2 step
  at 4 learners x 8 pairs, one thread, interleaved A/B;
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

from learners.fastops import _MLP, _Attention, _LoRAQV, _RMSNorm, _Rope
from learners.lora import StackedLoRALinear

_TAIL = ("o_proj", "gate_proj", "up_proj", "down_proj")  # modules the last block runs on K rows


@dataclass
class _Block:
    """One decoder block's weights as the fast path uses them."""

    ln1: nn.Module
    ln2: nn.Module
    w_qkv: torch.Tensor      # [H + 2*Hkv, H] frozen: q, k, v rows stacked
    b_qkv: torch.Tensor | None  # [H + 2*Hkv] their biases (Qwen2), or None
    o_proj: nn.Module
    w_gu: torch.Tensor       # [2*I, H] frozen: gate, up rows stacked
    gate_proj: nn.Module
    up_proj: nn.Module
    down_proj: nn.Module
    lora: dict[str, StackedLoRALinear]  # adapted modules of this block by short name


def _fuse(modules: Sequence[nn.Module], attr: str = "weight") -> torch.Tensor:
    """Stack the frozen `attr` (weight or bias) of `modules` row-wise and make each module's a view
    of it."""
    weights: list[torch.Tensor] = []
    for m in modules:
        w = getattr(m, attr)
        assert isinstance(w, torch.Tensor)
        weights.append(w.detach())
    fused = torch.cat(weights, dim=0).contiguous()
    row = 0
    for m, w in zip(modules, weights, strict=True):
        n = w.shape[0]
        setattr(m, attr, nn.Parameter(fused[row:row + n], requires_grad=False))
        row += n
    return fused


def _mm(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x w^T (+ bias): one GEMM either way."""
    return x @ w.t() if bias is None else torch.addmm(bias, x, w.t())


def _base(module: nn.Module) -> nn.Module:
    return module.base if isinstance(module, StackedLoRALinear) else module


def additive_mask(see: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Eager attention's additive mask of the bool `see`: 0 where True, the dtype's min elsewhere."""
    return torch.zeros(see.shape, dtype=dtype, device=see.device).masked_fill_(
        ~see, torch.finfo(dtype).min)


def common_prefix(ids: torch.Tensor, sel: torch.Tensor, B: int) -> int:
    """The leading tokens every labelled row of a right-padded [G*B, T] pass starts with (a chat
    template's system turn), up to the first position that predicts a label (sel [G*B, T]); 0
    where sharing them would save less than an eighth of the rows (B rows a learner)."""
    N, T = ids.shape
    rows = sel.any(1)
    if B < 2 or not bool(rows.any()):
        return 0
    labelled = ids[rows]
    same = (labelled == labelled[0]).all(0).int().cumprod(0)            # [T]
    Tp = min(int(same.sum()), int(sel.any(0).nonzero()[0, 0]))
    return Tp if 8 * (B - 1) * Tp >= B * T else 0


class FastLlama:
    """The fused forward over a (population-owned) `LlamaForCausalLM` (or Qwen2) with stacked LoRA
    layers."""

    @staticmethod
    def supports(model: nn.Module) -> bool:
        """Llama (SmolLM2...) or Qwen2 layout: SiLU MLP without biases, default RoPE, full causal
        attention (no sliding window), no attention dropout; biases on q/k/v (Qwen2, Llama's
        attention_bias) and o_proj (Llama's attention_bias) are taken."""
        cfg = getattr(model, "config", None)
        if cfg is None or getattr(cfg, "model_type", None) not in ("llama", "qwen2"):
            return False
        rope = getattr(cfg, "rope_scaling", None) or getattr(cfg, "rope_parameters", None) or {}
        rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
        full = all(t == "full_attention" for t in getattr(cfg, "layer_types", None) or ())
        return (full and not getattr(cfg, "mlp_bias", False)
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
            qkv = [_base(mods[k]) for k in ("q_proj", "k_proj", "v_proj")]
            self.blocks.append(_Block(
                ln1=blk.input_layernorm, ln2=blk.post_attention_layernorm,
                w_qkv=_fuse(qkv), b_qkv=_fuse(qkv, "bias") if qkv[0].bias is not None else None,
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
        out, bias = torch.addmm(residual, x, w.t()), module.bias
        assert bias is None or isinstance(bias, torch.Tensor)
        return out if bias is None else out.add_(bias)

    @staticmethod
    def qv_factors(b: _Block) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Block b's q and v LoRA as `_LoRAQV` takes them: A [G, 2r, in] (q's rows, then v's), and
        B of q [G, hq, r] and of v [G, hk, r] with the scale alpha/r on their columns (the same
        product as on h, a smaller tensor)."""
        lq, lv = b.lora["q_proj"], b.lora["v_proj"]
        lo, hi = lq.span
        return (torch.cat([lq.lora_A[lo:hi], lv.lora_A[lo:hi]], dim=1),
                lq.lora_B[lo:hi] * lq.gain[lo:hi, None, :], lv.lora_B[lo:hi] * lv.gain[lo:hi, None, :])

    def _qkv(self, b: _Block, x: torch.Tensor, G: int, qkv: torch.Tensor | None = None,
             N: int = 1, t0: int = 0, rows: Any = None, factors: Any = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q [N, T-t0, hq] for the positions t0.. and k, v [M, hk] of normed x [M, H] (M = N*T),
        with every learner's LoRA added (drawn in transformers' order q, k, v, so dropout masks
        match). q and v share one A-bmm and add their B-bmm into the base output (baddbmm) when
        only they are adapted, dropout 0; then, for t0 > 0, q's GEMM and LoRA run on the rows
        from t0 on only. `qkv`: the base's part x W_qkv^T [M, hq + 2hk] when the caller has it.
        `rows`: instead of N and t0, a function taking [M, F] to the queried rows [Mq, F]
        (learner-major, as the rows of x): then q is those rows, [Mq, hq]. `factors`: b's
        `qv_factors` where the caller keeps them (adapters that do not change between calls)."""
        hq, hk = self.heads * self.head_dim, self.kv_heads * self.head_dim
        T, H = x.shape[0] // N, x.shape[1]
        if rows is None and t0:
            def rows(t: torch.Tensor) -> torch.Tensor:
                return t.view(N, T, t.shape[-1])[:, t0:].reshape(-1, t.shape[-1])
        lq, lk, lv = (b.lora.get(name) for name in ("q_proj", "k_proj", "v_proj"))
        fused_qv = lq is not None and lv is not None and lk is None and not (
            lq.training and bool(((lq.drop > 0) | (lv.drop > 0)).any()))
        xq: torch.Tensor | None = None
        if rows is not None and qkv is None and (fused_qv or lq is None):   # q on those rows alone
            xq = rows(x)                                                   # [Mq, H]
            bias = b.b_qkv
            q = _mm(xq, b.w_qkv[:hq], None if bias is None else bias[:hq])
            k, v = _mm(x, b.w_qkv[hq:], None if bias is None else bias[hq:]).split((hk, hk), dim=-1)
        else:
            if qkv is None:
                qkv = _mm(x, b.w_qkv, b.b_qkv)                           # [M, hq + 2hk]
            q, k, v = qkv.split((hq, hk, hk), dim=-1)
        if fused_qv:
            A, bq, bv = factors if factors is not None else self.qv_factors(b)
            q, v = _LoRAQV.apply(x.view(G, -1, H), None if xq is None else xq.view(G, -1, H),
                                 A, bq, bv, q.view(G, -1, hq), v.view(G, -1, hk))
            v = v.view(-1, hk)
        else:
            q, k, v = (t if m is None else t + m.lora_out(x) for t, m in ((q, lq), (k, lk), (v, lv)))
        q = q.reshape(-1, hq)
        if rows is not None and xq is None:
            q = rows(q)
        return (q.view(N, -1, hq) if t0 or rows is None else q), k, v

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

    def _attention_shared(self, b: _Block, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                          bias: torch.Tensor, G: int, B: int, Tp: int, t0: int,
                          qkv: torch.Tensor | None = None, trim: bool = False) -> torch.Tensor:
        """`_attention` on the shared-prefix layout (see `hidden`): x [G*R, H], learner g's R =
        Tp + B*Ts rows its prefix once, then its B rows' positions Tp..T-1. The prefix attends
        causally within itself; each row's positions attend to the learner's prefix and to the
        row's own earlier positions (its keys and values: the prefix's, expanded to the B rows, and
        its own) -> [G*R, heads*head_dim] in x's layout (t0 = Tp); `trim` (the last block): the
        rows' positions t0..T-1 alone (t0 >= Tp), [G*B*(T-t0), heads*head_dim]."""
        d, h, hk = self.head_dim, self.heads, self.kv_heads
        R, N = x.shape[0] // G, G * B
        Ts = (R - Tp) // B
        hq, F = h * d, hk * d

        def suffix(t: torch.Tensor, start: int) -> torch.Tensor:   # [G*R, f] -> [N, T-start, f]
            return t.view(G, R, -1)[:, Tp:].reshape(N, Ts, -1)[:, start - Tp:]

        prefix_queries = not trim
        if prefix_queries:
            q, k, v = self._qkv(b, x, G, qkv)                              # q [G*R, hq]
            qs = suffix(q, Tp)
        else:
            q, k, v = self._qkv(b, x, G, qkv, rows=lambda t: suffix(t, t0).reshape(-1, t.shape[-1]))
            qs = q.view(N, -1, hq)                                       # [N, T-t0, hq]
        kp = _Rope.apply(k.view(G, R, F)[:, :Tp].view(G, Tp, hk, d), cos[:Tp], sin[:Tp])
        ks = _Rope.apply(suffix(k, Tp).view(N, Ts, hk, d), cos[Tp:], sin[Tp:])   # [N, hk, Ts, d]
        vp, vs = v.view(G, R, F)[:, :Tp].view(G, Tp, hk, d), suffix(v, Tp).view(N, Ts, hk, d)
        # each row's keys and values: the learner's prefix (expanded to its B rows), then its own
        kf = torch.cat([kp[:, None].expand(G, B, hk, Tp, d).reshape(N, hk, Tp, d), ks], dim=2)
        vf = torch.cat([vp[:, None].expand(G, B, Tp, hk, d).reshape(N, Tp, hk, d), vs], dim=1)
        if hk != h:
            kf, vf = kf.repeat_interleave(h // hk, dim=1), vf.repeat_interleave(h // hk, dim=2)
        qs = _Rope.apply(qs.reshape(N, -1, h, d), cos[t0:], sin[t0:])    # [N, h, T-t0, d]
        os = _Attention.apply(qs, kf, vf, bias, t0, self.scaling)        # [N, T-t0, h, d]
        if not prefix_queries:
            return os.view(-1, hq)
        qp = _Rope.apply(q.view(G, R, hq)[:, :Tp].view(G, Tp, h, d), cos[:Tp], sin[:Tp])
        if hk != h:
            kp, vp = kp.repeat_interleave(h // hk, dim=1), vp.repeat_interleave(h // hk, dim=2)
        op = _Attention.apply(qp, kp, vp, bias[:Tp, :Tp], 0, self.scaling)  # [G, Tp, h, d]
        return torch.cat([op.view(G, Tp, hq), os.view(G, B * Ts, hq)], dim=1).view(G * R, hq)

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
        return table[flat], _mm(table, b.w_qkv, b.b_qkv)[flat]

    # --- the forward ----------------------------------------------------------------------------
    def shared_prefix(self, ids: torch.Tensor, sel: torch.Tensor, G: int) -> int:
        """How many leading tokens `hidden(..., share=True)` computes once per learner instead of
        once per row (`common_prefix`); 0 where an adapter draws dropout masks: they differ
        between rows, so the rows' prefixes differ too."""
        if any(m.training and bool((m.drop[m.span[0]:m.span[1]] > 0).any())
               for blk in self.blocks for m in blk.lora.values()):
            return 0
        return common_prefix(ids, sel, ids.shape[0] // G)

    def _rope_and_mask(self, h: torch.Tensor, T: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """cos, sin [T, d/2] of the positions 0..T-1 and the causal bias [T, T] (0 on and below the
        diagonal, the dtype's min above)."""
        pos = torch.arange(T, device=h.device)[None]
        cos, sin = self.rotary(h[None], pos)                             # [1, T, d]
        half = self.head_dim // 2
        cos, sin = cos[0, :, :half].contiguous(), sin[0, :, :half].contiguous()  # [T, d/2]
        causal = torch.ones(T, T, dtype=torch.bool, device=h.device).tril()
        return cos, sin, additive_mask(causal, h.dtype)

    def hidden(self, ids: torch.Tensor, mask: torch.Tensor, sel: torch.Tensor, G: int,
               share: bool = False) -> torch.Tensor:
        """Final-normed hidden states at the positions `sel` [N, T] bool marks: [K, H].

        ids, mask [N, T] with N = G*B, right-padded (padding only after a row's tokens, as
        `encode_pairs` lays it out); sel[n, t] = position t of row n predicts a label. Equal to the
        transformers forward's `last_hidden_state[sel]`. With right padding a causal mask alone is
        exact: a token attends only to earlier positions, none of them padding, so `mask` is not
        needed (padding positions see other values, but reach no label).

        `share`: where the rows start with the same tokens (`shared_prefix`: Tp of them), run
        those once per learner: learner g's rows of the pass are then its prefix (Tp rows) followed
        by its B rows' positions Tp..T-1, and only the attention tells them apart. With the same
        adapter and no dropout the B rows' prefix states are equal, so this is exact; the
        gradients reaching the prefix are summed over the rows by the backward of the expanded
        keys and values. Unlabelled rows (a learner's padding rows) get the prefix too: they
        reach no label.
        """
        N, T = ids.shape
        Tp = self.shared_prefix(ids, sel, G) if share else 0
        B, Ts = N // G, T - Tp
        if Tp:   # learner-major: [prefix, row 0's positions Tp.., row 1's, ...]
            pre = ids[sel.any(1).nonzero()[0, 0], :Tp]
            ids = torch.cat([pre.expand(G, Tp), ids[:, Tp:].reshape(G, B * Ts)], dim=1)
        h = self.embed(ids).view(ids.numel(), -1)                        # [M, H]
        cos, sin, bias = self._rope_and_mask(h, T)
        last = len(self.blocks) - 1
        for i, b in enumerate(self.blocks):
            trim = i == last and self.trim_tail
            t0 = Tp
            if trim:   # queries from the first labelled position on (answers end each row)
                cols = sel.any(0).nonzero()
                t0 = int(cols[0, 0]) if len(cols) else T - 1
            x, qkv = self._first_block_inputs(b, ids) if i == 0 else (self._norm(b.ln1, h), None)
            if Tp:
                att = self._attention_shared(b, x, cos, sin, bias, G, B, Tp, t0, qkv, trim)
            else:
                att = self._attention(b, x, cos, sin, bias, N, G, t0, qkv)
            if trim:   # o_proj and the MLP on the labelled rows only: [K, H]
                H = h.shape[-1]
                rows = h.view(G, -1, H)[:, Tp:].reshape(N, Ts, H)[:, t0 - Tp:].reshape(-1, H)
                tail = sel[:, t0:].reshape(-1)
                h, att = rows[tail], att[tail]
            h = self._linear(b.o_proj, att, h)
            h = self._mlp(b, self._norm(b.ln2, h), h)
        h = self._norm(self.norm, h)
        if self.trim_tail:
            return h
        if Tp:
            h = h.view(G, -1, h.shape[-1])[:, Tp:].reshape(N * Ts, -1)
        return h[sel[:, Tp:].reshape(-1)]


__all__ = ["FastLlama", "additive_mask", "common_prefix"]
