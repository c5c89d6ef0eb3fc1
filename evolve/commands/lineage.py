"""`evolve lineage RUN_OR_LEARNER`: the ancestry of a learner, or the whole family tree of an
evolution run, read back from the MLflow store (generation, learner, operator, parents, fitness,
decisions), oldest first."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from evolve.tracking_flags import tracking_args, tracking_of_args

HELP = "print a learner's ancestry (or an evolution's whole family tree) from the MLflow store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="RUN_OR_LEARNER",
                   help="a learner id (g2-l3), a learner's run id, or an evolution's run id "
                        "(whole tree)")
    p.add_argument("--run", metavar="RUN_ID", default=None,
                   help="evolution run to look a learner id up in (default: the latest evolution "
                        "of the experiment)")
    p.add_argument("--json", action="store_true",
                   help="print {evolution, learners: [{generation, learner, operator, parents, "
                        "fitness, failed, decisions, run_id}]} as one JSON object")
    tracking_args(p)


def _fitness(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def main(args: argparse.Namespace) -> int:
    from evolve.tracking import Tracker

    settings = tracking_of_args(args)
    tracker = Tracker(settings["uri"], settings["experiment"], create=False)
    edges = tracker.lineage(args.target, evolution=args.run)
    # records of the evolution the edges came from: the run that holds the first learner
    evolution = args.run
    if evolution is None:
        evolution = tracker.evolution_of(args.target)
    records = {r.learner_id: r for r in tracker.load_records(evolution, curves=False)}
    rows: list[dict[str, Any]] = []
    for e in edges:
        r = records[e.child]
        rows.append({"generation": e.generation, "learner": e.child, "operator": e.operator,
                     "parents": list(e.parents), "fitness": _fitness(r.fitness),
                     "failed": r.failed, "failure": r.failure, "decisions": r.decisions,
                     "run_id": r.run_id})
    if args.json:
        print(json.dumps({"evolution": evolution, "learners": rows}))
        return 0
    print(f"evolution run {evolution}  (experiment {settings['experiment']!r}, "
          f"{settings['uri']})")
    head = f"{'gen':>3}  {'learner':<9} {'operator':<9} {'parents':<17} {'fitness':>9}  decisions"
    print(head)
    print("-" * len(head))
    for row in rows:
        fit = "FAILED" if row["failed"] else (
            "-" if row["fitness"] is None else f"{row['fitness']:.4g}")
        notes = "; ".join(row["decisions"])
        if row["failed"] and row["failure"]:
            notes = f"{notes}; {row['failure']}" if notes else row["failure"]
        print(f"{row['generation']:>3}  {row['learner']:<9} {row['operator']:<9} "
              f"{' x '.join(row['parents']) or '-':<17} {fit:>9}  {notes}".rstrip())
    return 0
