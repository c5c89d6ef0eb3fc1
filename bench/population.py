"""Training throughput: the batched population against PEFT the way a user would run it.

    python bench/population.py [--quick] [--json] [--P 8 32] [--steps 8] [--reps 5] [--compile]

Side by side in one run, for each P: (1) the batched population, in one process with all cores, as
one group of learners per core in a process each, and as one group per core on a thread each in
one process (`batched_thread_per_core`, what `evolve run`'s local backend does; one torch thread
each); (2) one PEFT model per learner stepped in turn, at 1 thread and at all cores; (3) PEFT
learners split over one process per core. The best of (2) and (3) is the baseline.

Every way is built first, in its own worker processes, then all are timed in `--reps` rounds, each
round running every way once (order rotated): this machine's speed drifts by 20% from minute to
minute, and ways timed in one round see the same machine. The GEMM peak is timed in the same rounds:
a 1024^3 float32 matmul on one thread, and on one thread per core at once (the peak of the cores
used together, as the batched and PEFT ways use them).

Prints learner-steps/s for each way (median over rounds), `speedup` (median over rounds of best
batched / strongest baseline, with the per-round values), GFLOP/s (4*N*D per learner step: N base
parameters, D tokens) and `fraction_of_gemm_peak` (of the all-cores peak, median over rounds of
the per-round ratio; `median_rate_over_median_peak` is the same from the two medians),
peak memory, and the largest gradient difference between batched and PEFT on one batch.
`batched_unfused_proc_per_core` runs the population through the transformers forward instead of
the fused one (learners/fastpath.py), to show what the fusion brings; it is never the "best".
The fused forward skips work that reaches no loss (the last block's o_proj and MLP on unlabelled
positions, the columns after the last labelled one, block 0's q/k/v), so it executes less than
4*N*D: `executed_fraction_of_4ND` says how much (see `executed_flops`); GFLOP/s and the fraction
of the peak keep the 4*N*D accounting the targets are stated in.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import (
    CORES,
    Way,
    add_base_args,
    bench_base,
    emit,
    gemm_setup,
    interleave,
    load,
    lora_config,
    peft_adapters,
    timer,
    tmpdir,
    train_pairs,
)

RANK, ALPHA, TARGETS = 8, 16.0, ("q_proj", "v_proj")
WORK = {"batch": 16, "prompt_len": 24}   # pairs per learner step, characters per prompt (--batch)


def stream(learner: int, steps: int) -> list[list[tuple[str, str]]]:
    """Learner `learner`'s batches (distinct per learner and step)."""
    return [train_pairs(WORK["batch"], seed=learner * 1000 + t, prompt_len=WORK["prompt_len"])
            for t in range(steps)]


def specs(first: int, n: int) -> list[Any]:
    from learners.population import LearnerSpec

    return [LearnerSpec(lr=1e-3 * (1 + j % 3), weight_decay=0.01, rank=RANK, alpha=ALPHA,
                        dropout=0.0, seed=first + j) for j in range(n)]


def batched_setup(path: str, first: int, n: int, steps: int, threads: int, compiled: bool,
                  fused: bool = True, work: dict | None = None) -> tuple[Callable[[], float], float]:
    """Population steps of learners first..first+n-1 (with `threads` torch threads)."""
    from learners.population import Population

    WORK.update(work or {})

    model, tok = load(path, threads)
    pop = Population(model, tok, specs(first, n), target_modules=TARGETS, fused=fused)
    if compiled:
        pop.compile()
    data = [stream(first + j, steps) for j in range(n)]

    def step(t: int) -> None:
        pop.train_step([d[t % steps] for d in data])

    for t in range(2):  # warm-up (and compile)
        step(t)
    return timer(step, steps), n * steps


def threaded_setup(path: str, P: int, steps: int, work: dict | None = None
                   ) -> tuple[Callable[[], float], float]:
    """One process, one group of learners per core, each stepped on its own Python thread with one
    torch thread: what `evolve run`'s local backend does with `groups` = cores."""
    from concurrent.futures import ThreadPoolExecutor

    from learners.population import Population

    WORK.update(work or {})

    model, tok = load(path, 1)
    groups = [(Population(model, tok, specs(f, n), target_modules=TARGETS),
               [stream(f + j, steps) for j in range(n)]) for f, n in split(P, CORES)]
    pool = ThreadPoolExecutor(len(groups))  # lives as long as the worker process

    def run(k: int, t: int) -> None:
        pop, data = groups[k]
        pop.train_step([d[t % steps] for d in data])

    def step(t: int) -> None:
        list(pool.map(run, range(len(groups)), [t] * len(groups)))

    for t in range(2):
        step(t)
    return timer(step, steps), P * steps


def peft_setup(path: str, first: int, n: int, steps: int, threads: int, work: dict | None = None
               ) -> tuple[Callable[[], float], float]:
    """ONE PEFT model holding the n learners' adapters (no copy of the base), trained in turn as a
    user would: set_adapter, forward, backward, clip, that adapter's AdamW step."""
    import torch
    from peft import get_peft_model

    from learners.encoding import encode_pairs

    WORK.update(work or {})
    model, tok = load(path, threads)
    pm = None
    learners = []
    for j, spec in enumerate(specs(first, n)):
        cfg = lora_config(spec, TARGETS)
        if pm is None:
            pm = get_peft_model(model, cfg, adapter_name=f"l{j}")
        else:
            pm.add_adapter(f"l{j}", cfg)
        params = [p for name, p in pm.named_parameters() if f".l{j}." in name]
        opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
        learners.append((f"l{j}", params, opt, [encode_pairs(tok, b) for b in stream(first + j, steps)]))
    assert pm is not None

    def one(name: str, params: list, opt: Any, enc: Any) -> None:
        pm.set_adapter(name)
        loss = pm(input_ids=enc.input_ids, attention_mask=enc.attention_mask, labels=enc.labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    pm.train()

    def step(t: int) -> None:
        for name, params, opt, encs in learners:
            one(name, params, opt, encs[t])

    step(0)
    return timer(step, steps), n * steps


def split(P: int, parts: int) -> list[tuple[int, int]]:
    """(first, n) of `parts` near-equal groups of P learners."""
    sizes = [P // parts + (k < P % parts) for k in range(parts)]
    firsts = [sum(sizes[:k]) for k in range(parts)]
    return [(f, s) for f, s in zip(firsts, sizes, strict=True) if s > 0]


def max_grad_diff(path: str) -> float:
    """Largest |grad| difference between the population and PEFT, 4 learners on one batch."""
    import torch

    from learners.encoding import encode_pairs
    from learners.population import Population

    model, tok = load(path, CORES)
    pop = Population(model, tok, specs(0, 4), target_modules=TARGETS)
    del model
    g = torch.Generator().manual_seed(0)
    for i in range(pop.P):  # B != 0 so both A and B get gradients
        st = pop.get_state(i)
        st.lora = {k: (a, torch.randn(b.shape, generator=g) * 0.1) for k, (a, b) in st.lora.items()}
        pop.set_state(i, st)
    batch = train_pairs(WORK["batch"], seed=7, prompt_len=WORK["prompt_len"])
    pop.losses([batch] * pop.P).sum().backward()
    enc = encode_pairs(tok, batch)
    worst = 0.0
    pm = peft_adapters(load(path, CORES)[0], pop)   # one PEFT model, the 4 learners' adapters
    for i in range(pop.P):
        pm.set_adapter(f"l{i}")
        pm(input_ids=enc.input_ids, attention_mask=enc.attention_mask, labels=enc.labels).loss.backward()
        for name, mod in pm.base_model.model.named_modules():
            if name in pop.layers and hasattr(mod, "lora_A"):
                layer = pop.layers[name]
                ga, gb = layer.lora_A.grad, layer.lora_B.grad
                assert ga is not None and gb is not None
                worst = max(worst,
                            float((ga[i] - mod.lora_A[f"l{i}"].weight.grad).abs().max()),
                            float((gb[i] - mod.lora_B[f"l{i}"].weight.grad).abs().max()))
    return worst


def executed_flops(model: Any, enc: Any, pass_tokens: int = 2048) -> float | None:
    """The base's matmul FLOPs the fused forward and backward (learners/fastpath.py) execute for
    one learner step on batch `enc`, counted as 4*N*D counts them (2 per weight and row, forward
    and input gradient), to compare with 4*N*D:
    - every block runs on the first L columns only (`predicting`: later ones reach no label);
    - block 0's q/k/v need no input gradient (the embedding is frozen), and where the vocabulary
      is smaller than a pass (`pass_tokens`) they come from a per-token table (its [V, H] GEMM,
      shared by a pass of several learners, is left out);
    - the last block's q runs on the positions from the first labelled one on, and its o_proj
      and MLP, and the LM head, on the K labelled positions only;
    - the rows' common leading tokens (`common_prefix`: the chat template's system turn) run once
      per learner, not once per row;
    - the embedding lookup is no matmul (its V*H parameters are in N all the same).
    None where the base does not take the fused path."""
    from learners.encoding import predicting
    from learners.fastpath import FastLlama, common_prefix

    if not FastLlama.supports(model):
        return None
    table = model.get_input_embeddings().weight.shape[0] <= pass_tokens

    sel, _ = predicting(enc.labels)
    prefix = common_prefix(enc.input_ids[:, :sel.shape[1]], sel, sel.shape[0])
    rows, K = prefix + sel.shape[0] * (sel.shape[1] - prefix), int(sel.sum())
    queried = sel.shape[0] * (sel.shape[1] - int(sel.any(0).nonzero()[0, 0]))  # rows from t0 on
    blocks = model.model.layers
    total = 0
    for i, blk in enumerate(blocks):
        att, mlp = blk.self_attn, blk.mlp
        q, kv = att.q_proj.weight.numel(), att.k_proj.weight.numel() + att.v_proj.weight.numel()
        tail = att.o_proj.weight.numel() + sum(p.numel() for p in mlp.parameters())
        last = i == len(blocks) - 1
        first = 0 if table else 2 * rows * (q + kv)   # block 0: forward only, or the table
        total += (first if i == 0 else 4 * (rows * kv + (queried if last else rows) * q)
                  ) + 4 * (K if last else rows) * tail
    return float(total + 4 * K * model.get_output_embeddings().weight.numel())


def ways_for(path: str, P: int, steps: int, compiled: bool, work: dict,
             only: Sequence[str] | None = None) -> dict[str, Way]:
    """Every way of training P learners (or those named in `only`), and the GEMM peak, as live
    worker processes. No way copies the base per learner: the PEFT ways hold every learner as an
    adapter of one PEFT model per process."""
    per_core = split(P, CORES)
    c = CORES
    setups: dict[str, tuple[Callable[..., Any], list[tuple]]] = {
        "batched_1proc": (batched_setup, [(path, 0, P, steps, c, False, True, work)]),
        "batched_proc_per_core": (batched_setup, [(path, f, n, steps, 1, False, True, work)
                                                  for f, n in per_core]),
        "batched_thread_per_core": (threaded_setup, [(path, P, steps, work)]),
        "batched_unfused_proc_per_core": (  # the transformers forward
            batched_setup, [(path, f, n, steps, 1, False, False, work) for f, n in per_core]),
        "peft_seq_1thread": (peft_setup, [(path, 0, P, steps, 1, work)]),
    }
    if compiled:
        setups["batched_compiled_proc_per_core"] = (
            batched_setup, [(path, f, n, steps, 1, True, True, work) for f, n in per_core])
    if c > 1:
        setups[f"peft_seq_{c}threads"] = (peft_setup, [(path, 0, P, steps, c, work)])
        setups["peft_proc_per_core"] = (peft_setup, [(path, f, n, steps, 1, work) for f, n in per_core])
    unknown = set(only or ()) - set(setups)
    if unknown:
        raise SystemExit(f"bench: unknown --ways {sorted(unknown)}; choose from {sorted(setups)}")
    ways = {k: Way(fn, args) for k, (fn, args) in setups.items() if only is None or k in only}
    # the peak: a 1024^3 float32 GEMM on one thread, and on one thread per core at once
    ways["gemm_1thread"] = Way(gemm_setup, [()])
    ways["gemm_proc_per_core"] = Way(gemm_setup, [()] * CORES)
    return ways


def _best(med: dict[str, float], prefix: str) -> str | None:
    """The way named `prefix`... with the highest rate in `med` (never the unfused one), or None
    where no such way was timed (`--ways` named only the other kind)."""
    names = [k for k in med if k.startswith(prefix) and "unfused" not in k]
    return max(names, key=lambda k: med[k]) if names else None


def _per_round(a: list[float], b: list[float], scale: float = 1.0) -> list[float]:
    return [x * scale / y for x, y in zip(a, b, strict=True)]


def summarise(rounds: dict[str, list[float]], cpu: dict[str, list[float]], rss: dict[str, float],
              flop: float) -> dict[str, Any]:
    """One P's figures from `interleave`'s per-round rates (per wall second and per CPU-second) of
    every way and of the GEMM peak (`gemm_1thread`, `gemm_proc_per_core`), and `flop` GFLOP per
    learner step (4*N*D). Rates are medians over rounds; ratios are medians of the per-round
    ratios: ways and the peak timed in one round saw the same machine. Where the timed ways hold
    no batched way or no PEFT way, the comparisons are None."""
    rounds, cpu = dict(rounds), dict(cpu)
    peak, peak1 = rounds.pop("gemm_proc_per_core"), rounds.pop("gemm_1thread")
    peak_cpu = cpu.pop("gemm_proc_per_core")   # GFLOP per CPU-second: one core's peak
    cpu.pop("gemm_1thread")
    med = {k: statistics.median(v) for k, v in rounds.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    best_b, best_p = _best(med, "batched"), _best(med, "peft")
    cb, cp = _best(med_cpu, "batched"), _best(med_cpu, "peft")
    out: dict[str, Any] = {
        "learner_steps_per_s": {k: round(v, 2) for k, v in med.items()},
        "best_batched": best_b, "strongest_baseline": best_p,
        "gemm_peak_gflops": {"1thread": round(statistics.median(peak1), 1),
                             f"{CORES}cores": round(statistics.median(peak), 1)},
        "gemm_peak_gflops_per_round": [round(x, 1) for x in peak],
        # the same per CPU-second each way got (robust to other jobs on the machine)
        "learner_steps_per_cpu_s": {k: round(v, 3) for k, v in med_cpu.items()},
        "best_batched_per_cpu_s": cb, "strongest_baseline_per_cpu_s": cp,
        "gemm_peak_gflops_per_cpu_s": round(statistics.median(peak_cpu), 1),
        "peak_rss_mib": {k: v for k, v in rss.items() if not k.startswith("gemm")},
    }
    for key, name in (("gflops_batched", best_b), ("gflops_strongest_baseline", best_p)):
        out[key] = None if name is None else round(med[name] * flop, 1)
    if best_b is not None and cb is not None:
        frac, frac_cpu = _per_round(rounds[best_b], peak, flop), _per_round(cpu[cb], peak_cpu, flop)
        out |= {"fraction_of_gemm_peak": round(statistics.median(frac), 3),
                "fraction_of_gemm_peak_per_round": [round(x, 3) for x in frac],
                "median_rate_over_median_peak": round(med[best_b] * flop / statistics.median(peak), 3),
                "fraction_of_gemm_peak_per_cpu_s": round(statistics.median(frac_cpu), 3),
                "fraction_of_gemm_peak_per_cpu_s_per_round": [round(x, 3) for x in frac_cpu]}
    out["speedup"] = out["speedup_per_cpu_s"] = None
    if best_b is not None and best_p is not None and cb is not None and cp is not None:
        ratio, ratio_cpu = _per_round(rounds[best_b], rounds[best_p]), _per_round(cpu[cb], cpu[cp])
        out |= {"speedup": round(statistics.median(ratio), 3),
                "speedup_per_round": [round(x, 3) for x in ratio],
                "speedup_per_cpu_s": round(statistics.median(ratio_cpu), 3),
                "speedup_per_cpu_s_per_round": [round(x, 3) for x in ratio_cpu]}
    return out


# the ways timed on a --base model by default: each process holds a copy of the base, and a
# 135M-parameter one with its activations takes 1-2 GB
REAL_WAYS = ("batched_1proc", "batched_proc_per_core", f"peft_seq_{CORES}threads", "peft_proc_per_core")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="P=8 only, 3 steps, 2 rounds (~1 min)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--P", type=int, nargs="+", default=None, help="population sizes (default 8 32)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per round (default 8)")
    ap.add_argument("--reps", type=int, default=None,
                    help="rounds; each times every way once, medians reported (default 5)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd batching")
    ap.add_argument("--batch", type=int, default=None,
                    help="pairs per learner step (default 16; 8 with --base)")
    ap.add_argument("--prompt-len", type=int, default=None,
                    help="characters per prompt (default 24; 12 with --base)")
    ap.add_argument("--ways", nargs="+", default=None, metavar="WAY",
                    help="time only these ways (default: all; with --base: " + " ".join(REAL_WAYS) + ")")
    add_base_args(ap)
    a = ap.parse_args()
    Ps = a.P or ([8] if a.quick else [8, 32])
    steps = a.steps or (3 if a.quick else 8)
    reps = a.reps or (2 if a.quick else 5)
    real = a.base is not None
    WORK.update(batch=a.batch or (8 if real else 16), prompt_len=a.prompt_len or (12 if real else 24))
    only = a.ways or (list(REAL_WAYS) if real else None)
    with tmpdir() as d:
        path, kind = bench_base(Path(d), a.base, a.untrained, a.hidden)
        model, tok = load(path, CORES)
        from learners.encoding import encode_pairs

        N = sum(p.numel() for p in model.parameters())
        enc = encode_pairs(tok, stream(0, 1)[0])
        D = int(enc.input_ids.numel())
        executed = executed_flops(model, enc)
        del model
        out: dict[str, Any] = {
            "base": kind, "base_params": N, "tokens_per_learner_step": D, "cores": CORES,
            "batch": WORK["batch"], "prompt_len": WORK["prompt_len"],
            "rank": RANK, "target_modules": list(TARGETS), "steps": steps, "rounds": reps,
            "max_grad_diff_vs_peft": max_grad_diff(path),
            "executed_fraction_of_4ND": None if executed is None else round(executed / (4 * N * D), 3),
            "P": {}}
        for P in Ps:
            ways = ways_for(path, P, steps, a.compile, dict(WORK), only)
            rounds, cpu = interleave(ways, reps)
            rss = {k: round(w.close(), 1) for k, w in ways.items()}
            out["P"][str(P)] = summarise(rounds, cpu, rss, 4 * N * D / 1e9)
    emit(out, a.json)


if __name__ == "__main__":
    main()
