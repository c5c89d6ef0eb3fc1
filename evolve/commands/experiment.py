"""`evolve experiment NAME`: run one of the experiments in `evolve.experiments.EXPERIMENTS` and
write its report (markdown, JSON and plots) under `--out`.

Each experiment is a subcommand with its own flags (`evolve experiment grokking --help`).
"""

from __future__ import annotations

import argparse

from evolve.experiments import EXPERIMENTS, load

HELP = "run a built-in experiment (grokking, ...) and write its report and plots"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    for name in EXPERIMENTS:
        mod = load(name)
        q = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(q)
        q.set_defaults(_experiment_main=mod.main)


def main(args: argparse.Namespace) -> int:
    run = getattr(args, "_experiment_main", None)
    if run is None:
        from common.errors import EvolveError

        raise EvolveError(f"name an experiment: evolve experiment {{{','.join(EXPERIMENTS)}}} "
                          "[--help]")
    return int(run(args) or 0)
