"""Experiments that test the project's claims end to end, each one command writing a report.

`EXPERIMENTS` maps the name `evolve experiment NAME` takes to the module that implements it. An
experiment module defines `HELP` (one line), `add_arguments(parser)` and `main(args) -> int`, and
imports its heavy dependencies (torch, mlflow) inside functions so `evolve --help` stays fast.
Adding an experiment is one module plus one line here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXPERIMENTS: dict[str, str] = {
    "grokking": "evolve.experiments.grokking",
    "selection": "evolve.experiments.selection",
}


def load(name: str) -> ModuleType:
    """The module of experiment `name` (a `KeyError` for an unknown name)."""
    return importlib.import_module(EXPERIMENTS[name])
