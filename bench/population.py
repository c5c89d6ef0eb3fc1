"""Training throughput: the batched population against PEFT the way a user would run it.

    python bench/population.py [--quick] [--json] [--P 8 32] [--compile]

Side by side in one run, for each P: (1) the batched population, in one process with all cores, as
one group of learners per core in a process each, and as one group per core on a thread each in one
process (`batched_thread_per_core`, what `evolve run`'s local backend does; one torch thread each); (2) one PEFT model per learner stepped in
turn, at 1 thread and at all cores (the best is the baseline); (3) PEFT learners split over one
process per core. Prints learner-steps/s for each, `speedup` (best batched over the best baseline),
GFLOP/s (4*N*D per learner step: N base parameters, D tokens) against a GEMM peak measured in the
same run, peak memory, and the largest gradient difference between batched and PEFT on one batch.
`batched_unfused_proc_per_core` runs the population through the transformers forward instead of
the fused one (learners/fastpath.py), to show what the fusion brings; it is never the "best".
The fused forward skips the last block's o_proj and MLP on unlabelled positions, so it executes
less than 4*N*D: `executed_fraction_of_4ND` says how much (GFLOP/s keep the 4*N*D accounting).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path
from typing import Any

from _common import (
    CORES,
    add_base_args,
    emit,
    gemm_peak,
    load,
    max_rss_mib,
    peft_twin,
    run_parallel,
    save_bench_base,
    tmpdir,
    train_pairs,
)

BATCH, RANK, ALPHA, TARGETS = 16, 8, 16.0, ("q_proj", "v_proj")


def stream(learner: int, steps: int) -> list[list[tuple[str, str]]]:
    """Learner `learner`'s batches (distinct per learner and step)."""
    return [train_pairs(BATCH, seed=learner * 1000 + t) for t in range(steps)]


def specs(first: int, n: int) -> list[Any]:
    from learners.population import LearnerSpec

    return [LearnerSpec(lr=1e-3 * (1 + j % 3), weight_decay=0.01, rank=RANK, alpha=ALPHA,
                        dropout=0.0, seed=first + j) for j in range(n)]


def batched_worker(barrier: Any, path: str, first: int, n: int, steps: int, reps: int,
                   threads: int, compiled: bool, fused: bool = True) -> dict:
    """Time `reps` x `steps` population steps of learners first..first+n-1."""
    from learners.population import Population

    model, tok = load(path, threads)
    pop = Population(model, tok, specs(first, n), target_modules=TARGETS, fused=fused)
    if compiled:
        pop.compile()
    data = [stream(first + j, steps) for j in range(n)]
    for t in range(2):  # warm-up (and compile)
        pop.train_step([d[t % steps] for d in data])
    barrier.wait()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for t in range(steps):
            pop.train_step([d[t] for d in data])
        times.append(time.perf_counter() - t0)
    return {"time": statistics.median(times), "learner_steps": n * steps, "rss_mib": max_rss_mib()}


def threaded_worker(barrier: Any, path: str, P: int, steps: int, reps: int) -> dict:
    """One process, one group of learners per core, each stepped on its own Python thread with one
    torch thread: what `evolve run`'s local backend does with `groups` = cores."""
    from concurrent.futures import ThreadPoolExecutor

    from learners.population import Population

    model, tok = load(path, 1)
    groups = [(Population(model, tok, specs(f, n), target_modules=TARGETS),
               [stream(f + j, steps) for j in range(n)]) for f, n in split(P, CORES)]

    def run(k: int, t: int) -> None:
        pop, data = groups[k]
        pop.train_step([d[t % steps] for d in data])

    with ThreadPoolExecutor(len(groups)) as pool:
        for t in range(2):
            list(pool.map(run, range(len(groups)), [t] * len(groups)))
        barrier.wait()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for t in range(steps):
                list(pool.map(run, range(len(groups)), [t] * len(groups)))
            times.append(time.perf_counter() - t0)
    return {"time": statistics.median(times), "learner_steps": P * steps, "rss_mib": max_rss_mib()}


def peft_worker(barrier: Any, path: str, first: int, n: int, steps: int, reps: int,
                threads: int) -> dict:
    """Time one PEFT model per learner, stepped in turn (forward, backward, clip, AdamW)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from learners.encoding import encode_pairs

    model, tok = load(path, threads)
    cfg = LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=list(TARGETS))
    learners = []
    for j, spec in enumerate(specs(first, n)):
        pm = get_peft_model(copy.deepcopy(model), cfg)
        params = [p for p in pm.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
        learners.append((pm, params, opt, [encode_pairs(tok, b) for b in stream(first + j, steps)]))

    def step(pm: Any, params: list, opt: Any, enc: Any) -> None:
        loss = pm(input_ids=enc.input_ids, attention_mask=enc.attention_mask, labels=enc.labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    for pm, params, opt, encs in learners:
        step(pm, params, opt, encs[0])
    barrier.wait()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for t in range(steps):
            for pm, params, opt, encs in learners:
                step(pm, params, opt, encs[t])
        times.append(time.perf_counter() - t0)
    return {"time": statistics.median(times), "learner_steps": n * steps, "rss_mib": max_rss_mib()}


def rate(results: list[dict]) -> float:
    """Learner-steps/s of workers that ran at the same time (the slowest one bounds the rate)."""
    return sum(r["learner_steps"] for r in results) / max(r["time"] for r in results)


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
    g = torch.Generator().manual_seed(0)
    for i in range(pop.P):  # B != 0 so both A and B get gradients
        st = pop.get_state(i)
        st.lora = {k: (a, torch.randn(b.shape, generator=g) * 0.1) for k, (a, b) in st.lora.items()}
        pop.set_state(i, st)
    batch = train_pairs(BATCH, seed=7)
    pop.losses([batch] * pop.P).sum().backward()
    enc = encode_pairs(tok, batch)
    worst = 0.0
    for i in range(pop.P):
        pm = peft_twin(model, pop, i)
        pm(input_ids=enc.input_ids, attention_mask=enc.attention_mask, labels=enc.labels).loss.backward()
        for name, mod in pm.base_model.model.named_modules():
            if name in pop.layers and hasattr(mod, "lora_A"):
                layer = pop.layers[name]
                worst = max(worst,
                            float((layer.lora_A.grad[i] - mod.lora_A["default"].weight.grad).abs().max()),
                            float((layer.lora_B.grad[i] - mod.lora_B["default"].weight.grad).abs().max()))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="P=8 only, 3 steps, 1 repeat (~1 min)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--P", type=int, nargs="+", default=None, help="population sizes (default 8 32)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per repeat (default 8)")
    ap.add_argument("--reps", type=int, default=None, help="repeats, median taken (default 3)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd batching")
    add_base_args(ap)
    a = ap.parse_args()
    Ps = a.P or ([8] if a.quick else [8, 32])
    steps = a.steps or (3 if a.quick else 8)
    reps = a.reps or (1 if a.quick else 3)
    with tmpdir() as d:
        path = d
        kind = save_bench_base(Path(d), a.base, a.untrained, a.hidden)
        model, tok = load(path, CORES)
        from learners.encoding import encode_pairs

        N = sum(p.numel() for p in model.parameters())
        enc = encode_pairs(tok, stream(0, 1)[0])
        D = int(enc.input_ids.numel())
        last = model.model.layers[-1]
        tail = last.self_attn.o_proj.weight.numel() + sum(p.numel() for p in last.mlp.parameters())
        labelled = float((enc.labels != -100).sum()) / D
        executed = 1 - tail / N * (1 - labelled)
        peak1, peak_all = gemm_peak(1), gemm_peak(CORES)
        out: dict[str, Any] = {
            "base": kind, "base_params": N, "tokens_per_learner_step": D, "cores": CORES,
            "rank": RANK, "target_modules": list(TARGETS), "steps": steps, "reps": reps,
            "gemm_peak_gflops_1thread": round(peak1, 1),
            "gemm_peak_gflops_all_cores": round(max(peak_all, peak1), 1),
            "max_grad_diff_vs_peft": max_grad_diff(path),
            "executed_fraction_of_4ND": round(executed, 3), "P": {}}
        for P in Ps:
            ways: dict[str, dict] = {}
            ways["batched_1proc"] = run_parallel(batched_worker, [(path, 0, P, steps, reps, CORES, False)])
            ways["batched_proc_per_core"] = run_parallel(
                batched_worker, [(path, f, n, steps, reps, 1, False) for f, n in split(P, CORES)])
            ways["batched_thread_per_core"] = run_parallel(threaded_worker, [(path, P, steps, reps)])
            ways["batched_unfused_proc_per_core"] = run_parallel(  # the transformers forward
                batched_worker, [(path, f, n, steps, reps, 1, False, False) for f, n in split(P, CORES)])
            if a.compile:
                ways["batched_compiled_proc_per_core"] = run_parallel(
                    batched_worker, [(path, f, n, steps, reps, 1, True) for f, n in split(P, CORES)])
            ways["peft_seq_1thread"] = run_parallel(peft_worker, [(path, 0, P, steps, reps, 1)])
            if CORES > 1:
                ways[f"peft_seq_{CORES}threads"] = run_parallel(
                    peft_worker, [(path, 0, P, steps, reps, CORES)])
                ways["peft_proc_per_core"] = run_parallel(
                    peft_worker, [(path, f, n, steps, reps, 1) for f, n in split(P, CORES)])
            rates = {k: round(rate(v), 2) for k, v in ways.items()}
            best_b = max((k for k in rates if k.startswith("batched") and "unfused" not in k),
                         key=rates.get)
            best_p = max((k for k in rates if k.startswith("peft")), key=rates.get)
            gflops = rates[best_b] * 4 * N * D / 1e9
            out["P"][str(P)] = {
                "learner_steps_per_s": rates, "best_batched": best_b, "strongest_baseline": best_p,
                "speedup": round(rates[best_b] / rates[best_p], 3),
                "gflops_batched": round(gflops, 1),
                "gflops_strongest_baseline": round(rates[best_p] * 4 * N * D / 1e9, 1),
                "fraction_of_gemm_peak": round(gflops / max(peak_all, peak1), 3),
                "peak_rss_mib": {k: round(sum(r["rss_mib"] for r in v), 1) for k, v in ways.items()},
            }
    emit(out, a.json)


if __name__ == "__main__":
    main()
