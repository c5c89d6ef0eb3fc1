"""Greedy generation for the key-term probe through the fused Llama forward (learners/fastpath.py).

`learners.probe.generate_greedy` decodes every learner's answer to every prompt in one loop (all
learners' rows in one forward per step, the prompts' shared leading tokens once per learner,
items leaving the batch when every learner's answer has ended). Through transformers' forward,
its decoding steps ran at about half their matmuls' rate: eager attention copies the grouped K/V
cache `heads / kv_heads` times (`repeat_kv`) and the cache is concatenated anew every step. Here,
for the models `FastLlama.supports` (Llama, SmolLM2, Qwen2), the same decoding runs on the fused
forward's pieces (one q/k/v GEMM, every learner's LoRA in one bmm, addmm residuals), plus:
- a preallocated K/V cache per block, written in place: no concatenation;
- grouped-query attention without copies of K/V: the queries of the `heads / kv_heads` heads
  that share a K/V head are stacked as rows, [rows, kv_heads, group * positions, d] against the
  unrepeated [rows, kv_heads, T, d] (the same products, in eager attention's order: scaled q k^T,
  the additive mask, a float32 softmax, then v);
- the prompts' common prefix (a chat template's system turn) through the model once per learner
  for the whole call, not once per chunk, its K/V copied into each chunk's cache;
- in the prompt pass, the last block's queries, o_proj, MLP, final norm and LM head on the last
  position only (the only one whose logits are read);
- the MLP (without adapters) in chunks of 512 rows through one gate+up GEMM, without keeping the
  intermediates a backward would need.

The texts are those of `generate()` up to the summation order of the fused GEMMs: greedy argmax
decisions could differ only at near-ties (tested equal to PEFT's `generate()` and to
`generate_greedy_hf` in tests/learners/test_fastgen.py; docs/learners.md gives the real-model
figures).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from learners.arch import lm_logits
from learners.fastpath import FastLlama, _Block

Cache = list[tuple[torch.Tensor, torch.Tensor]]   # per block: K, V [rows, kv_heads, T_max, d]
MLP_ROWS = 512   # rows per chunk of the MLP: its [rows, 2I] intermediate stays in cache


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [N, t, heads, d] rotated by per-row angles cos, sin [N, t, d]: transformers'
    `q * cos + rotate_half(q) * sin`, element for element."""
    half = x.shape[-1] // 2
    c, s = cos[:, :, None], sin[:, :, None]
    return x * c + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * s


class FastGen:
    """Greedy decoding of P learners' rows on a `FastLlama` (see the module doc)."""

    def __init__(self, fast: FastLlama, model: Any, P: int, device: torch.device) -> None:
        self.fast, self.model, self.P, self.device = fast, model, P, device
        self.group = fast.heads // fast.kv_heads
        self.prefix: list[int] = []
        self.prefix_cache: Cache = []

    # --- pieces ---------------------------------------------------------------------------------
    def _mlp(self, b: _Block, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """residual + down(silu(gate(x)) * up(x)) for x [M, H]: fused gate/up GEMM in row chunks,
        nothing kept for a backward. Adapters on the MLP: the fast path's module route."""
        if any(k in b.lora for k in ("gate_proj", "up_proj", "down_proj")):
            return self.fast._mlp(b, x, residual)
        wd = b.down_proj.weight
        assert isinstance(wd, torch.Tensor)
        inter = b.w_gu.shape[0] // 2
        out = torch.empty_like(residual)
        for a in range(0, x.shape[0], MLP_ROWS):
            gu = x[a:a + MLP_ROWS] @ b.w_gu.t()                          # [rows, 2I]
            y = nn.functional.silu(gu[:, :inter]).mul_(gu[:, inter:])
            torch.addmm(residual[a:a + MLP_ROWS], y, wd.t(), out=out[a:a + MLP_ROWS])
        return out

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor
                ) -> torch.Tensor:
        """q [N, tq, heads, d] (rotated) against k, v [N, kv_heads, T, d] (the cache's filled
        columns, unrepeated), bias [N, 1, 1, tq, T] additive -> [N * tq, heads * d]."""
        N, tq, h, d = q.shape
        hk, g, T = k.shape[1], self.group, k.shape[2]
        qg = q.view(N, tq, hk, g, d).permute(0, 2, 3, 1, 4).reshape(N, hk, g * tq, d)
        s = torch.matmul(qg, k.transpose(2, 3)).mul_(self.fast.scaling)   # [N, hk, g*tq, T]
        s = s.view(N, hk, g, tq, T).add_(bias)
        p = torch.softmax(s, dim=-1, dtype=torch.float32).to(q.dtype)   # as eager attention
        o = torch.matmul(p.view(N, hk, g * tq, T), v)                    # [N, hk, g*tq, d]
        return o.view(N, hk, g, tq, d).permute(0, 3, 1, 2, 4).reshape(N * tq, h * d)

    def forward(self, ids: torch.Tensor, pos: torch.Tensor, cache: Cache, c0: int,
                bias: torch.Tensor, logits: bool = True) -> torch.Tensor | None:
        """ids, pos [N, tq] at cache columns c0..c0+tq-1 (rows learner-major, N = P * k); their
        K/V written into `cache`; bias [N, 1, 1, tq, c0 + tq] additive over the columns so far.
        Returns the logits [N, V] of the last position (None with logits False)."""
        f = self.fast
        N, tq = ids.shape
        T, d = c0 + tq, f.head_dim
        h = f.embed(ids).view(N * tq, -1)                                 # [M, H]
        cos, sin = f.rotary(h, pos)                                       # [N, tq, d]
        last = len(f.blocks) - 1
        for i, b in enumerate(f.blocks):
            t0 = tq - 1 if i == last and logits else 0    # the last block: the last position only
            x, qkv = f._first_block_inputs(b, ids) if i == 0 else (f._norm(b.ln1, h), None)
            q, k, v = f._qkv(b, x, self.P, qkv, N, t0)                   # q [N, tq-t0, hq]
            K, V = cache[i]
            K[:, :, c0:T] = _rope(k.view(N, tq, -1, d), cos, sin).transpose(1, 2)
            V[:, :, c0:T] = v.view(N, tq, -1, d).transpose(1, 2)
            att = self._attend(_rope(q.view(N, tq - t0, -1, d), cos[:, t0:], sin[:, t0:]),
                               K[:, :, :T], V[:, :, :T], bias[:, :, :, t0:])
            if t0:
                h = h.view(N, tq, -1)[:, t0:].reshape(N, -1)
            h = f._linear(b.o_proj, att, h)
            h = self._mlp(b, f._norm(b.ln2, h), h)
        if not logits:
            return None
        return lm_logits(self.model, f._norm(f.norm, h))                  # h [N, H] -> [N, V]

    def _new_cache(self, rows: int, columns: int) -> Cache:
        f = self.fast
        shape = (rows, f.kv_heads, columns, f.head_dim)
        dtype = f.blocks[0].w_qkv.dtype
        return [(torch.empty(shape, dtype=dtype, device=self.device),
                 torch.empty(shape, dtype=dtype, device=self.device)) for _ in f.blocks]

    # --- decoding -------------------------------------------------------------------------------
    def set_prefix(self, prefix: list[int]) -> None:
        """Run the prompts' common leading tokens through the model once per learner: their K/V
        [P, kv_heads, len, d] for every chunk of `rows` to copy."""
        self.prefix = list(prefix)
        n = len(prefix)
        if not n:
            self.prefix_cache = []
            return
        P = self.P
        ids = torch.tensor([prefix], device=self.device).repeat(P, 1)
        pos = torch.arange(n, device=self.device)[None].repeat(P, 1)
        self.prefix_cache = self._new_cache(P, n)
        bias = self._causal(n, n, torch.ones((P, n), dtype=torch.bool, device=self.device))
        self.forward(ids, pos, self.prefix_cache, 0, bias, logits=False)

    def _causal(self, tq: int, T: int, valid: torch.Tensor) -> torch.Tensor:
        """[N, 1, 1, tq, T] additive mask: query i (column T - tq + i) sees the valid columns
        (valid [N, T]) up to its own."""
        dtype = self.fast.blocks[0].w_qkv.dtype
        see = torch.ones((tq, T), dtype=torch.bool, device=self.device).tril(T - tq)
        see = see[None] & valid[:, None, :]                               # [N, tq, T]
        bias = torch.zeros(see.shape, dtype=dtype, device=self.device)
        return bias.masked_fill_(~see, torch.finfo(dtype).min)[:, None, None]

    def rows(self, seqs: list[list[int]], max_new_tokens: int, stops: torch.Tensor
             ) -> list[list[int]]:
        """Greedy tokens (up to the first stop token, excluded) of every row p*k + j: learner p's
        continuation of prompt j (token ids, each starting with `set_prefix`'s tokens and longer
        than them)."""
        P, k, pre, dev = self.P, len(seqs), len(self.prefix), self.device
        S = max(len(q) for q in seqs) - pre
        suffix = torch.zeros((k, S), dtype=torch.long)
        valid = torch.zeros((k, pre + S + max_new_tokens), dtype=torch.bool)
        valid[:, :pre] = True
        valid[:, pre + S:] = True
        for j, q in enumerate(seqs):      # suffixes right-aligned: padding sits mid-sequence
            suffix[j, S - len(q) + pre:] = torch.tensor(q[pre:])
            valid[j, pre + S - len(q) + pre:pre + S] = True
        valid = valid.to(dev).repeat(P, 1)                                 # [R, T_max]
        pos = (valid[:, :pre + S].long().cumsum(1) - 1).clamp(min=0)[:, pre:]   # [R, S]
        cache = self._new_cache(P * k, pre + S + max_new_tokens)
        for (K, V), (Kp, Vp) in zip(cache, self.prefix_cache, strict=False):
            K.view(P, k, *K.shape[1:])[:, :, :, :pre] = Kp[:, None]
            V.view(P, k, *V.shape[1:])[:, :, :, :pre] = Vp[:, None]
        lg = self.forward(suffix.to(dev).repeat(P, 1), pos, cache, pre,
                          self._causal(S, pre + S, valid[:, :pre + S]))
        assert lg is not None
        dtype = cache[0][0].dtype
        bias = torch.zeros(valid.shape, dtype=dtype, device=dev).masked_fill_(
            ~valid, torch.finfo(dtype).min)                                # [R, T_max] additive
        rows = torch.arange(P * k, device=dev)   # the rows still in the batch (original indices)
        last = pos[:, -1]
        done = torch.zeros(P * k, dtype=torch.bool, device=dev)
        toks: list[list[int]] = [[] for _ in range(P * k)]
        col = pre + S
        for step in range(max_new_tokens):
            nxt = lg.argmax(-1)                                           # [R]
            ended = torch.isin(nxt, stops)
            for r, t in zip(rows[~done & ~ended].tolist(), nxt[~done & ~ended].tolist(), strict=True):
                toks[r].append(t)
            done |= ended
            if step == max_new_tokens - 1:
                break
            alive = ~done.view(P, -1).all(0)                              # [k'] items still running
            if not alive.any():
                break
            if not alive.all():                                           # drop finished items' rows
                keep = torch.arange(done.numel(), device=dev).view(P, -1)[:, alive].reshape(-1)
                n = keep.numel()
                for K, V in cache:
                    K[:n, :, :col] = K[keep, :, :col]
                    V[:n, :, :col] = V[keep, :, :col]
                cache = [(K[:n], V[:n]) for K, V in cache]
                rows, done, nxt, last, bias = rows[keep], done[keep], nxt[keep], last[keep], bias[keep]
            last = last + 1
            lg = self.forward(nxt[:, None], last[:, None], cache, col,
                              bias[:, None, None, None, :col + 1])
            assert lg is not None
            col += 1
        return toks


__all__ = ["FastGen"]
