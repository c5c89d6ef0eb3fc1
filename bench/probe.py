"""Probe throughput: the population's teacher-forced probe against greedy generate() with PEFT.

    python bench/probe.py [--quick] [--json] [--P 8] [--items 256] [--key-terms]

P learners (trained a few steps so the adapters matter) probe the same N items. Side by side: (1)
`Population.probe`, one teacher-forced pass per chunk for all learners; (2) the strongest way to
get the same verdicts without it: one PEFT model holding every learner as an adapter, and per
learner (`set_adapter`) batched greedy `generate()` (left padding, KV cache) over all N items;
(3) one item at a time `generate()` (timed on a subset, reported per item). Prints items/s
(learner x item verdicts per second) for each, `speedup` over (2) and (3), the same per
CPU-second, and `identical` (every verdict of (1) equals (2)'s).

`--key-terms` (a real base, `--base smollm2`): the items are trivia questions asked as their priors
were recorded (`curricula.families.trivia`: question + INSTRUCTION, PRIOR_TOKENS new tokens), half
that SmolLM2 answered right and half wrong, judged by key terms in the greedy answer as `evolve
run` judges them. (1) is then `learners.probe.generate_greedy` (every learner's continuation from
one decoding loop over all learners: shared prompt prefix, finished items dropped; on the
population's fused forward, learners/fastgen.py, where the base is Llama-shaped),
beside the same population through transformers' `generate()` (`generate_greedy_hf`), and (2)
per learner PEFT batched `generate()` over all N prompts, each stopped at the end of turn or eos;
`identical` compares the verdicts and `same_text` the share of identical answers (of the
learners PEFT ran). `--peft-learners K` times (2) on the first K learners only: each
learner's `generate()` is its own work over the same prompts, so its rate per learner-item
does not depend on P, and P = 32 costs what P = K does on that side; `--skip-transformers`
leaves the population's `generate()` out.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from _common import (
    CORES,
    add_base_args,
    addition_pairs,
    bench_base,
    emit,
    load,
    max_rss_mib,
    peft_adapters,
    tmpdir,
)


@torch.no_grad()
def generate_verdicts(pm: Any, tok: Any, pairs: list[tuple[str, str]]) -> torch.Tensor:
    """[N] bool: greedy generate() (left-padded batch, KV cache) returns answer + eos exactly."""
    from learners.encoding import as_codec, encode_pairs

    codec = as_codec(tok)
    enc = encode_pairs(codec, pairs)
    start, length = enc.answer_start, enc.answer_len
    L = int(start.max())
    pad = codec.pad_token_id or 0
    prompts = torch.full((len(pairs), L), pad, dtype=torch.long)
    mask = torch.zeros_like(prompts)
    for j, s in enumerate(start.tolist()):
        prompts[j, L - s:] = enc.input_ids[j, :s]
        mask[j, L - s:] = 1
    gen = pm.generate(input_ids=prompts, attention_mask=mask, max_new_tokens=int(length.max()),
                      do_sample=False, num_beams=1, pad_token_id=pad, eos_token_id=codec.eos_token_id)
    new = gen[:, L:]
    out = torch.zeros(len(pairs), dtype=torch.bool)
    for j in range(len(pairs)):
        n = int(length[j])
        want = enc.input_ids[j, start[j]:start[j] + n]
        out[j] = new.shape[1] >= n and torch.equal(new[j, :n], want)
    return out


def trivia_items(N: int) -> tuple[list[Any], list[Any]]:
    """(probed, trained): N trivia items, half with SmolLM2's recorded prior right and half wrong,
    interleaved; and 64 other items the learners train on so their adapters differ."""
    from curricula import FAMILIES

    right = FAMILIES.get("trivia")(prior="right").generate(N // 2 + 32, seed=0)
    wrong = FAMILIES.get("trivia")(prior="wrong").generate(N - N // 2 + 32, seed=0)
    probed = [x for pair in zip(right, wrong, strict=False) for x in pair][:N]
    return probed, right[N // 2:] + wrong[N - N // 2:]


@torch.no_grad()
def peft_texts(pm: Any, tok: Any, prompts: list[str], max_new_tokens: int) -> list[str]:
    """One learner's greedy answers: batched generate() over every prompt (left padding, KV
    cache), stopped at the end of turn or eos, decoded without special tokens."""
    from learners.encoding import as_codec, encode_pairs, stop_ids

    enc = encode_pairs(tok, [(p, "") for p in prompts])
    start = enc.answer_start.tolist()
    L, pad = max(start), as_codec(tok).pad_token_id or 0
    ids = torch.full((len(prompts), L), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for j, s in enumerate(start):
        ids[j, L - s:], mask[j, L - s:] = enc.input_ids[j, :s], 1
    stops = stop_ids(tok)
    gen = pm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                      do_sample=False, num_beams=1, pad_token_id=pad, eos_token_id=stops)
    out = []
    for toks in gen[:, L:].tolist():
        cut = next((t for t, x in enumerate(toks) if x in stops), len(toks))
        out.append(tok.decode(toks[:cut], skip_special_tokens=True))
    return out


def key_term_bench(a: Any, pop: Any, twin_base: Any, tok: Any, N: int, reps: int) -> dict:
    """The key-term probe (see the module doc) side by side with per-learner PEFT generate()."""
    from curricula.families.trivia import PRIOR_TOKENS
    from curricula.items import key_terms_match
    from learners.probe import generate_greedy, generate_greedy_hf

    items, train = trivia_items(N)
    for t in range(4):   # 4 steps of 8 trivia pairs each: the adapters differ per learner
        pop.train_step([[(x.prompt, x.answer) for x in train[(8 * (p + t)) % len(train):][:8]]
                        for p in range(a.P)])
    prompts = [x.prompt for x in items]
    t_pop, texts = timed(lambda: generate_greedy(pop.model, tok, a.P, prompts, PRIOR_TOKENS,
                                                 pop.probe_chunk, pop.device, fast=pop.fast),
                         reps, "population_generate_greedy")
    n = a.P * N
    rate: dict[str, float] = {"population_generate_greedy": n / t_pop}   # learner-items per s
    out: dict[str, Any] = {}
    if not a.skip_transformers:
        t_hf, texts_hf = timed(lambda: generate_greedy_hf(pop.model, tok, a.P, prompts, PRIOR_TOKENS,
                                                          pop.probe_chunk, pop.device),
                               reps, "population_transformers_generate")
        rate["population_transformers_generate"] = n / t_hf
        out |= {"speedup_over_transformers_generate": round(t_hf / t_pop, 3),
                "same_text_as_transformers": texts == texts_hf}
    pm = peft_adapters(twin_base, pop).eval()

    def learner(i: int) -> Any:
        pm.set_adapter(f"l{i}")
        return pm

    # each learner's PEFT generate() is separate work over the same N prompts, so its rate per
    # learner-item is that of any subset of the learners: --peft-learners times the first K
    K = min(a.P, a.peft_learners or a.P)
    t_gen, ref = timed(lambda: [peft_texts(learner(i), tok, prompts, PRIOR_TOKENS)
                                for i in range(K)], reps, "peft_batched_generate")
    rate["peft_batched_generate"] = K * N / t_gen
    judge = [[key_terms_match(x.key_terms, t) for x, t in zip(items, row, strict=True)]
             for row in texts]
    judge_ref = [[key_terms_match(x.key_terms, t) for x, t in zip(items, row, strict=True)]
                 for row in ref]
    pairs = [(u, v) for r, q in zip(texts[:K], ref, strict=True) for u, v in zip(r, q, strict=True)]
    work = {"population_generate_greedy": n, "population_transformers_generate": n,
            "peft_batched_generate": K * N}
    per_cpu = {k: work[k] / CPU[k] for k in CPU}
    return {"base": a.base, "mode": "key_terms", "P": a.P, "items": N, "threads": a.threads,
            "reps": reps, "max_new_tokens": PRIOR_TOKENS, "peft_learners_timed": K,
            "items_per_s": {k: round(v, 2) for k, v in rate.items()},
            "speedup": round(rate["population_generate_greedy"] / rate["peft_batched_generate"], 3),
            "items_per_cpu_s": {k: round(v, 2) for k, v in per_cpu.items()},
            "speedup_per_cpu_s": round(per_cpu["population_generate_greedy"]
                                       / per_cpu["peft_batched_generate"], 3),
            **out, "identical": judge[:K] == judge_ref,
            "same_text": round(sum(u == v for u, v in pairs) / len(pairs), 4),
            "fraction_correct": round(sum(map(sum, judge)) / n, 4),
            "peak_rss_mib": round(max_rss_mib(), 1)}


CPU: dict[str, float] = {}   # median CPU seconds (this process, all threads) of each timed call


def timed(fn: Any, reps: int, name: str = "") -> tuple[float, Any]:
    """Median seconds of `reps` calls and the last result; the median CPU seconds into CPU[name]
    (on a shared machine these count only the cycles the call got)."""
    times, cpu, res = [], [], None
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        res = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    CPU[name] = statistics.median(cpu)
    return statistics.median(times), res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="64 items, 1 repeat (~1 min)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--P", type=int, default=8, help="learners (default 8)")
    ap.add_argument("--items", type=int, default=None, help="items per learner (default 256)")
    ap.add_argument("--reps", type=int, default=None, help="repeats, median taken (default 3)")
    ap.add_argument("--one-at-a-time", type=int, default=16, help="items timed one by one")
    ap.add_argument("--threads", type=int, default=CORES, help="torch threads (default all cores)")
    ap.add_argument("--key-terms", action="store_true",
                    help="trivia questions judged by key terms in greedy answers (a real base)")
    ap.add_argument("--peft-learners", type=int, default=None, metavar="K",
                    help="--key-terms: time per-learner PEFT generate() on the first K learners "
                    "only (its rate per learner-item does not depend on P; default all P)")
    ap.add_argument("--skip-transformers", action="store_true",
                    help="--key-terms: skip the population through transformers' generate()")
    add_base_args(ap)
    a = ap.parse_args()
    N = a.items or (64 if a.quick else 256)
    reps = a.reps or (1 if a.quick else 3)
    from learners.population import LearnerSpec, Population

    with tmpdir() as d:
        path, kind = bench_base(Path(d), a.base, a.untrained)
        model, tok = load(path, a.threads)
        twin_base, _ = load(path, a.threads)   # the PEFT model's base: loaded, never deep-copied
    specs = [LearnerSpec(lr=1e-3, weight_decay=0.0, rank=8, alpha=16.0, dropout=0.0, seed=s)
             for s in range(a.P)]
    pop = Population(model, tok, specs)
    if a.key_terms:
        emit(key_term_bench(a, pop, twin_base, tok, N, reps), a.json)
        return
    items = addition_pairs(N, seed=1)
    for t in range(4):  # a few steps each on different items: adapters differ per learner
        pop.train_step([items[(8 * (p + t)) % N:][:8] for p in range(a.P)])
    pop.probe(items[:8])  # warm-up
    t_pop, res = timed(lambda: pop.probe(items), reps, "population_probe")
    del model
    pm = peft_adapters(twin_base, pop).eval()   # one PEFT model, every learner an adapter

    def learner(i: int) -> Any:
        pm.set_adapter(f"l{i}")
        return pm

    generate_verdicts(learner(0), tok, items[:8])  # warm-up
    t_gen, verdicts = timed(lambda: torch.stack([generate_verdicts(learner(i), tok, items)
                                                 for i in range(a.P)]), reps, "peft_batched_generate")
    sub = items[:a.one_at_a_time]
    t_one, _ = timed(lambda: [generate_verdicts(learner(0), tok, [it]) for it in sub], 1,
                     "peft_one_item_generate")
    rates = {"population_probe": a.P * N / t_pop, "peft_batched_generate": a.P * N / t_gen,
             "peft_one_item_generate": len(sub) / t_one}
    identical = bool((torch.from_numpy(res.correct) == verdicts).all())
    out = {"base": kind, "P": a.P, "items": N, "threads": a.threads, "reps": reps,
           "items_per_s": {k: round(v, 1) for k, v in rates.items()},
           "speedup": round(rates["population_probe"] / rates["peft_batched_generate"], 3),
           "speedup_vs_one_item": round(rates["population_probe"] / rates["peft_one_item_generate"], 1),
           "items_per_cpu_s": {k: round(n / CPU[k], 2) for k, n in
                               (("population_probe", a.P * N), ("peft_batched_generate", a.P * N),
                                ("peft_one_item_generate", len(sub)))},
           "speedup_per_cpu_s": round(CPU["peft_batched_generate"] / CPU["population_probe"], 3),
           "identical": identical, "fraction_correct": round(float(res.correct.mean()), 4),
           "peak_rss_mib": round(max_rss_mib(), 1)}
    emit(out, a.json)


if __name__ == "__main__":
    main()
