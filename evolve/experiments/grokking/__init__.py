"""`evolve experiment grokking`: grokking on `a+b mod p`, watched, warned of, swept and steered.

Five parts, one report (`docs/results/grokking/`):
1. the watched run (`single`): one run probed throughout; milestones, the project's detector, its
   confidence-vs-knowledge curve (self-confidence = probability of the model's own answer);
2. the latent Dunning-Kruger curve of every run (`warning.dunning_kruger`);
3. an early warning (`warning`): rules that read only the past, thresholds fitted on half the runs
   and tested on the other half, against the baselines;
4. hysteresis (`hysteresis`): weight decay swept up then down with warm starts;
5. a meta-optimiser (`meta`): weight decay steered by the confidence gap vs fixed optimisers.
The studies and the watched run use the small setting (`setting.SMALL`), one torch thread each;
`--canonical` watches the p 97 run of the grokking papers instead (10 min on the shared
box), `--quick` shrinks every study (fewer seeds, shorter budgets).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from evolve.experiments.grokking.setting import SMALL, GrokConfig

HELP = ("grokking on a+b mod p: self-confidence, a causal early warning tested out of sample, "
        "hysteresis of a weight-decay sweep, a gap-steered weight decay; report and plots")
KIND = "experiment.grokking"   # the run's `evolve.kind` tag in MLflow
EXPERIMENT = "evolve-experiments"   # default MLflow experiment (--set tracking.experiment=...)
PARTS = ("warning", "hysteresis", "meta")

__all__ = ["EXPERIMENT", "HELP", "KIND", "GrokConfig", "add_arguments", "main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = GrokConfig()
    p.add_argument("--out", type=Path, default=Path("docs/results/grokking"),
                   help="directory for report.md, report.json and the PNGs "
                        "(default docs/results/grokking)")
    p.add_argument("--quick", action="store_true",
                   help="every study small (2 seeds, short budgets): a few minutes")
    p.add_argument("--canonical", action="store_true",
                   help=f"watch the canonical run (p {d.p}, embedding {d.embed_dim}, hidden "
                        f"{d.hidden}, lr {d.lr}, {d.train_fraction:.0%} of the table) instead of "
                        f"the small one (p {SMALL['p']}); 100x the compute per step")
    p.add_argument("--seed", type=int, default=d.seed,
                   help=f"seed of the watched run's split and init (default {d.seed})")
    p.add_argument("--steps", type=int, default=None,
                   help=f"watched run: training steps at most (default {SMALL['steps']}; canonical "
                        f"{d.steps}); stops once validation accuracy held {d.stop_accuracy}")
    p.add_argument("--train-fraction", type=float, default=None,
                   help=f"watched run: fraction of the p*p table trained on (default "
                        f"{SMALL['train_fraction']}; canonical {d.train_fraction})")
    p.add_argument("--weight-decay", type=float, default=None,
                   help=f"watched run: AdamW weight decay (default {d.weight_decay})")
    p.add_argument("--probe-every", type=int, default=None,
                   help=f"watched run: steps between probes (default {SMALL['probe_every']}; "
                        f"canonical {d.probe_every})")
    p.add_argument("--skip", action="append", default=[], choices=PARTS,
                   help="leave a study out (repeatable): warning, hysteresis, meta")
    p.add_argument("--no-mlflow", action="store_true",
                   help=f"do not log the run to MLflow (default: log it to the tracking store, "
                        f"experiment {EXPERIMENT!r})")
    from evolve.tracking_flags import tracking_args

    tracking_args(p)


FLAGS = ("steps", "train_fraction", "weight_decay", "probe_every")


def config_of(args: argparse.Namespace) -> GrokConfig:
    """The small setting (or the canonical defaults with --canonical) < explicit flags."""
    values: dict[str, Any] = {} if args.canonical else dict(SMALL)
    values["seed"] = args.seed
    for flag in FLAGS:
        if getattr(args, flag) is not None:
            values[flag] = getattr(args, flag)
    return GrokConfig(**values)


def _skipped(part: str) -> dict[str, Any]:
    return {"skipped": f"--skip {part}"}


def main(args: argparse.Namespace) -> int:
    from evolve.experiments.grokking import hysteresis, meta, single, warning, writer

    cfg = config_of(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if not args.no_mlflow:   # refuse an --out the run could not log, before any training
        _check_out(args, out)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    load0 = round(os.getloadavg()[0], 1)
    log(f"grokking: watched run a+b mod {cfg.p}, fraction {cfg.train_fraction}, up to {cfg.steps} "
        f"steps, seed {cfg.seed}; studies {'quick' if args.quick else 'full'} -> {out}")
    run = single.train(cfg, log)
    s = single.analyse(run, cfg)
    runs = warning.run_all(args.quick, log) if "warning" not in args.skip else []
    parts: dict[str, Any] = {
        "runs": runs,
        "early_warning": warning.evaluate(runs) if runs else {},
        "dunning_kruger": warning.dunning_kruger(runs),
        "hysteresis": (hysteresis.run(args.quick, log) if "hysteresis" not in args.skip
                       else _skipped("hysteresis")),
        "meta": meta.run(args.quick, log) if "meta" not in args.skip else _skipped("meta"),
    }
    parts["load_average"] = [load0, round(os.getloadavg()[0], 1)]
    doc = writer.write(out, cfg, _command_of(args), run, s, parts)
    if not args.no_mlflow:
        _log_mlflow(args, cfg, run, doc, out, log)
    print(f"memorised at step {s['memorised_step']}; peak confidence gap at {s['peak_gap_step']}; "
          f"onset at {s['onset_step']}; detector at {s['detector_step']}; report {out / 'report.md'}")
    return 0


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    from evolve.tracking_flags import tracking_of_args

    settings = tracking_of_args(args)
    if not args.config and not any(x.startswith("tracking.experiment=") for x in args.sets):
        settings["experiment"] = EXPERIMENT   # not among the evolutions
    return settings


def _check_out(args: argparse.Namespace, out: Path) -> None:
    """Open the store now (as the end will) and refuse an --out that holds its artifact
    location: logging it would copy the directory into itself, after all the compute."""
    from evolve.tracking_runs import check_not_inside
    from evolve.tracking_store import Store

    s = _settings(args)
    check_not_inside(Store(s["uri"], s["experiment"], s.get("artifact_location")), [out])


def _log_mlflow(args: argparse.Namespace, cfg: GrokConfig, run: dict[str, Any],
                doc: dict[str, Any], out: Path, log: Any) -> None:
    from evolve.experiments.report import log_run

    settings = _settings(args)
    h = run["history"]
    series = {k: list(zip(h["step"], h[k], strict=True)) for k in
              ("train_acc", "val_acc", "val_conf", "val_self", "alpha", "weight_norm")}
    series["confidence_gap"] = list(zip(h["step"], doc["history"]["confidence_gap"], strict=True))
    summary = {k: v for k, v in doc["summary"].items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for rule, r in doc["early_warning"].items():
        if isinstance(r.get("lead_time_median"), (int, float)):
            summary[f"warning.{rule}.lead_time_median"] = r["lead_time_median"]
    hy = doc["hysteresis"]
    if isinstance(hy.get("loop_area"), (int, float)):
        summary["hysteresis.loop_area"] = hy["loop_area"]
    run_id = log_run(settings, f"grokking-p{cfg.p}-seed{cfg.seed}", KIND, dataclasses.asdict(cfg),
                     series, summary, out)
    log(f"logged to MLflow {settings['uri']} experiment {settings['experiment']!r} run {run_id}")


def _command_of(args: argparse.Namespace) -> str:
    parts = ["evolve experiment grokking"]
    if args.quick:
        parts.append("--quick")
    if args.canonical:
        parts.append("--canonical")
    parts.append(f"--seed {args.seed} --out {args.out}")
    for flag in FLAGS:
        if getattr(args, flag) is not None:
            parts.append(f"--{flag.replace('_', '-')} {getattr(args, flag)}")
    parts += [f"--skip {x}" for x in args.skip]
    return " ".join(parts)
