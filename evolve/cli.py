"""The `evolve` command line: one module per subcommand under `evolve/commands/`.

Each command module defines `HELP` (one line), `add_arguments(parser)` and `main(args) -> int`.
Modules import heavy dependencies (torch, mlflow, optuna, ray) inside `main`, so `evolve --help`
and `evolve ls` stay fast. Bad input anywhere becomes one line plus the subcommand's usage, exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType

from common.errors import EvolveError
from common.registry import UnknownNameError

# Order is the order `evolve --help` lists them.
COMMANDS = ("run", "report", "compare", "score", "ls", "tune", "lineage", "replay", "ui", "experiment",
            "base")


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"evolve.commands.{name}")
    except ModuleNotFoundError as exc:  # a command not built yet must not break the others
        if exc.name == f"evolve.commands.{name}":
            return None
        raise


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, tuple[ModuleType, argparse.ArgumentParser]]]:
    parser = argparse.ArgumentParser(
        prog="evolve",
        description="Breed better learners: evolve a population of LoRA learners by how they learn.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    table: dict[str, tuple[ModuleType, argparse.ArgumentParser]] = {}
    for name in COMMANDS:
        mod = _load(name)
        if mod is None:
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        table[name] = (mod, p)
    return parser, table


def main(argv: list[str] | None = None) -> int:
    # Torch's spin-waiting OpenMP threads collapse ~65x on a busy machine (docs/measurements.md):
    # the passive policy, set here once for every command, before any of them imports torch.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser, table = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    mod, sub = table[args.command]
    try:
        return int(mod.main(args) or 0)
    except (EvolveError, UnknownNameError, FileNotFoundError, ValueError) as exc:
        if os.environ.get("EVOLVE_DEBUG"):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"evolve {args.command}: error: {msg}", file=sys.stderr)
        print(sub.format_usage().strip(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"evolve {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
