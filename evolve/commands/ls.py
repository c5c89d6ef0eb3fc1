"""`evolve ls`: every registered unit of extension, one per line with its description."""

from __future__ import annotations

import argparse
import json

HELP = "list task families, curricula, signals and selection/variation operators"


def registries() -> dict[str, object]:
    """The registries `evolve ls` shows, keyed as in `evolve ls --json`."""
    import curricula
    import fitness
    from evolve.operators.registry import SELECTION, VARIATION

    return {
        "task_families": curricula.FAMILIES,
        "curricula": curricula.STRATEGIES,
        "signals": fitness.SIGNALS,
        "selection": SELECTION,
        "variation": VARIATION,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print {kind: [names]} as one JSON object")


def main(args: argparse.Namespace) -> int:
    regs = registries()
    if args.json:
        print(json.dumps({k: r.names() for k, r in regs.items()}))  # type: ignore[attr-defined]
        return 0
    for kind, reg in regs.items():
        print(f"{kind}:")
        entries = reg.entries()  # type: ignore[attr-defined]
        width = max((len(e.name) for e in entries), default=0)
        for e in entries:
            print(f"  {e.name:<{width}}  {e.description}")
    return 0
