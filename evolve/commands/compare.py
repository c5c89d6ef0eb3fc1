"""`evolve compare RUN RUN ...`: evolutions side by side (config differences, fitness and the
outcome per generation, champions) as tables on stdout and one figure."""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from evolve.tracking_flags import tracking_args, tracking_of_args

if TYPE_CHECKING:
    from evolve.compare import Evolution
    from evolve.tracking_store import Store

HELP = ("put two or more evolutions side by side: config differences, fitness and outcome per "
        "generation, champions (tables and a plot)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="evolution run ids (two or more)")
    p.add_argument("--plot", metavar="FILE", default="compare.png",
                   help="where to write the figure (default compare.png; '' for none)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON instead")
    tracking_args(p)


def load(tracker: Store, run_id: str) -> Evolution:
    """One evolution from the store as `evolve.compare.Evolution`."""
    from evolve.compare import Evolution

    run, history = tracker.run_and_history(run_id)
    champs: dict[int, tuple[str, float | None]] = {}
    for r in tracker.load_records(run_id, curves=False):
        if r.failed or r.fitness is None or not math.isfinite(r.fitness):
            continue
        if r.generation not in champs or r.fitness > (champs[r.generation][1] or -math.inf):
            champs[r.generation] = (r.learner_id, r.fitness)
    return Evolution(run_id=run_id, name=run.info.run_name or "", params=dict(run.data.params),
                     history=history, champions=champs,
                     model=run.data.tags.get("evolve.champion_model", ""))


def main(args: argparse.Namespace) -> int:
    from common.errors import EvolveError
    from evolve import compare
    from evolve.tracking import Tracker

    if len(args.runs) < 2:
        raise EvolveError("compare needs two or more RUN ids (evolution run ids from `evolve run`)")
    bad = [r for r in args.runs if not re.fullmatch(r"[0-9a-f]{32}", r)]
    if bad:
        raise EvolveError(f"RUN {bad[0]!r} is not a run id; pass evolution run ids (32 hex "
                          "digits, printed by `evolve run`)")
    settings = tracking_of_args(args)
    tracker = Tracker(settings["uri"], settings["experiment"], create=False)
    runs = [load(tracker, tracker.evolution_of(r)) for r in args.runs]
    if args.plot:
        compare.plot(runs, Path(args.plot))
    if args.json:
        head, rows = compare.per_generation(runs)
        print(json.dumps({"runs": [{"run_id": r.run_id, "name": r.name, "model": r.model}
                                   for r in runs],
                          "config_differences": dict(compare.config_differences(runs)),
                          "per_generation": [dict(zip(head, row, strict=True)) for row in rows],
                          "plot": args.plot or None}, indent=1))
        return 0
    print(compare.report(runs))
    if args.plot:
        print(f"\nplot: {args.plot}")
    return 0
