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
  for the whole call, not once per chunk, its K/V copied into every item's cache rows;
- one running batch instead of chunks decoded one after the other: new prompts join it (their
  prompt pass, then the same decoding steps) as soon as a quarter of its places are free, so
  decoding does not end each chunk with a few rows for many steps. The cache is item-major
  ([items, P, ...]: an item's rows move together when it leaves) with a column per item;
- a per-row exit: a learner's row whose answer has ended leaves the decoding steps' base GEMMs
  (q/k/v, o_proj, MLP, LM head) while the item's other learners go on; only the q/k/v LoRA
  bmm, which needs equal rows per learner, and the attention still see every row (when adapters
  sit on o_proj or the MLP, every row stays, as before);
- in the prompt pass, the last block's queries, o_proj, MLP, final norm and LM head on the last
  position only (the only one whose logits are read);
- the MLP (without adapters) in chunks of 512 rows, gate and up in GEMMs of 768 columns (on one
  Zen 4 core [512, 576] x [576, 768] ran at 95-97 GFLOP/s, x [576, 3072] at 88), without keeping
  the intermediates a backward would need;
- the LM head in pieces of 2,048 token ids, the argmax kept piece by piece (the logits never
  written out whole; 75 against 58 GFLOP/s at 64 rows);
- every block's q/v LoRA factors (`FastLlama.qv_factors`) prepared once per call, and the per-row
  exit's zero buffers once per decoding step;
- RoPE in three passes, bit for bit transformers' rotation.
Each output element stays the same dot product (a column piece of a GEMM does not change it).

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
from learners.fastpath import FastLlama, _Block, _mm, additive_mask

Cache = list[tuple[torch.Tensor, torch.Tensor]]   # per block: K, V [items, P, kv_heads, T_max, d]
MLP_ROWS = 512   # rows per chunk of the MLP
MLP_COLS = 768   # gate/up columns per GEMM: [512, 576] x [576, 768] ran at 95 GFLOP/s, x 3072 at 88
VOCAB_COLS = 2048   # LM head columns per GEMM (argmax taken chunk by chunk): 75 GFLOP/s vs 58 at 64 rows


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [N, t, heads, d] rotated by per-row angles cos, sin [N, t, d]: transformers'
    `q * cos + rotate_half(q) * sin`, element for element (each product rounded, then the sum),
    in three passes instead of six (no negated copy, no concatenation)."""
    half = x.shape[-1] // 2
    c, s = cos[:, :, None], sin[:, :, None]
    out = x * c                  # then + (-x2) * s on the first half (the same as - x2 * s)
    out[..., :half].sub_(x[..., half:] * s[..., :half])
    out[..., half:].add_(x[..., :half] * s[..., half:])
    return out


class FastGen:
    """Greedy decoding of P learners' rows on a `FastLlama` (see the module doc)."""

    def __init__(self, fast: FastLlama, model: Any, P: int, device: torch.device) -> None:
        self.fast, self.model, self.P, self.device = fast, model, P, device
        self.group = fast.heads // fast.kv_heads
        self.prefix: list[int] = []
        self.prefix_cache: Cache = []
        # per-row exit: a decoding step runs the base on the rows whose answer has not ended;
        # the LoRA of the o_proj and MLP modules (a bmm over equal rows per learner) forbids it
        self.row_exit = all(set(b.lora) <= {"q_proj", "k_proj", "v_proj"} for b in fast.blocks)
        with torch.no_grad():   # each block's q/v LoRA factors, once for the call (not per step)
            self.factors = [fast.qv_factors(b) if {"q_proj", "v_proj"} <= set(b.lora) else None
                            for b in fast.blocks]

    # --- pieces ---------------------------------------------------------------------------------
    def _mlp(self, b: _Block, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """residual + down(silu(gate(x)) * up(x)) for x [M, H] in row chunks, gate and up in
        column pieces of MLP_COLS (narrow GEMMs run faster here than one [H, 2I]; each output
        element is the same dot product), nothing kept for a backward. Adapters on the MLP: the
        fast path's module route."""
        if any(k in b.lora for k in ("gate_proj", "up_proj", "down_proj")):
            return self.fast._mlp(b, x, residual)
        wd = b.down_proj.weight
        assert isinstance(wd, torch.Tensor)
        inter = b.w_gu.shape[0] // 2
        out = torch.empty_like(residual)
        y = x.new_empty(min(MLP_ROWS, x.shape[0]), inter)                # silu(gate) * up
        for a in range(0, x.shape[0], MLP_ROWS):
            xa = x[a:a + MLP_ROWS]
            ya = y[:xa.shape[0]]
            for c in range(0, inter, MLP_COLS):
                e = min(c + MLP_COLS, inter)
                gate = nn.functional.silu(xa @ b.w_gu[c:e].t(), inplace=True)
                torch.mul(gate, xa @ b.w_gu[inter + c:inter + e].t(), out=ya[:, c:e])
            torch.addmm(residual[a:a + MLP_ROWS], ya, wd.t(), out=out[a:a + MLP_ROWS])
        return out

    def _greedy(self, h: torch.Tensor) -> torch.Tensor:
        """The greedy next token [N] of final-normed h [N, H]: the LM head in pieces of VOCAB_COLS
        token ids, the argmax kept piece by piece (the first of equal maxima, as argmax)."""
        V = self.model.get_output_embeddings().weight.shape[0]
        best = torch.full((h.shape[0],), -torch.inf, device=h.device)
        arg = torch.zeros(h.shape[0], dtype=torch.long, device=h.device)
        for a in range(0, V, VOCAB_COLS):
            lg = lm_logits(self.model, h, slice(a, a + VOCAB_COLS))      # [N, cols]
            i = lg.argmax(-1)
            v = lg.gather(1, i[:, None])[:, 0]
            win = v > best
            best, arg = torch.where(win, v, best), torch.where(win, i + a, arg)
        return arg

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor
                ) -> torch.Tensor:
        """q [P*k, tq, heads, d] (rotated, learner-major rows) against the cache's k, v [k, P,
        kv_heads, T, d] (item-major, unrepeated), bias [k, 1, 1, 1, tq, T] additive -> [P*k*tq,
        heads*d] learner-major."""
        n, P, hk, T, d = k.shape
        tq, h, g = q.shape[1], q.shape[2], self.group
        qg = q.view(P, n, tq, hk, g, d).permute(1, 0, 3, 4, 2, 5).reshape(n * P, hk, g * tq, d)
        s = torch.matmul(qg, k.view(n * P, hk, T, d).transpose(2, 3)).mul_(self.fast.scaling)
        s = s.view(n, P, hk, g, tq, T).add_(bias)
        p = torch.softmax(s, dim=-1, dtype=torch.float32).to(q.dtype)   # as eager attention
        o = torch.matmul(p.view(n * P, hk, g * tq, T), v.view(n * P, hk, T, d))
        return o.view(n, P, hk, g, tq, d).permute(1, 0, 4, 2, 3, 5).reshape(P * n * tq, h * d)

    def forward(self, ids: torch.Tensor, pos: torch.Tensor, cache: Cache, cols: int | torch.Tensor,
                T: int, bias: torch.Tensor, logits: bool = True, act: torch.Tensor | None = None
                ) -> torch.Tensor | None:
        """ids, pos [P*k, tq] (learner-major rows) -> the greedy next token [P*k] of each row's
        last position (None with logits False). Their K/V are written into `cache` (per block K, V
        [k, P, kv_heads, T_max, d], item-major) at the columns cols..cols+tq-1 (an int), or at
        column cols[j] for item j (a [k] tensor, tq = 1); attention reads the first T columns
        under bias [k, 1, 1, 1, tq, T] (additive). `act` (tq = 1, `self.row_exit`): the rows
        still decoding, [A] indices into the P*k; the base's GEMMs run on them alone and the
        tokens are theirs, [A] (see `_qkv_rows`)."""
        f = self.fast
        N, tq = ids.shape
        n, d = N // self.P, f.head_dim
        h = f.embed(ids if act is None else ids.view(-1)[act]).view(-1, f.embed.weight.shape[1])
        cos, sin = f.rotary(h, pos)                                       # [N, tq, d]
        last = len(f.blocks) - 1
        if act is not None:   # all rows' inputs and base q/k/v, zero where not in act (see _qkv_rows)
            xs = h.new_zeros(N, h.shape[1])
            full = h.new_zeros(N, f.blocks[0].w_qkv.shape[0])
        for i, b in enumerate(f.blocks):
            t0 = tq - 1 if i == last and logits else 0    # the last block: the last position only
            if act is not None:
                q, k, v = self._qkv_rows(i, f._norm(b.ln1, h), act, xs, full)
            else:
                x, qkv = f._first_block_inputs(b, ids) if i == 0 else (f._norm(b.ln1, h), None)
                q, k, v = f._qkv(b, x, self.P, qkv, N, t0, factors=self.factors[i])  # q [N, tq-t0, hq]
            K, V = cache[i]
            k = _rope(k.view(N, tq, -1, d), cos, sin).view(self.P, n, tq, -1, d).permute(1, 0, 3, 2, 4)
            v = v.view(self.P, n, tq, -1, d).permute(1, 0, 3, 2, 4)       # [n, P, hk, tq, d]
            if isinstance(cols, int):
                K[:, :, :, cols:cols + tq], V[:, :, :, cols:cols + tq] = k, v
            else:
                item = torch.arange(n, device=cols.device)
                K[item, :, :, cols], V[item, :, :, cols] = k[:, :, :, 0], v[:, :, :, 0]
            att = self._attend(_rope(q.view(N, tq - t0, -1, d), cos[:, t0:], sin[:, t0:]),
                               K[:, :, :, :T], V[:, :, :, :T], bias[..., t0:, :])
            if t0:
                h = h.view(N, tq, -1)[:, t0:].reshape(N, -1)
            h = f._linear(b.o_proj, att if act is None else att[act], h)
            h = self._mlp(b, f._norm(b.ln2, h), h)
        if not logits:
            return None
        return self._greedy(f._norm(f.norm, h))                           # h [N, H] -> [N]

    def _qkv_rows(self, i: int, x: torch.Tensor, act: torch.Tensor, xs: torch.Tensor,
                  full: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Block i's q [N, 1, hq], k, v [N, hk] of all N rows from the normed x [A, H] of the
        active rows `act` alone: the base's q/k/v GEMM on those A rows, scattered into `full`
        [N, hq + 2hk]; every learner's LoRA (a bmm that needs equal rows per learner, and costs
        little at rank r) then on x scattered into `xs` [N, H], through the fast path's own q/k/v
        code. xs and full are zeros outside `act` (one pair per decoding step: every block writes
        the same rows). The rows not in `act` get their LoRA part only: their attention output
        is dropped."""
        b = self.fast.blocks[i]
        full[act], xs[act] = _mm(x, b.w_qkv, b.b_qkv), x
        return self.fast._qkv(b, xs, self.P, full, xs.shape[0], factors=self.factors[i])

    def _new_cache(self, items: int, columns: int) -> Cache:
        """Zeros: a column an item does not see is masked to a zero weight, which must not meet
        a NaN or an infinity in memory never written (0 * inf is NaN)."""
        f = self.fast
        shape = (items, self.P, f.kv_heads, columns, f.head_dim)
        dtype = f.blocks[0].w_qkv.dtype
        return [(torch.zeros(shape, dtype=dtype, device=self.device),
                 torch.zeros(shape, dtype=dtype, device=self.device)) for _ in f.blocks]

    def _additive(self, see: torch.Tensor) -> torch.Tensor:
        """0 where `see`, the dtype's min elsewhere (eager attention's mask)."""
        return additive_mask(see, self.fast.blocks[0].w_qkv.dtype)

    # --- decoding -------------------------------------------------------------------------------
    def set_prefix(self, prefix: list[int]) -> None:
        """Run the prompts' common leading tokens through the model once per learner: their K/V
        [1, P, kv_heads, len, d] per block, copied into every item's cache rows."""
        self.prefix = list(prefix)
        n, P = len(prefix), self.P
        self.prefix_cache = []
        if n:
            ids = torch.tensor([prefix], device=self.device).repeat(P, 1)
            pos = torch.arange(n, device=self.device)[None].repeat(P, 1)
            self.prefix_cache = self._new_cache(1, n)
            causal = torch.ones((n, n), dtype=torch.bool, device=self.device).tril()
            self.forward(ids, pos, self.prefix_cache, 0, n, self._additive(causal), logits=False)

    def generate(self, seqs: list[list[int]], items: int, max_new_tokens: int,
                 stops: torch.Tensor) -> list[list[list[int]]]:
        """Greedy tokens (up to the first stop token, excluded) of every learner p's continuation
        of every prompt j: toks[p][j]. The prompts (token ids, each starting with `set_prefix`'s
        tokens and longer than them) are taken in order, at most `items` in the batch at once:
        an item leaves once every learner's answer to it has ended, and the next prompts join the
        running batch (their prompt pass, then the same decoding steps) as soon as a quarter of
        the places are free, so the batch stays full until the prompts run out."""
        P, pre, dev, N = self.P, len(self.prefix), self.device, len(seqs)
        width = max(len(q) for q in seqs) + max_new_tokens                # columns an item needs
        cache = self._new_cache(items, width)
        for (K, V), (Kp, Vp) in zip(cache, self.prefix_cache, strict=False):
            K[:, :, :, :pre], V[:, :, :, :pre] = Kp, Vp                   # the shared prefix
        see = torch.zeros((items, width), dtype=torch.bool, device=dev)   # columns each item sees
        slot_item = torch.zeros(items, dtype=torch.long)                  # prompt index per slot
        col = torch.zeros(items, dtype=torch.long, device=dev)            # next column per slot
        last = torch.zeros(items, dtype=torch.long, device=dev)           # last position per slot
        steps = torch.zeros(items, dtype=torch.long)                      # tokens taken per slot
        done = torch.zeros((P, items), dtype=torch.bool, device=dev)
        nxt = torch.zeros((P, items), dtype=torch.long, device=dev)
        toks: list[list[list[int]]] = [[[] for _ in range(N)] for _ in range(P)]
        n, queued = 0, 0                                                  # slots in use, prompts begun
        while n or queued < N:
            room = items - n
            if queued < N and room >= max(1, items // 4):               # prompts join the batch
                new = seqs[queued:queued + room]
                k, S = len(new), max(len(q) for q in new) - pre
                suffix = torch.zeros((k, S), dtype=torch.long)
                sv = torch.zeros((k, pre + S), dtype=torch.bool)
                sv[:, :pre] = True
                for j, q in enumerate(new):   # suffixes right-aligned: padding sits mid-sequence
                    suffix[j, S - len(q) + pre:] = torch.tensor(q[pre:])
                    sv[j, 2 * pre + S - len(q):] = True
                sv = sv.to(dev)
                pos = (sv.long().cumsum(1) - 1).clamp(min=0)[:, pre:]    # [k, S]
                causal = torch.ones((S, pre + S), dtype=torch.bool, device=dev).tril(pre)
                bias = self._additive(causal[None] & sv[:, None])[:, None, None, None]
                nt = self.forward(suffix.to(dev).repeat(P, 1), pos.repeat(P, 1),
                                  [(K[n:n + k], V[n:n + k]) for K, V in cache], pre, pre + S, bias)
                assert nt is not None
                z = slice(n, n + k)
                see[z] = False
                see[z, :pre + S] = sv
                slot_item[z] = torch.arange(queued, queued + k)
                col[z], last[z], steps[z] = pre + S, pos[:, -1], 0
                done[:, z], nxt[:, z] = False, nt.view(P, k)
                n, queued = n + k, queued + k
            ended = torch.isin(nxt[:, :n], stops)
            take = (~done[:, :n] & ~ended).cpu()
            for p, j in take.nonzero().tolist():
                toks[p][int(slot_item[j])].append(int(nxt[p, j]))
            steps[:n] += 1
            done[:, :n] |= ended
            finished = done[:, :n].all(0).cpu() | (steps[:n] >= max_new_tokens)
            if finished.any():                # the last slots' items move into the freed ones
                keep = int((~finished).sum())
                holes = finished[:keep].nonzero()[:, 0]
                movers = (~finished[keep:]).nonzero()[:, 0] + keep
                if len(holes):
                    hd, md = holes.to(dev), movers.to(dev)
                    hi = int(col[md].max())
                    for K, V in cache:
                        K[hd, :, :, :hi], V[hd, :, :, :hi] = K[md, :, :, :hi], V[md, :, :, :hi]
                    for t in (see, col, last):
                        t[hd] = t[md]
                    for t in (slot_item, steps):
                        t[holes] = t[movers]
                    done[:, hd], nxt[:, hd] = done[:, md], nxt[:, md]
                n = keep
                if not n:
                    continue
            see[torch.arange(n, device=dev), col[:n]] = True
            last[:n] += 1
            T = int(col[:n].max()) + 1
            act = (~done[:, :n]).reshape(-1).nonzero()[:, 0] if self.row_exit else None
            nt = self.forward(nxt[:, :n].reshape(-1, 1), last[:n].repeat(P)[:, None],
                              [(K[:n], V[:n]) for K, V in cache], col[:n], T,
                              self._additive(see[:n, :T])[:, None, None, None, None], act=act)
            assert nt is not None
            if act is None:
                nxt[:, :n] = nt.view(P, n)
            else:                        # the ended rows keep their (unread) last token
                step = nxt[:, :n].reshape(-1)
                step[act] = nt
                nxt[:, :n] = step.view(P, n)
            col[:n] += 1
        return toks


__all__ = ["FastGen"]
