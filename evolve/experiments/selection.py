"""`evolve experiment selection`: does selecting on fitness make later generations learn faster?

Three arms (four with tuned weights), each run once per run seed with the same budget: the same
population, generations, items per generation, holdout, probe items and assessment. Within a seed
every arm shares generation 0 exactly (same genomes, items, training), so the arms differ only in
how generation g+1 is made from generation g:
- `fitness`: the config's selection (default: tournament of 3 on the default weights, 1 elite);
- `fitness-tuned`: the same with the weights of `evolve tune` (`--weights FILE`);
- `random`: parents drawn uniformly (`selection.operator=uniform`, no elites), the same variation
  and inheritance, so any gain over it is the work of fitness;
- `none`: no selection: every generation restarts from generation 0's genomes (truncation with
  quantile 0 keeps each genome exactly once, explore and crossover off) with fresh seeds (reseed)
  and fresh adapters (darwinian inheritance).
The outcome is the engine's learning-speed assessment of generation G (the last): every learner
is trained on the fixed never-trained probe items for the same budget (`evolve/assess.py`), and
each seed contributes the mean over its learners. Seeds are the replicates: intervals and the
paired tests (selection vs random, vs none) are over per-seed values (`evolve.experiments.paired`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from common.errors import EvolveError
from evolve.experiments.paired import paired, t_interval
from evolve.experiments.selection_arms import (
    ALPHA,
    CONTROLS,
    METRICS,
    PRIMARY,
    arm_sets,
)

HELP = "does fitness selection beat random selection and no selection? (arms x run seeds)"
EXPERIMENT = "evolve-selection"       # default MLflow experiment of the arms' evolutions
MODEL_NAME = "evolve-selection-champion"   # keeps the arms' champions out of `evolve-champion`
# Quick: the smallest evolution with >= 3 checkpoints per learner (seconds per arm on a tiny base).
QUICK = ["population=4", "generations=2", "tasks=[{family: modular, n: 12, holdout: 6, probe: 6}]",
         "training.batch_size=4", "training.checkpoint_every=4", "training.spectral=false",
         "genome.steps_per_item=[1, 2]", "assess.steps=4", "assess.checkpoints=2"]
QUICK_SEEDS = 2


# --- running the arms -----------------------------------------------------------------------


class Capture:
    """The engine's tracker, plus: the run is named and tagged with its arm and seed, and each
    generation's learners are kept (id, fitness, steps_per_item, assess_* values, assess curve)."""

    def __init__(self, tracker: Any, name: str, tags: dict[str, str]) -> None:
        self._t, self.name, self.tags = tracker, name, tags
        self.generations: dict[int, list[dict[str, Any]]] = {}

    def start_evolution(self, config: dict[str, Any], run_name: str | None = None) -> str:
        run_id = self._t.start_evolution(config, run_name or self.name)
        self._t.set_tags(run_id, self.tags)
        return str(run_id)

    def log_generation(self, generation: int, records: list[Any], summary: dict[str, float],
                       plots: bool = True) -> None:
        # `plots` follows tracking.draw_plots: its default `end` draws them after the last
        # generation only (per generation they took 2/3 of a tiny arm's time, measured)
        self._t.log_generation(generation, records, summary, plots=plots)
        self.generations[generation] = [{
            "id": r.learner_id, "failed": bool(r.failed), "fitness": r.fitness,
            "steps_per_item": r.genome.get("steps_per_item"),
            **{m: r.signals.get(m) for m in METRICS},
            "curve": [[int(s), float(a)] for s, a in r.curves.get("assess_acc", [])]}
            for r in records]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


def arm_config(args: argparse.Namespace, arm: str, seed: int, weights: str | None) -> Any:
    """default < --config < quick preset < --set < the arm's overrides < the run seed."""
    from evolve.config import load_config

    sets = (QUICK if args.quick else []) + list(args.sets) + _tracking_defaults(args)
    return load_config(args.config, sets + arm_sets(arm, weights) + [f"seed={seed}"])


def _tracking_defaults(args: argparse.Namespace) -> list[str]:
    """The arms go to their own MLflow experiment and model name unless the user chose them."""
    from evolve.config import config_file, read_yaml

    given = dict.fromkeys(s.partition("=")[0].strip() for s in args.sets)
    if args.config:
        data = read_yaml(config_file(args.config)) or {}
        given.update(dict.fromkeys(f"tracking.{k}" for k in (data.get("tracking") or {})))
    out = []
    if "tracking.experiment" not in given:
        out.append(f"tracking.experiment={EXPERIMENT}")
    if "tracking.model_name" not in given:
        out.append(f"tracking.model_name={MODEL_NAME}")
    return out


def run_arm(cfg: Any, arm: str, seed: int) -> dict[str, Any]:
    """One evolution of `arm` at run seed `seed`, recorded in MLflow; its learners per generation."""
    from evolve.backends import make_backend
    from evolve.engine import evolve
    from evolve.tracking import Tracker

    tracker = Tracker(cfg.tracking.uri or "", cfg.tracking.experiment or EXPERIMENT,
                      cfg.tracking.artifact_location)
    cap = Capture(tracker, f"selection-{arm}-seed{seed}",
                  {"evolve.experiment": "selection", "evolve.arm": arm, "evolve.run_seed": str(seed)})
    backend = make_backend(cfg.backend)
    t0 = time.perf_counter()
    try:
        summary = evolve(cfg, cap, backend, progress=False)
    finally:
        backend.close()
    rows = summary.generations
    return {"arm": arm, "seed": seed, "run_id": summary.run_id,
            "seconds": time.perf_counter() - t0,
            "train_s": sum(float(r["metrics"].get("train_s", 0.0)) for r in rows),
            "generations": [{"generation": g, "learners": cap.generations[g]}
                            for g in sorted(cap.generations)]}


# --- analysis -------------------------------------------------------------------------------


def learner_value(learner: dict[str, Any], metric: str) -> float | None:
    """One learner's outcome; a half-life that never came (never forgot) counts as the whole
    assessment budget, a lower bound, so learners that forget less are never scored worse."""
    if learner["failed"]:
        return None
    v = learner.get(metric)
    if v is None and metric == "assess_half_life" and learner["curve"]:
        return float(learner["curve"][-1][0])
    return None if v is None else float(v)


def seed_value(learners: list[dict[str, Any]], metric: str) -> float | None:
    """The seed's value: the mean over its non-failed learners."""
    vals = [v for v in (learner_value(x, metric) for x in learners) if v is not None]
    return sum(vals) / len(vals) if vals else None


def mean_curve(learners: list[dict[str, Any]]) -> tuple[list[int], list[float]]:
    """(assessment steps in training items, mean probe accuracy over non-failed learners)."""
    curves = [x["curve"] for x in learners if not x["failed"] and x["curve"]]
    if not curves:
        return [], []
    steps = [s for s, _ in curves[0]]
    return steps, [sum(c[i][1] for c in curves) / len(curves) for i in range(len(steps))]


def analyse(runs: dict[str, list[dict[str, Any]]], seeds: list[int]) -> dict[str, Any]:
    """Per-seed values, intervals, curves, paired tests and the verdict, all from `runs`."""
    arms = list(runs)
    last = {a: [r["generations"][-1]["learners"] for r in runs[a]] for a in arms}
    first = {a: [r["generations"][0]["learners"] for r in runs[a]] for a in arms}
    per_seed = {a: {m: [seed_value(ls, m) for ls in last[a]] for m in METRICS} for a in arms}
    gen0 = {m: [seed_value(ls, m) for ls in first[arms[0]]] for m in METRICS}
    summary = {a: {m: t_interval(per_seed[a][m]) for m in METRICS} for a in arms}
    summary["generation 0"] = {m: t_interval(gen0[m]) for m in METRICS}
    gen0_gap = max((abs((seed_value(first[a][i], m) or 0.0) - (gen0[m][i] or 0.0))
                    for a in arms for i in range(len(seeds)) for m in METRICS), default=0.0)
    comparisons = [(a, c) for a in arms if a.startswith("fitness") for c in CONTROLS if c in arms]
    comparisons += [("random", "none")] if {"random", "none"} <= set(arms) else []
    tests = [{"a": a, "b": b, "metric": m, **paired(per_seed[a][m], per_seed[b][m])}
             for a, b in comparisons for m in METRICS]
    curves = {}
    for a in arms:
        per = [mean_curve(ls) for ls in last[a]]
        steps = per[0][0]
        curves[a] = {"steps": steps, "per_seed": [c for _, c in per],
                     "band": [t_interval([c[i] for _, c in per]) for i in range(len(steps))]}
    steps0, _ = mean_curve(first[arms[0]][0])
    curves["generation 0"] = {"steps": steps0, "per_seed": [mean_curve(ls)[1] for ls in first[arms[0]]],
                              "band": [t_interval([mean_curve(ls)[1][i] for ls in first[arms[0]]])
                                       for i in range(len(steps0))]}
    by_gen = {a: [{"generation": g["generation"],
                   **t_interval([seed_value(r["generations"][i]["learners"], PRIMARY)
                                 for r in runs[a]])}
                  for i, g in enumerate(runs[a][0]["generations"])] for a in arms}
    budget = {a: {"seconds": sum(r["seconds"] for r in runs[a]),
                  "train_s": sum(r["train_s"] for r in runs[a]),
                  "steps_per_item_last": _mean([x["steps_per_item"] for ls in last[a] for x in ls
                                                if x["steps_per_item"] is not None])}
              for a in arms}
    return {"per_seed": per_seed, "generation0_per_seed": gen0, "summary": summary,
            "generation0_max_gap": gen0_gap, "tests": tests, "curves": curves,
            "by_generation": by_gen, "budget": budget, "verdicts": verdicts(tests)}


def _mean(xs: list[Any]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def verdicts(tests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One plain sentence per comparison on the primary metric (paired t-test, two-sided)."""
    from evolve.experiments.report import fmt

    out = []
    for t in (t for t in tests if t["metric"] == PRIMARY):
        md, p = t["mean_diff"], t["p_t"]
        sig = p is not None and p < ALPHA
        beat = None if md is None or t["n"] < 2 else bool(sig and md > 0)
        if beat is None:
            word, note = "could not be compared with", " (fewer than 2 seeds)"
        elif sig:
            word, note = ("beat", "") if beat else ("did worse than", "")
        else:
            word = "did not beat"
            note = (" (higher, within noise)" if md > 0 else " (lower, within noise)" if md < 0
                    else " (no difference)")
        ci = f"95% CI [{fmt(t['ci_lo'])}, {fmt(t['ci_hi'])}]"
        text = (f"`{t['a']}` {word} `{t['b']}` on {PRIMARY}{note}: mean paired difference "
                f"{fmt(md)} ({ci}), paired t p = {fmt(p)}, sign-flip p = {fmt(t['p_sign_flip'])} "
                f"(smallest possible {fmt(t['min_p_sign_flip'])}), d_z = {fmt(t['d_z'])}, "
                f"{t['wins']} of {t['n']} seeds higher")
        out.append({"a": t["a"], "b": t["b"], "beat": beat, "significant": sig, "text": text})
    return out


# --- the command ----------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("docs/results/selection"),
                   help="directory for report.md, report.json and the PNGs "
                        "(default docs/results/selection)")
    p.add_argument("--quick", action="store_true",
                   help=f"tiny setting ({QUICK_SEEDS} seeds, population 4, 2 generations, 12 "
                        "items per generation); --set still overrides it")
    p.add_argument("--seeds", type=int, default=None,
                   help=f"run seeds per arm: the config's seed, seed+1, ... (default 5; quick "
                        f"{QUICK_SEEDS}); 5 is the least the report accepts as a full run")
    p.add_argument("--weights", default="auto", metavar="FILE|auto|none",
                   help="tuned weights (YAML of `evolve tune`) for the fitness-tuned arm; auto "
                        "(default) = ./weights.yaml when it exists, none = no tuned arm")
    p.add_argument("--config", metavar="FILE",
                   help="run config YAML merged onto configs/default.yaml, common to all arms")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="config override common to all arms (e.g. population=6, base=DIR, "
                        "tracking.uri=sqlite:///x.db); repeatable")


def tuned_weights(choice: str) -> str | None:
    """The weights file of the tuned arm, or None for no tuned arm."""
    if choice == "none":
        return None
    if choice == "auto":
        return "weights.yaml" if Path("weights.yaml").is_file() else None
    if not Path(choice).is_file():
        raise EvolveError(f"--weights {choice}: no such file; pass a YAML written by "
                          "`evolve tune --out FILE`, auto or none")
    return choice


def main(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # spin-waiting threads: NOTES.md
    from evolve.experiments.selection_report import log_summary, write_report

    n = args.seeds if args.seeds is not None else (QUICK_SEEDS if args.quick else 5)
    if n < 2:
        raise EvolveError(f"--seeds {n}: a paired test needs at least 2 run seeds; pass 5 or more")
    weights = tuned_weights(args.weights)
    arms = ["fitness"] + (["fitness-tuned"] if weights else []) + list(CONTROLS)
    cfgs = {a: arm_config(args, a, 0, weights) for a in arms}   # bad settings fail before any run
    seeds = [cfgs["fitness"].seed + i for i in range(n)]
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    c = cfgs["fitness"]
    log(f"selection: arms {', '.join(arms)} x seeds {seeds}; population {c.population}, "
        f"{c.generations} generations -> {args.out}")
    runs: dict[str, list[dict[str, Any]]] = {a: [] for a in arms}
    t0 = time.perf_counter()
    for seed in seeds:
        for a in arms:
            run = run_arm(arm_config(args, a, seed, weights), a, seed)
            runs[a].append(run)
            v = seed_value(run["generations"][-1]["learners"], PRIMARY)
            log(f"  {a:>13} seed {seed}: {run['seconds']:.0f} s, generation {c.generations - 1} "
                f"{PRIMARY} {v if v is None else round(v, 4)}")
    result = analyse(runs, seeds)
    doc = write_report(args, cfgs, arms, seeds, weights, runs, result, time.perf_counter() - t0)
    run_id = log_summary(args.out, cfgs["fitness"], doc)
    for v in result["verdicts"]:
        print(v["text"])
    print(f"report {args.out / 'report.md'}; MLflow summary run {run_id}")
    return 0

