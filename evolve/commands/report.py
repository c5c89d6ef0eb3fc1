"""`evolve report [RUN]`: one self-contained HTML page for an evolution, written to a file and
logged to the evolution run as `report.html` (its description then links it)."""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from evolve.tracking_flags import tracking_args, tracking_of_args

if TYPE_CHECKING:
    from evolve.report_page import EvolutionData
    from evolve.tracking import Tracker

HELP = ("write one HTML page for an evolution (champion, fitness and outcome per generation, "
        "selection response, signals, family tree, champion's curves) and log it to the run")
UI = "http://127.0.0.1:5000"   # where `evolve ui` serves by default


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", metavar="RUN",
                   help="evolution (or learner) run id; default: the latest evolution")
    p.add_argument("--out", metavar="FILE",
                   help="where to write the page (default: report-<run id>.html here)")
    p.add_argument("--no-log", action="store_true",
                   help="do not log the page to the run (default: logged as report.html)")
    tracking_args(p)


def gather(tracker: Tracker, run_id: str) -> EvolutionData:
    """The evolution's run, metric histories and learners, as `report_page.EvolutionData`."""
    from evolve import tracking_view as view
    from evolve.report_page import EvolutionData

    run, history = tracker.run_and_history(run_id)
    exp = run.info.experiment_id
    links = {"evolution in MLflow (evolve ui)": UI + "/" + view.run_route(exp, run_id),
             "family tree in MLflow": UI + "/" + view.run_route(exp, run_id, "plots/lineage.html")}
    return EvolutionData(run_id=run_id, name=run.info.run_name or run_id,
                         experiment=tracker.experiment, status=run.info.status,
                         params=dict(run.data.params), tags=dict(run.data.tags), history=history,
                         records=tracker.load_records(run_id), links=links)


def write_report(tracker: Tracker, run_id: str, out: Path | None = None, log: bool = True) -> Path:
    """Render the page of evolution `run_id` to `out` (default report-<run id>.html) and, with
    `log`, log it to the run as `report.html` and relink the run's description."""
    from evolve.report_page import render

    page = render(gather(tracker, run_id))
    out = Path(out) if out else Path(f"report-{run_id[:8]}.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    if log:
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copyfile(out, Path(tmp) / "report.html")
            tracker.client.log_artifact(run_id, str(Path(tmp) / "report.html"))
        tracker.describe_evolution(run_id)
    return out


def main(args: argparse.Namespace) -> int:
    from common.errors import EvolveError
    from evolve.tracking import Tracker

    settings = tracking_of_args(args)
    tracker = Tracker(settings["uri"], settings["experiment"], create=False)
    if args.run and not re.fullmatch(r"[0-9a-f]{32}", args.run):
        raise EvolveError(f"RUN {args.run!r} is not a run id; pass the evolution's run id "
                          "(32 hex digits, printed by `evolve run`) or none for the latest")
    run_id = tracker.evolution_of(args.run) if args.run else tracker.latest_evolution()
    out = write_report(tracker, run_id, Path(args.out) if args.out else None, not args.no_log)
    print(f"report of evolution {run_id}: {out}" + ("" if args.no_log else
                                                     " (logged to the run as report.html)"))
    return 0
