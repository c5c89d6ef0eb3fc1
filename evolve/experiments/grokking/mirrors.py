"""How much of a commutative op's holdout accuracy is commutativity: per learner, holdout accuracy on
the held-out cells whose mirror (a∘b held out, b∘a trained) was trained, on the diagonal (a∘a) and
on the rest, read from a run's `trajectories_g<G>.json` (in `.evolve_state/<run>/` and in the
evolution run's MLflow artifacts under `trajectories/`).

    python -m evolve.experiments.grokking.mirrors .evolve_state/RUN/trajectories_g0.json [--last 8]

A learner that only learnt that a+b = b+a gets the mirrored cells right and the rest at chance; a
learner that generalised gets the rest right too. Item ids are the modular family's
(`modadd_31_013_004`); other ids count as "rest".
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

GROUPS = ("mirror_trained", "diagonal", "rest")


def mirror(item_id: str) -> str | None:
    """`modadd_31_013_004` -> `modadd_31_004_013`; None for ids that are not modular cells."""
    from curricula.families.modular import cell_id, parse_cell_id

    cell = parse_cell_id(item_id)
    if cell is None:
        return None
    op, p, a, b = cell
    return cell_id(op, p, b, a)


def split(traj: dict[str, Any], last: int = 8) -> dict[str, Any]:
    """One learner: per group, its holdout cells, their mean accuracy over the last `last`
    checkpoints and the best single-checkpoint accuracy over the run."""
    trained = set(traj["items"])
    ids: list[str] = traj["holdout"]["ids"]
    rows: list[list[bool]] = traj["holdout"]["correct"]      # [K][H]
    group = {}
    for j, i in enumerate(ids):
        m = mirror(i)
        group[j] = "diagonal" if m == i else "mirror_trained" if m in trained else "rest"
    out: dict[str, Any] = {"learner": traj["learner_id"], "checkpoints": len(rows)}
    for g in GROUPS:
        js = [j for j in range(len(ids)) if group[j] == g]
        acc = [sum(r[j] for j in js) / len(js) for r in rows] if js and rows else []
        tail = acc[-last:]
        out[g] = {"cells": len(js), "last_mean": sum(tail) / len(tail) if tail else None,
                  "best": max(acc) if acc else None}
    return out


def report(path: Path, last: int = 8) -> list[dict[str, Any]]:
    return [split(t, last) for t in json.loads(path.read_text())["trajectories"]]


def lines(results: Sequence[dict[str, Any]], last: int) -> list[str]:
    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    out = [f"holdout accuracy, mean of the last {last} checkpoints (best checkpoint):"]
    for r in results:
        out.append(f"{r['learner']}: " + "; ".join(
            f"{g.replace('_', ' ')} ({r[g]['cells']} cells) {f(r[g]['last_mean'])} "
            f"({f(r[g]['best'])})" for g in GROUPS))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evolve.experiments.grokking.mirrors",
                                 description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("trajectories", type=Path, help="a run's trajectories_g<G>.json")
    ap.add_argument("--last", type=int, default=8, help="checkpoints averaged at the end (8)")
    a = ap.parse_args(argv)
    if not a.trajectories.is_file():
        ap.error(f"{a.trajectories}: no such file; pass .evolve_state/<run>/trajectories_g0.json")
    for line in lines(report(a.trajectories, a.last), a.last):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
