"""`evolve experiment selection`: does selecting on fitness breed learners that learn faster?

Arms (`--arms`), each run once per run seed with the same budget: the same population,
generations, items per generation, holdout, probe items and assessment. Within a seed every arm
shares generation 0 exactly (same genomes, items, training), so the arms differ only in how
generation g+1 is made from generation g (`selection.basis`, `evolve/arms.py`):
- `fitness`: the config's selection (default: tournament of 3 on the default weights, 1 elite);
- `fitness-tuned`: the same with the weights of `evolve tune` (`--weights FILE`);
- `random`: the fitness arm's operator and elitism on fresh random values (same variation and
  inheritance), so any gain over it is the work of the information selection reads;
- `random-uniform` (exploratory): parents drawn uniformly and the elite a random learner (tournament
  on random values alone beats it, so it is no null for `fitness`);
- `shuffled`: the fitness arm's operator and elitism on fitness values permuted within each
  generation: a negative control whose answer is known to be no;
- `oracle`: selection on the outcome itself (`assess_gain`): the most selection can buy here;
- `none`: no selection: every generation restarts from generation 0's genomes with fresh seeds
  and fresh adapters.
The primary outcome, fixed before the run, is `assess_gain` of generation G (the last): every
learner is trained on the fixed never-trained probe items for the same budget and the area under
accuracy(t) - accuracy(0) is taken (`evolve/assess.py`); each seed contributes the mean over its
learners. Primary contrasts (exact sign-flip p, Holm over them): fitness - random, oracle -
random, shuffled - random; fitness - shuffled is reported beside them, uncorrected. The planted positive control (`PLANTED`: learning
rate over two decades is the only gene, every other gene fixed) runs the same arms over
`--planted-seeds` seeds: `fitness` and `oracle` must beat `random` there and `shuffled` must not.
Statistics: `evolve.experiments.selection_stats`; heritability and response: `evolve.response`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from common.errors import EvolveError
from evolve.experiments.selection_arms import (
    ARMS,
    DEFAULT_ARMS,
    METRICS,
    PLANTED,
    PLANTED_ARMS,
    PLANTED_SIZE,
    PRIMARY,
    arm_sets,
)
from evolve.experiments.selection_stats import seed_value

HELP = ("does fitness selection beat random, shuffled-fitness and oracle selection? (arms x run "
        "seeds, planted positive control)")
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
    generation's learners are kept (id, parents, fitness, lr, assess_* values, assess curve) and
    its summary metrics (heritability and response included, `evolve.response`)."""

    def __init__(self, tracker: Any, name: str, tags: dict[str, str]) -> None:
        self._t, self.name, self.tags = tracker, name, tags
        self.generations: dict[int, list[dict[str, Any]]] = {}
        self.metrics: dict[int, dict[str, float]] = {}

    def start_evolution(self, config: dict[str, Any], run_name: str | None = None) -> str:
        run_id = self._t.start_evolution(config, run_name or self.name)
        self._t.set_tags(run_id, self.tags)
        return str(run_id)

    def log_generation(self, generation: int, records: list[Any], summary: dict[str, float],
                       plots: bool = True) -> None:
        # `plots` follows tracking.draw_plots: its default `end` draws them after the last
        # generation only (per generation they took 2/3 of a tiny arm's time, measured)
        self._t.log_generation(generation, records, summary, plots=plots)
        self.metrics[generation] = dict(summary)
        self.generations[generation] = [{
            "id": r.learner_id, "parents": list(r.parents), "failed": bool(r.failed),
            "fitness": r.fitness, "lr": r.genome.get("lr"), "rank": r.genome.get("rank"),
            "steps_per_item": r.genome.get("steps_per_item"),
            **{m: r.signals.get(m) for m in METRICS},
            "signals": {k: v for k, v in r.signals.items() if k not in METRICS},
            "curve": [[int(s), float(a)] for s, a in r.curves.get("assess_acc", [])]}
            for r in records]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


def common_sets(args: argparse.Namespace, planted: bool) -> list[str]:
    """default < --config < quick preset < the planted control's genes < --set < the planted
    control's size (not with --quick) < --planted-set < tracking."""
    if not planted:
        return (QUICK if args.quick else []) + list(args.sets) + _tracking_defaults(args)
    return ((QUICK if args.quick else []) + PLANTED + list(args.sets) + planted_only(args)
            + _tracking_defaults(args))


def planted_only(args: argparse.Namespace) -> list[str]:
    """The planted control's own size (not with --quick), then --planted-set."""
    return ([] if args.quick else PLANTED_SIZE) + list(getattr(args, "planted_sets", []))


def arm_config(args: argparse.Namespace, arm: str, seed: int, weights: str | None,
               planted: bool = False) -> Any:
    """The arm's config: the common settings, then the arm's overrides, then the run seed."""
    from evolve.config import load_config

    return load_config(args.config, common_sets(args, planted) + arm_sets(arm, weights)
                       + [f"seed={seed}"])


def first_seed(args: argparse.Namespace, planted: bool) -> int:
    """The first run seed: the config's `seed` after the common (or the planted control's) sets."""
    from evolve.config import load_config

    return int(load_config(args.config, common_sets(args, planted)).seed)


def run_seeds(args: argparse.Namespace, n: int, planted: bool) -> list[int]:
    """The n run seeds: `first_seed` upwards (`--set seed=N` gives fresh main seeds, `--planted-set
    seed=N` fresh planted ones)."""
    return [first_seed(args, planted) + i for i in range(n)]


def _tracking_defaults(args: argparse.Namespace) -> list[str]:
    """The arms go to their own MLflow experiment and model name unless the user chose them."""
    from evolve.config_files import config_file, read_yaml

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


def run_arm(cfg: Any, arm: str, seed: int, control: str = "") -> dict[str, Any]:
    """One evolution of `arm` at run seed `seed`, recorded in MLflow; its learners per generation."""
    from evolve.backends import make_backend
    from evolve.engine import evolve
    from evolve.tracking import Tracker

    tracker = Tracker(cfg.tracking.uri or "", cfg.tracking.experiment or EXPERIMENT,
                      cfg.tracking.artifact_location)
    tags = {"evolve.experiment": "selection", "evolve.arm": arm, "evolve.run_seed": str(seed)}
    if control:
        tags["evolve.control"] = control
    prefix = f"selection-{control + '-' if control else ''}"
    cap = Capture(tracker, f"{prefix}{arm}-seed{seed}", tags)
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
            "generations": [{"generation": g, "learners": cap.generations[g],
                             "metrics": cap.metrics.get(g, {})} for g in sorted(cap.generations)]}


def cached_run(args: argparse.Namespace, arm: str, seed: int, weights: str | None,
               planted: bool) -> dict[str, Any]:
    """`run_arm`, saved under OUT/runs/ as JSON; a saved run of the very same settings (config,
    sets, arm, seed) is read back instead of run again, so an interrupted experiment continues
    and a longer one reuses the seeds already run."""
    from evolve.experiments.report import write_json

    control = "planted" if planted else ""
    key = {"config": args.config, "sets": common_sets(args, planted) + arm_sets(arm, weights),
           "seed": seed}
    path = args.out / "runs" / f"{control + '-' if control else ''}{arm}-seed{seed}.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return saved["run"]  # type: ignore[no-any-return]
    run = run_arm(arm_config(args, arm, seed, weights, planted), arm, seed, control)
    write_json(path, {"key": key, "run": run})
    return run


# --- the command ----------------------------------------------------------------------------


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("docs/results/selection"),
                   help="directory for report.md, report.json, the PNGs and runs/ (one JSON per "
                        "finished evolution, reused by a rerun) (default docs/results/selection)")
    p.add_argument("--quick", action="store_true",
                   help=f"tiny setting ({QUICK_SEEDS} seeds, population 4, 2 generations, 12 "
                        "items per generation); --set still overrides it")
    p.add_argument("--arms", type=_csv, default=list(DEFAULT_ARMS), metavar="A,B",
                   help=f"arms to run: {', '.join(ARMS)} (default {','.join(DEFAULT_ARMS)})")
    p.add_argument("--seeds", type=int, default=None,
                   help=f"run seeds per arm: the config's seed, seed+1, ... (default 16; quick "
                        f"{QUICK_SEEDS})")
    p.add_argument("--planted-seeds", type=int, default=None,
                   help=f"run seeds of the planted positive control (arms {', '.join(PLANTED_ARMS)}"
                        f"; default 8, quick {QUICK_SEEDS}; 0 = skip it); run before the main arms")
    p.add_argument("--planted-set", dest="planted_sets", action="append", default=[],
                   metavar="KEY=VALUE",
                   help=f"config override of the planted control only, after --set and its own "
                        f"size ({', '.join(PLANTED_SIZE)}; not with --quick); repeatable")
    p.add_argument("--pilot", type=int, default=4,
                   help="the first N seeds are the pilot: the seeds needed for 80%% power at the "
                        "oracle's effect are computed from them and printed (default 4)")
    p.add_argument("--pilot-from", type=Path, metavar="DIR",
                   help="an earlier run's --out: its runs/ (the seeds every arm has) are the pilot "
                        "of the power computation instead of this run's first --pilot seeds")
    p.add_argument("--planted-pilot", type=int, default=8,
                   help="the planted control's first N seeds are its pilot: the report gives the "
                        "verdict on them alone and the seeds they say 80%% power needs (default 8)")
    p.add_argument("--heritability-baseline", metavar="DIR",
                   help="an earlier run's --out (e.g. the random arm under the earlier variation "
                        "rules): its parent-offspring slope goes beside this one's, paired by seed")
    p.add_argument("--seed-order", choices=("up", "down"), default="up",
                   help="run the seeds (planted, then main) in increasing (default) or decreasing "
                        "order: two invocations with the same --out, one up and one down, share "
                        "runs/ and meet in the middle; a last invocation then only reads runs/ "
                        "and writes the report")
    p.add_argument("--weights", default="auto", metavar="FILE|auto",
                   help="tuned weights (YAML of `evolve tune`) for the fitness-tuned arm; auto "
                        "(default) = ./weights.yaml")
    p.add_argument("--config", metavar="FILE",
                   help="run config YAML merged onto configs/default.yaml, common to all arms")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="config override common to all arms (e.g. population=6, base=DIR, "
                        "tracking.uri=sqlite:///x.db); repeatable")


def pilot_runs(path: Path, arms: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The main arms' runs in `path`/runs (an earlier --out), paired by seed: only the seeds that
    every arm found there has."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for a in arms:
        runs = [json.loads(f.read_text())["run"] for f in (path / "runs").glob(f"{a}-seed*.json")]
        if runs:
            found[a] = {int(r["seed"]): r for r in runs}
    if "random" not in found:
        raise EvolveError(f"--pilot-from {path}: no runs/random-seed*.json there; pass the --out of "
                          "an earlier selection experiment with the random arm")
    common = sorted(set.intersection(*(set(rs) for rs in found.values())))
    return {a: [rs[s] for s in common] for a, rs in found.items()}


def tuned_weights(choice: str, arms: list[str]) -> str | None:
    """The weights file of the tuned arm, or None when there is no tuned arm."""
    if "fitness-tuned" not in arms:
        return None
    path = "weights.yaml" if choice == "auto" else choice
    if not Path(path).is_file():
        raise EvolveError(f"--weights {choice}: no such file ({path}) for the fitness-tuned arm; "
                          "pass a YAML written by `evolve tune --out FILE` or drop fitness-tuned "
                          "from --arms")
    return path


def check_args(args: argparse.Namespace) -> tuple[list[str], int, int]:
    """(arms, seeds, planted seeds) after one-line checks of the flags."""
    bad = [a for a in args.arms if a not in ARMS]
    if bad or not args.arms:
        raise EvolveError(f"--arms: unknown arm {bad[0] if bad else '(none)'!r}; valid: "
                          f"{', '.join(ARMS)}")
    if "random" not in args.arms:
        raise EvolveError("--arms must include random: every contrast is against it")
    n = args.seeds if args.seeds is not None else (QUICK_SEEDS if args.quick else 16)
    if n < 2:
        raise EvolveError(f"--seeds {n}: a paired test needs at least 2 run seeds; pass 16 or more")
    planted = args.planted_seeds if args.planted_seeds is not None else (
        QUICK_SEEDS if args.quick else 8)
    if planted == 1 or planted < 0:
        raise EvolveError(f"--planted-seeds {planted}: pass 0 (skip) or at least 2")
    return list(dict.fromkeys(args.arms)), n, planted


def check_outcome(cfg: Any) -> None:
    """The outcome (`assess_gain`) must be measured in every generation of every arm: one-line
    error naming the fix otherwise (e.g. `--config real`, whose assessment is off)."""
    probe = sum(int(getattr(t, "probe", 0) or 0) for t in cfg.tasks)
    if cfg.assess.every != 1 or cfg.assess.steps <= 0 or probe <= 0:
        raise EvolveError(
            f"the selection experiment's outcome is {PRIMARY}, measured every generation on the "
            f"tasks' probe items, but this config has assess.every={cfg.assess.every}, "
            f"assess.steps={cfg.assess.steps} and {probe} probe items; pass --set assess.every=1 "
            "--set assess.steps=N (N > 0) and tasks with probe > 0")


def main(args: argparse.Namespace) -> int:
    from evolve.experiments.selection_analysis import analyse, pilot_text
    from evolve.experiments.selection_report import log_summary, write_report

    arms, n, n_planted = check_args(args)
    if args.heritability_baseline and not (Path(args.heritability_baseline)
                                           / "report.json").is_file():
        raise EvolveError(f"--heritability-baseline {args.heritability_baseline}: no report.json "
                          "there; pass the --out of an earlier selection experiment")
    weights = tuned_weights(args.weights, arms)
    pilot = pilot_runs(args.pilot_from, arms) if args.pilot_from else None
    check_outcome(arm_config(args, "random", 0, weights))    # bad settings fail before any run
    cfgs = {a: arm_config(args, a, 0, weights) for a in arms}
    planted_cfg = None
    if n_planted:
        for a in PLANTED_ARMS:
            planted_cfg = arm_config(args, a, 0, None, planted=True)
        check_outcome(planted_cfg)
    seeds = run_seeds(args, n, planted=False)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    c = cfgs[arms[0]]
    log(f"selection: arms {', '.join(arms)} x seeds {seeds[0]}..{seeds[-1]}; planted control "
        f"{n_planted} seeds; population {c.population}, {c.generations} generations -> {args.out}")
    t0 = time.perf_counter()
    planted: dict[str, list[dict[str, Any]]] = {a: [] for a in PLANTED_ARMS} if n_planted else {}
    # the planted control's seeds start at its own config's seed (`--planted-set seed=N`: fresh
    # seeds for a new design of the control)
    planted_seeds = run_seeds(args, n_planted, planted=True)
    for seed in planted_seeds if args.seed_order == "up" else planted_seeds[::-1]:
        for a in PLANTED_ARMS:
            run = cached_run(args, a, seed, None, True)
            planted[a].append(run)
            log(f"  planted {a:>9} seed {seed}: {run['seconds']:.0f} s, {PRIMARY} "
                f"{_r(seed_value(run['generations'][-1]['learners'], PRIMARY))}")
    runs: dict[str, list[dict[str, Any]]] = {a: [] for a in arms}
    order = seeds if args.seed_order == "up" else seeds[::-1]
    for i, seed in enumerate(order):
        for a in arms:
            run = cached_run(args, a, seed, weights, False)
            runs[a].append(run)
            log(f"  {a:>13} seed {seed}: {run['seconds']:.0f} s, generation {c.generations - 1} "
                f"{PRIMARY} {_r(seed_value(run['generations'][-1]['learners'], PRIMARY))}")
        if i + 1 == min(args.pilot, n) and args.seed_order == "up":
            log(pilot_text(runs, args.pilot))
    if args.seed_order == "down":
        runs = {a: rs[::-1] for a, rs in runs.items()}
        planted = {a: rs[::-1] for a, rs in planted.items()}
    result = analyse(runs, planted, seeds, args.pilot, args.planted_pilot,
                     args.heritability_baseline, pilot)
    if pilot:
        result["power"]["pilot_source"] = str(args.pilot_from)
    doc = write_report(args, cfgs, arms, seeds, weights, runs, planted, result,
                       time.perf_counter() - t0, planted_cfg,
                       PLANTED + planted_only(args) if n_planted else None)
    run_id = log_summary(args.out, cfgs[arms[0]], doc)
    for v in result["verdicts"]:
        print(v["text"])
    print(f"report {args.out / 'report.md'}; MLflow summary run {run_id}")
    return 0


def _r(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"
