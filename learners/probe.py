"""Exact-match probes of every learner on the same items.

Greedy decoding returns the answer exactly when, teacher-forced on `prompt + answer + eos`, every
answer token and the eos token is the argmax. So a probe is one batched forward pass over
(learner, item) — the items repeated once per learner block `[P*n, T]` — not a sampling loop. The
`generate()` path is kept to prove the two give the same verdicts.

Every probe also returns the model's confidence in its *own* answer (DESIGN.md, self-confidence):
`self_prob`, the probability of its greedy answer, and `self_margin`, the first answer token's
margin (top logit minus the runner-up). The probability of the true answer cannot exceed accuracy
when the model is wrong; this one can, which is what the confidence gap measures.

Items without a single exact answer (key-term judged question sets) need the text itself:
`generate_greedy` returns every learner's greedy continuation of every prompt, from one batched
`generate()` per chunk (left padding, KV cache), for a judge to read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from learners.arch import lm_logits
from learners.encoding import (
    as_codec,
    encode_pairs,
    predicting,
    stop_ids,
    verdicts_at,
)

Pair = tuple[str, str]


@dataclass
class ProbeResult:
    """Per (learner, item) verdicts, all `[P, N]` numpy arrays.

    correct: greedy decoding reproduces the answer exactly (then eos).
    prob:    probability of the whole answer incl. eos, teacher-forced.
    margin:  min over answer tokens (and eos) of logit(target) - max other logit (>0 iff correct).
    self_prob:   probability of the model's own greedy answer (incl. its eos): the product of the
                 top softmax probability at each answer position. Equal to `prob` where correct.
                 Teacher-forced it is exact up to and including the first position where the
                 greedy answer leaves the true one (so for every item whose greedy answer is right
                 or wrong only in its last token); later positions are read on the true prefix.
                 `probe_generate` gives it exactly, along the generated path.
    self_margin: first answer token's top logit minus the runner-up (>= 0; the greedy answer's
                 first-token margin, exact in both probes).
    """

    correct: np.ndarray
    prob: np.ndarray
    margin: np.ndarray
    self_prob: np.ndarray
    self_margin: np.ndarray


def self_verdicts(lg: torch.Tensor, sel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(self_prob, self_margin), each [R], from the logits lg [K, V] at the K positions sel [R, L]
    marks (row-major, as `verdicts_at` takes them): see `ProbeResult`."""
    R = sel.shape[0]
    row = torch.arange(R, device=lg.device)[:, None].expand_as(sel)[sel]   # [K] owner row
    top = lg.topk(min(2, lg.shape[1]), dim=1).values                        # [K, 2]
    logp = top[:, 0] - torch.logsumexp(lg, 1)
    self_prob = torch.zeros(R, device=lg.device).index_add(0, row, logp).exp()
    first = torch.ones_like(row, dtype=torch.bool)
    first[1:] = row[1:] != row[:-1]                                         # each row's first
    gap = top[:, 0] - top[:, -1] if top.shape[1] > 1 else torch.zeros_like(top[:, 0])
    self_margin = torch.zeros(R, device=lg.device).index_copy(0, row[first], gap[first])
    return self_prob, self_margin


# Rows (learner x item) a chunk holds at least where the logits are not [rows, T, V]: the fused
# probe's logits are only at the scored positions, and generate() keeps one [rows, V] step. With a
# real vocabulary (SmolLM2: 49,152) the float budget alone allowed ONE item per chunk, and each
# decoding step of a chunk reads every weight of the model (540 MB for SmolLM2) for P rows.
MIN_ROWS_SCORED, MIN_ROWS_GENERATE = 64, 128


def _chunk(P: int, T: int, V: int, budget: int, min_rows: int = 0) -> int:
    """Items per chunk so that the P*n*T*V logits stay under `budget` floats, and at least
    `min_rows` rows (P*n) where the caller keeps far fewer logits than that."""
    return max(1, -(-min_rows // P), budget // max(1, P * T * V))


@torch.no_grad()
def probe_teacher_forced(model: Any, tokenizer: object, P: int, pairs: Sequence[Pair],
                         budget: int, device: torch.device,
                         hidden: Callable[..., torch.Tensor] | None = None) -> ProbeResult:
    """Verdicts [P, N] from one teacher-forced forward pass per chunk of items (see module doc).

    `hidden(ids, mask, sel, P)`: a forward returning the final hidden states at the positions sel
    marks only (the population's fused forward, learners/fastpath.py); then only those positions
    go through the LM head. None: the model's own forward, logits at every position."""
    N = len(pairs)
    out = [np.zeros((P, N), dtype=bool)] + [np.zeros((P, N)) for _ in range(4)]
    if N == 0:
        return ProbeResult(*out)
    was_training = model.training
    model.eval()
    V = model.get_output_embeddings().weight.shape[0]
    T = encode_pairs(tokenizer, pairs).input_ids.shape[1]
    n = _chunk(P, T, V, budget, MIN_ROWS_SCORED if hidden is not None else 0)
    for lo in range(0, N, n):
        enc = encode_pairs(tokenizer, pairs[lo:lo + n])   # padded to this chunk's longest item
        k = enc.input_ids.shape[0]
        ids = enc.input_ids.to(device).repeat(P, 1)        # [P*k, T], learner-major
        mask = enc.attention_mask.to(device).repeat(P, 1)
        sel, target = predicting(enc.labels.to(device).repeat(P, 1))  # [P*k, L]
        L = sel.shape[1]
        if hidden is not None:
            h = hidden(ids[:, :L], mask[:, :L], sel, P)     # [K, H]
            lg = lm_logits(model, h)   # [K, V] only the scored positions
        else:
            logits = model(input_ids=ids, attention_mask=mask).logits  # [P*k, T, V]
            lg = logits[:, :L][sel].float()
        verdicts = (*verdicts_at(lg, target, sel), *self_verdicts(lg, sel))   # each [P*k]
        for dst, src in zip(out, verdicts, strict=True):
            dst[:, lo:lo + k] = src.reshape(P, k).cpu().numpy()
    model.train(was_training)
    return ProbeResult(*out)


@torch.no_grad()
def probe_generate(model: Any, tokenizer: object, P: int, pairs: Sequence[Pair],
                   budget: int, device: torch.device) -> ProbeResult:
    """Verdicts [P, N] from greedy `generate()` on left-padded prompts with a KV cache.

    prob and margin come from the generation scores where the verdict is correct (the generated
    path is then the teacher-forced one) and are NaN where it is not. self_prob is the probability
    of the generated path up to and including its eos (or its last token, the answer's length
    being the budget); self_margin is the first generated token's top-two logit gap.
    """
    N = len(pairs)
    correct, prob, margin = np.zeros((P, N), dtype=bool), np.full((P, N), np.nan), np.full((P, N), np.nan)
    self_prob, self_margin = np.zeros((P, N)), np.zeros((P, N))
    if N == 0:
        return ProbeResult(correct, prob, margin, self_prob, self_margin)
    was_training = model.training
    model.eval()
    pad = getattr(tokenizer, "pad_token_id", None) or 0
    stops = stop_ids(tokenizer)
    V = model.get_output_embeddings().weight.shape[0]
    enc_all = encode_pairs(tokenizer, pairs)
    n = _chunk(P, enc_all.input_ids.shape[1], V, budget)
    for lo in range(0, N, n):
        enc = encode_pairs(tokenizer, pairs[lo:lo + n])
        start, length = enc.answer_start.tolist(), enc.answer_len.tolist()
        k = len(start)
        prompts, pmask = _left_pad(enc.input_ids, start, pad)
        L = prompts.shape[1]
        gen = model.generate(
            input_ids=prompts.to(device).repeat(P, 1), attention_mask=pmask.to(device).repeat(P, 1),
            max_new_tokens=max(length), do_sample=False, num_beams=1, pad_token_id=pad,
            eos_token_id=stops, output_scores=True, return_dict_in_generate=True)
        new = gen.sequences[:, L:].cpu()                   # [P*k, <= max(length)]
        scores = torch.stack(gen.scores, 1).float().cpu()  # [P*k, steps, V]
        top = scores.topk(min(2, V), dim=2).values         # [P*k, steps, 2]
        top_logp = top[..., 0] - torch.logsumexp(scores, 2)  # [P*k, steps]
        for p in range(P):
            for j in range(k):
                row = p * k + j
                toks = new[row].tolist()
                end = next((t + 1 for t, tok in enumerate(toks) if tok in stops), len(toks))
                self_prob[p, lo + j] = float(top_logp[row, :end].sum().exp())
                self_margin[p, lo + j] = float(top[row, 0, 0] - top[row, 0, -1])
                target = enc.input_ids[j, start[j]:start[j] + length[j]]
                got = new[row, :length[j]]
                if got.shape[0] == length[j] and torch.equal(got, target):
                    correct[p, lo + j] = True
                    s = scores[row, :length[j]]            # [len, V]
                    tl = s.gather(1, target[:, None])[:, 0]
                    prob[p, lo + j] = float(torch.log_softmax(s, 1).gather(
                        1, target[:, None]).sum().exp())
                    other = s.scatter(1, target[:, None], float("-inf")).max(1).values
                    margin[p, lo + j] = float((tl - other).min())
    model.train(was_training)
    return ProbeResult(correct, prob, margin, self_prob, self_margin)


def _left_pad(ids: torch.Tensor, start: Sequence[int], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt part `ids[j, :start[j]]` of each row, left-padded: (ids, mask), each [k, max(start)]."""
    k, L = len(start), max(start)
    prompts = torch.full((k, L), pad, dtype=torch.long)
    mask = torch.zeros((k, L), dtype=torch.long)
    for j, s in enumerate(start):
        prompts[j, L - s:] = ids[j, :s]
        mask[j, L - s:] = 1
    return prompts, mask


def _decoder(tokenizer: object) -> Callable[[list[int]], str]:
    """ids -> text without special tokens: the char codec's dict lookup, else the tokenizer's."""
    codec = as_codec(tokenizer)
    decode = getattr(codec, "decode", None)
    if decode is not None:
        return decode  # type: ignore[no-any-return]
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)  # type: ignore[attr-defined]


def _to_eval(model: Any, max_new_tokens: int) -> bool:
    """Check the token budget, put `model` in eval mode and return whether it was training."""
    if max_new_tokens < 1:
        raise ValueError(f"generate_greedy max_new_tokens = {max_new_tokens}; pass at least 1")
    was_training = bool(model.training)
    model.eval()
    return was_training


@torch.no_grad()
def generate_greedy(model: Any, tokenizer: object, P: int, prompts: Sequence[str],
                    max_new_tokens: int, budget: int, device: torch.device,
                    stops: Sequence[int] | None = None, fast: Any = None) -> list[list[str]]:
    """Every learner's greedy continuation of every prompt: texts[p][i], cut at the end-of-turn
    token or eos (`stops`: other token ids instead) or after `max_new_tokens` tokens, decoded
    without special tokens.

    The prompts as training sees them (`<bos> prompt`, or the chat template's rendering with its
    generation prompt), in chunks of items of like length (`_chunk`: at least MIN_ROWS_GENERATE
    learner x item rows), all P learners' rows `[P*k]` learner-major in one forward per decoding
    step, with a KV cache. Two savings over `generate()` (`generate_greedy_hf`), same greedy decoding:
    - the prompts' common leading tokens (a chat template's system turn, about half of SmolLM2's
      prompt) go through the model once per learner, and their cache is shared by its rows;
    - an item leaves the batch (its cache rows dropped) once every learner's answer to it has
      ended, instead of all rows running until the slowest one ends.
    `fast`: the population's `FastLlama` (`Population.fast`, a Llama-shaped base): the same loop
    on the fused forward (learners/fastgen.py: in-place K/V cache, grouped-query attention
    without copies, the prefix once per learner for the whole call); None: `model`'s forward.
    """
    N = len(prompts)
    texts: list[list[str]] = [[""] * N for _ in range(P)]
    if N == 0:
        return texts
    was_training = _to_eval(model, max_new_tokens)
    ends = torch.tensor(list(stops or stop_ids(tokenizer)), device=device)
    decode = _decoder(tokenizer)
    V = model.get_output_embeddings().weight.shape[0]
    enc = encode_pairs(tokenizer, [(prompt, "") for prompt in prompts])  # answer_start = prompt end
    seqs = [enc.input_ids[j, :s].tolist() for j, s in enumerate(enc.answer_start.tolist())]
    n = _chunk(P, enc.input_ids.shape[1] + max_new_tokens, V, budget, MIN_ROWS_GENERATE)
    order = sorted(range(N), key=lambda j: len(seqs[j]))    # chunks of like lengths: little padding
    if fast is not None:         # one running batch of at most n items, refilled as items end
        from learners.fastgen import FastGen

        gen = FastGen(fast, model, P, device)
        gen.set_prefix(seqs[0][:_common_prefix(seqs)])
        out = gen.generate([seqs[j] for j in order], n, max_new_tokens, ends)
        for p in range(P):
            for i, j in enumerate(order):
                texts[p][j] = decode(out[p][i])
    else:
        for lo in range(0, N, n):
            chunk = order[lo:lo + n]
            for row, toks in enumerate(_greedy_rows(model, P, [seqs[j] for j in chunk],
                                                    max_new_tokens, ends, device)):
                texts[row // len(chunk)][chunk[row % len(chunk)]] = decode(toks)
    model.train(was_training)
    return texts


def _common_prefix(seqs: list[list[int]]) -> int:
    """The length of the prompts' common leading tokens, each prompt keeping at least one more."""
    pre = 0
    while pre < min(map(len, seqs)) - 1 and all(q[pre] == seqs[0][pre] for q in seqs):
        pre += 1
    return pre


def _greedy_rows(model: Any, P: int, seqs: list[list[int]], max_new_tokens: int,
                 stops: torch.Tensor, device: torch.device) -> list[list[int]]:
    """Greedy tokens (up to the first stop token, excluded) of every row p*k + j: learner p's
    continuation of prompt j (token ids). See `generate_greedy`."""
    from transformers import DynamicCache

    k = len(seqs)
    pre = _common_prefix(seqs)                # computed once per learner, its cache shared
    S = max(len(q) for q in seqs) - pre
    suffix = torch.zeros((k, S), dtype=torch.long)
    smask = torch.zeros((k, S), dtype=torch.long)
    for j, q in enumerate(seqs):              # suffixes right-aligned: padding sits mid-sequence
        suffix[j, S - len(q) + pre:] = torch.tensor(q[pre:])
        smask[j, S - len(q) + pre:] = 1
    cache = DynamicCache()
    kw = _step_kwargs(model, cache)
    if pre:                                   # the prefix once per learner: [P, pre] rows
        model(input_ids=torch.tensor([seqs[0][:pre]], device=device).repeat(P, 1), **kw)
        cache.batch_repeat_interleave(k)      # row p*k + j gets learner p's prefix
    mask = torch.cat([torch.ones((k, pre), dtype=torch.long), smask], 1).to(device).repeat(P, 1)
    pos = (mask.cumsum(1) - 1).clamp(min=0)[:, pre:]       # [P*k, S]; padding: any position
    out = model(input_ids=suffix.to(device).repeat(P, 1), attention_mask=mask, position_ids=pos,
                **kw)
    rows = torch.arange(P * k, device=device)  # the rows still in the batch (original indices)
    last = pos[:, -1]
    done = torch.zeros(P * k, dtype=torch.bool, device=device)
    toks: list[list[int]] = [[] for _ in range(P * k)]
    for step in range(max_new_tokens):
        nxt = out.logits[:, -1].argmax(-1)                  # [R]
        ended = torch.isin(nxt, stops)
        for r, t in zip(rows[~done & ~ended].tolist(), nxt[~done & ~ended].tolist(), strict=True):
            toks[r].append(t)
        done |= ended
        if step == max_new_tokens - 1:
            break
        alive = ~done.view(P, -1).all(0)                    # [k'] items some learner continues
        if not alive.any():
            break
        if not alive.all():                                 # drop finished items' rows
            keep = torch.arange(done.numel(), device=device).view(P, -1)[:, alive].reshape(-1)
            cache.batch_select_indices(keep)
            rows, done, nxt, mask, last = rows[keep], done[keep], nxt[keep], mask[keep], last[keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], 1)
        last = last + 1
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=last[:, None], **kw)
    return toks


def _step_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """The forward's cache argument (`cache`, `past_key_values` before transformers 5.2x) and
    `logits_to_keep=1` where it takes it (the last position's logits only: [R, 1, V], not
    [R, T, V] at a real vocabulary)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    kw: dict[str, Any] = {"cache" if "cache" in params else "past_key_values": cache,
                          "use_cache": True}
    if "logits_to_keep" in params:
        kw["logits_to_keep"] = 1
    return kw


@torch.no_grad()
def generate_greedy_hf(model: Any, tokenizer: object, P: int, prompts: Sequence[str],
                       max_new_tokens: int, budget: int, device: torch.device,
                       stops: Sequence[int] | None = None) -> list[list[str]]:
    """`generate_greedy`'s texts from transformers' `generate()` (slower; kept to check it).

    The prompts (as training sees them: `<bos> prompt`, or the chat template's rendering with its
    generation prompt) are left-padded and repeated once per learner block, `[P*k, L]`
    learner-major, so one `generate()` with a KV cache serves all P learners; chunks of k prompts
    keep the `[P*k, L + max_new_tokens, V]` size under `budget` floats. A continuation stops at the
    end-of-turn token or eos, or after `max_new_tokens` tokens.
    """
    N = len(prompts)
    texts: list[list[str]] = [[""] * N for _ in range(P)]
    if N == 0:
        return texts
    was_training = _to_eval(model, max_new_tokens)
    pad = getattr(tokenizer, "pad_token_id", None) or 0
    stops = list(stops or stop_ids(tokenizer))
    decode = _decoder(tokenizer)
    V = model.get_output_embeddings().weight.shape[0]
    pairs = [(prompt, "") for prompt in prompts]   # answer_start = the prompt's end
    enc = encode_pairs(tokenizer, pairs)   # encoded once; each chunk left-pads its own rows
    starts = enc.answer_start.tolist()
    n = _chunk(P, enc.input_ids.shape[1] + max_new_tokens, V, budget, MIN_ROWS_GENERATE)
    for lo in range(0, N, n):
        k = len(starts[lo:lo + n])
        ids, mask = _left_pad(enc.input_ids[lo:lo + n], starts[lo:lo + n], pad)
        gen = model.generate(
            input_ids=ids.to(device).repeat(P, 1), attention_mask=mask.to(device).repeat(P, 1),
            max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=pad,
            eos_token_id=stops)
        new = gen[:, ids.shape[1]:].cpu().tolist()          # [P*k, <= max_new_tokens]
        for row, toks in enumerate(new):
            cut = next((t for t, tok in enumerate(toks) if tok in stops), len(toks))
            texts[row // k][lo + row % k] = decode(toks[:cut])
    model.train(was_training)
    return texts
