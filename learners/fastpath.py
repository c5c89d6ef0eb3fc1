"""A fused training forward for Llama-style bases: same maths as transformers' eager path, less work.

The population's step is dominated by the frozen base's matmuls (4*N*D FLOPs per learner step), and
on a small CPU model about half the time goes to everything else: many small element-wise kernels,
three q/k/v and two gate/up matmuls where one each would do, and the last block's output projection
and MLP run on every position although only the positions that predict an answer token reach the
loss (about 7 of 32 in a probe-sized batch). This path, for `LlamaForCausalLM`-shaped models only:

- fuses q/k/v into one [M, H] x [H, 3H] matmul and gate/up into one [M, H] x [H, 2I] (the modules'
  weights become views into the fused tensors, so no memory is duplicated and the transformers
  path still sees the same weights);
- applies every learner's LoRA on q and v with one A-bmm for both when their dropout is 0;
- in the last block, runs o_proj, the MLP, the final norm and the LM head on the labelled positions
  only (when no adapter sits on those modules), which is exact: a block's output at position t feeds
  nothing but the next block (there is none) and the LM head.

Tensor layout is the population's: learner g's rows are the g-th block of B rows of the [G*B, T]
batch. `FastLlama.supports(model)` says whether a model can use it; otherwise the population runs
the transformers forward (learners/population.py). Equality with PEFT is tested in
tests/learners/test_fastpath.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from learners.lora import StackedLoRALinear

_FUSED = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")
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
    def _qkv_lora(self, b: _Block, x: torch.Tensor, G: int) -> list[torch.Tensor | None]:
        """LoRA deltas of q, k, v (None where not adapted), drawn in transformers' order q, k, v
        (so dropout masks match); q and v share one A-bmm when only they are adapted, dropout 0."""
        lq, lk, lv = (b.lora.get(k) for k in ("q_proj", "k_proj", "v_proj"))
        if lq is not None and lv is not None and lk is None and not (
                lq.training and bool(((lq.drop > 0) | (lv.drop > 0)).any())):
            lo, hi = lq.span
            r = lq.r_max
            A = torch.cat([lq.lora_A[lo:hi], lv.lora_A[lo:hi]], dim=1)        # [G, 2r, in]
            gain = torch.cat([lq.gain[lo:hi], lv.gain[lo:hi]], dim=1)        # [G, 2r]
            h = torch.bmm(x.reshape(G, -1, x.shape[-1]), A.transpose(1, 2)) * gain[:, None, :]
            shape = (*x.shape[:-1], -1)
            dq = torch.bmm(h[..., :r], lq.lora_B[lo:hi].transpose(1, 2)).reshape(shape)
            dv = torch.bmm(h[..., r:], lv.lora_B[lo:hi].transpose(1, 2)).reshape(shape)
            return [dq, None, dv]
        return [m.lora_out(x) if m is not None else None for m in (lq, lk, lv)]

    @staticmethod
    def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rot * sin

    def _attention(self, b: _Block, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   bias: torch.Tensor, G: int) -> torch.Tensor:
        """Self-attention of block b on normed x [N, T, H] -> [N, T, heads*head_dim] (before o_proj)."""
        N, T, _ = x.shape
        hq, hk = self.heads * self.head_dim, self.kv_heads * self.head_dim
        qkv = x @ b.w_qkv.t()                                            # [N, T, hq + 2hk]
        q, k, v = qkv.split((hq, hk, hk), dim=-1)
        dq, dk, dv = self._qkv_lora(b, x, G)
        q, k, v = (t if d is None else t + d for t, d in ((q, dq), (k, dk), (v, dv)))
        q = q.view(N, T, self.heads, self.head_dim).transpose(1, 2)       # [N, h, T, d]
        k = k.view(N, T, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(N, T, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
        if self.kv_heads != self.heads:
            rep = self.heads // self.kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        w = torch.matmul(q, k.transpose(2, 3)) * self.scaling + bias      # [N, h, T, T]
        w = torch.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        return torch.matmul(w, v).transpose(1, 2).reshape(N, T, -1)

    def _mlp(self, b: _Block, x: torch.Tensor) -> torch.Tensor:
        if "gate_proj" in b.lora or "up_proj" in b.lora:
            mlp_g, mlp_u = b.gate_proj(x), b.up_proj(x)
        else:
            mlp_g, mlp_u = (x @ b.w_gu.t()).chunk(2, dim=-1)
        return b.down_proj(nn.functional.silu(mlp_g) * mlp_u)

    # --- the forward ----------------------------------------------------------------------------
    def hidden(self, ids: torch.Tensor, mask: torch.Tensor, sel: torch.Tensor, G: int) -> torch.Tensor:
        """Final-normed hidden states at the positions `sel` [N, T] bool marks: [K, H].

        ids, mask [N, T] with N = G*B (right padding); sel[n, t] = position t of row n predicts a
        label. Equal to the transformers forward's `last_hidden_state[sel]`.
        """
        N, T = ids.shape
        h = self.embed(ids)
        pos = torch.arange(T, device=ids.device)[None]
        cos, sin = self.rotary(h, pos)                                   # [1, T, d]
        cos, sin = cos[:, None], sin[:, None]                            # [1, 1, T, d]
        allowed = torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()[None] & mask.bool()[:, None, :]
        bias = torch.zeros(allowed.shape, dtype=h.dtype, device=h.device)
        bias.masked_fill_(~allowed, torch.finfo(h.dtype).min)
        bias = bias[:, None]                                             # [N, 1, T, T]
        last = len(self.blocks) - 1
        for i, b in enumerate(self.blocks):
            att = self._attention(b, b.ln1(h), cos, sin, bias, G)
            if i == last and self.trim_tail:
                h, att = h[sel], att[sel]                                # [K, H]: labelled rows
                h = h + b.o_proj(att)
                return self.norm(h + self._mlp(b, b.ln2(h)))
            h = h + b.o_proj(att)  # a StackedLoRALinear applies its adapters
            h = h + self._mlp(b, b.ln2(h))
        return self.norm(h)[sel]


__all__ = ["FastLlama"]
