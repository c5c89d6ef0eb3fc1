"""`evolve tune`: an Optuna study for the fitness weights (docs/tune.md).

The objective never depends on the weights being tuned: offline it is how well a trial's fitness
ranks recorded parents by their children's learning speed, online how much a short evolution under
the trial's weights speeds learning up. The best weights go to a YAML file that `evolve run --set
fitness.weights_file=FILE` reads, and a `tune` run in the MLflow experiment records the study.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evolve.config_files import CONFIG_DIR

if TYPE_CHECKING:
    import optuna

    from evolve.config import RunConfig
    from evolve.tracking import Tracker
    from evolve.tuning import Replay

HELP = "tune the fitness weights with Optuna on recorded runs (offline) or short evolutions (online)"
ONLINE_CONFIG = CONFIG_DIR / "tune.yaml"
DEFAULT_TRIALS = {"offline": 500, "online": 8}


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=("offline", "online"), default="offline",
                   help="offline: replay the evolutions recorded in MLflow (seconds); online: each "
                        "trial runs a short evolution (minutes). Default: offline")
    p.add_argument("--trials", type=int, metavar="N",
                   help="trials to add to the study (default: 500 offline, 8 online)")
    p.add_argument("--storage", default="sqlite:///optuna.db", metavar="URL",
                   help="Optuna storage: a database URL, or a file path for a journal file (7x "
                        "faster writes); the same --study there continues where it stopped "
                        "(default: sqlite:///optuna.db; both open in optuna-dashboard)")
    p.add_argument("--study", metavar="NAME",
                   help="study name (default: evolve-offline / evolve-online)")
    p.add_argument("--config", metavar="FILE",
                   help="evolve run config (tracking store, fitness.normalise, default signals; "
                        "online: the trials' evolution). Default: configs/default.yaml, online "
                        "merged with configs/tune.yaml")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key as in `evolve run` (e.g. tracking.uri=sqlite:///m.db)")
    p.add_argument("--signals", type=_csv, metavar="A,B,C",
                   help="signals whose weights are tuned (default: the config's fitness.weights)")
    p.add_argument("--objectives", type=_csv, default=["speed"], metavar="A,B",
                   help="outcomes to maximise: speed or gain (assess_gain), auc (assess_auc), forgetting (survival_at_end) "
                        "or signal names; two or more give a Pareto front. Default: speed")
    p.add_argument("--out", default="weights.yaml", metavar="FILE",
                   help="write the best weights here as {weights: {signal: w}} (default: "
                        "weights.yaml); use with evolve run --set fitness.weights_file=FILE")
    p.add_argument("--run", dest="runs", action="append", metavar="RUN_ID",
                   help="offline: replay only this evolution run (repeatable; default: every "
                        "evolution of the experiment)")
    p.add_argument("--sampler", choices=("tpe", "nsga2", "random"),
                   help="Optuna sampler (default: nsga2 offline, about 5 ms a trial at any study "
                        "size; tpe online, best for few expensive trials)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from common.errors import EvolveError
    from evolve import tuning
    from evolve.config import check_signal

    trials = DEFAULT_TRIALS[args.mode] if args.trials is None else args.trials
    if trials < 1:
        raise EvolveError(f"--trials {trials}: give at least 1")
    cfg = _config(args)
    signals = args.signals or list(cfg.fitness.weights)
    for s in signals:
        check_signal(s, "--signals")
    outcomes = tuning.resolve_objectives(args.objectives)
    name = args.study or f"evolve-{args.mode}"
    settings = {"mode": args.mode, "signals": ",".join(signals),
                "objectives": ",".join(outcomes), "normalise": cfg.fitness.normalise}
    tracker = _tracker(cfg, create=args.mode == "online")
    runs: list[str] = []
    replay = None
    if args.mode == "offline":
        replay = tuning.load_replay(tracker, args.runs, signals, outcomes, cfg.fitness.normalise)
        study = tuning.open_study(args.storage, name, len(outcomes), settings)
        with _bar(trials, args.quiet) as tick:
            tuning.run_offline(study, replay, trials, cfg.seed, tick, args.sampler or "nsga2")
        runs = replay.runs
        evidence = f"{len(replay.blocks)} generations of {len(replay.runs)} evolution(s)"
    else:
        import optuna

        pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
        study = tuning.open_study(args.storage, name, len(outcomes), settings, pruner)
        with _bar(trials, args.quiet) as tick:
            runs = tuning.run_online(study, cfg, signals, outcomes, trials,
                                     lambda: _tracker(cfg, create=True), tick,
                                     args.sampler or "tpe")
        evidence = f"{len(runs)} short evolution(s) of {cfg.generations} generations"
    report(args, study, tracker, signals, outcomes, runs, evidence, replay)
    return 0


def _config(args: argparse.Namespace) -> RunConfig:
    from evolve.config import load_config

    if args.config is None and args.mode == "online":
        return load_config(ONLINE_CONFIG, args.sets)
    return load_config(args.config, args.sets)


def _tracker(cfg: RunConfig, create: bool) -> Tracker:
    from evolve.tracking import Tracker

    return Tracker(cfg.tracking.uri or "", cfg.tracking.experiment or "evolve",
                   cfg.tracking.artifact_location, create=create)


class _bar:
    """A tqdm bar over trials (a no-op when quiet); yields `tick(n)`."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet = total, quiet
        self._bar: Any = None

    def __enter__(self) -> Any:
        if self.quiet:
            return None
        from tqdm.auto import tqdm

        self._bar = tqdm(total=self.total, desc="trials", unit="trial", dynamic_ncols=True)
        return self._bar.update

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


def report(args: argparse.Namespace, study: optuna.Study, tracker: Tracker, signals: list[str],
           outcomes: list[str], runs: list[str], evidence: str, replay: Replay | None = None,
           ) -> None:
    """Write the weights file, log the `tune` run, print the best weights (and Pareto front)."""
    import yaml

    from evolve import tuning
    from evolve.tracking_runs import log_experiment_run

    best = tuning.best_weights(study, signals, replay)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"weights": best.weights,
           "tuned": {"study": study.study_name, "storage": args.storage, "mode": args.mode,
                     "trials": best.trials,
                     "objectives": dict(zip(outcomes, best.values, strict=True)),
                     "evidence": evidence, "runs": runs}}
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    params: dict[str, Any] = {f"weight.{s}": w for s, w in best.weights.items()}
    params.update(mode=args.mode, study=study.study_name, storage=args.storage,
                  objectives=",".join(outcomes), best_trials=len(best.trials),
                  best_trial=best.trials[0], trials=len(study.trials))
    params.update({f"best.{o}": v for o, v in zip(outcomes, best.values, strict=True)})
    tags = {"evolve.tune_study": study.study_name, "evolve.tune_runs": ",".join(runs)}
    hist = {f"objective.{o}": h for o, h in tuning.history(study, outcomes).items()}
    run_id = log_experiment_run(tracker, f"tune-{study.study_name}", "tune", params=params,
                                histories=hist, artifacts=[out], tags=tags)
    where = f"{run_id} in experiment {tracker.experiment!r} of {tracker.uri}"
    _print(study, best, outcomes, signals, out, where, args.storage, evidence)


def _print(study: Any, best: Any, outcomes: list[str], signals: list[str], out: Path, where: str,
           storage: str, evidence: str, file: Any = None) -> None:
    from evolve import tuning

    f = file or sys.stdout
    vals = ", ".join(f"{o} {v:+.3f}" for o, v in zip(outcomes, best.values, strict=True))
    print(f"\nstudy {study.study_name!r}: {len(study.trials)} trials, evidence: {evidence}", file=f)
    src = (f"trial {best.trials[0]}" if len(best.trials) == 1 else
           f"mean of the {len(best.trials)} trials tied at the best score")
    print(f"best weights ({src}): {vals}", file=f)
    width = max(len(s) for s in signals)
    for s, w in sorted(best.weights.items(), key=lambda kv: -kv[1]):
        print(f"  {s:<{width}}  {w:.3f}", file=f)
    if len(outcomes) > 1:
        print(f"\nPareto front ({len(study.best_trials)} trials; objectives {', '.join(outcomes)}):",
              file=f)
        for t in sorted(study.best_trials, key=lambda t: tuple(-v for v in t.values)):
            top = sorted(tuning.weights_of(t, signals).items(), key=lambda kv: -kv[1])[:3]
            print(f"  trial {t.number:>5}  " + "  ".join(f"{v:+.3f}" for v in t.values)
                  + "   " + ", ".join(f"{s} {w:.2f}" for s, w in top), file=f)
    print(f"\nweights written to {out}; use them with:\n"
          f"  evolve run --set fitness.weights_file={out}", file=f)
    print(f"MLflow: tune run {where}", file=f)
    print(f"dashboard: optuna-dashboard {storage}  (then http://127.0.0.1:8080/dashboard/; "
          "pip install -e '.[dashboard]' if missing)", file=f)
