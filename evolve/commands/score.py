"""`evolve score FILE`: every fitness signal of recorded trajectories, with its noise.

Reads our own trajectory files (`--format evolve`, written by `evolve run`) or the checkpoint
format of another tool's meta-learning run (`--format adaptible`, computed from the per-checkpoint
id lists alone). A spread between learners that is smaller than its noise is flagged.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

HELP = "score recorded trajectories: every fitness signal per learner, with noise intervals"

COLUMNS = (  # (signal, header, format)
    ("meta_learning_cumulative", "meta cum", "+.3f"),
    ("meta_learning_window", "meta win", "+.3f"),
    ("forgetting_half_life", "half-life", ".0f"),
    ("survival_at_end", "surv end", ".3f"),
    ("oscillation", "oscill", ".3f"),
    ("stuck", "stuck", ".0f"),
    ("final_accuracy", "final acc", ".3f"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", type=Path, help="trajectory JSON file")
    p.add_argument("--format", choices=("adaptible", "evolve"), default=None,
                   help="file format (default: detected from the file)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object keyed by learner id (the seed for adaptible)")
    p.add_argument("--boot", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for the meta-learning intervals (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")


def _fmt(v: Any, spec: str, none: str = "-") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return none
    return format(v, spec)


def table(report: dict[str, dict[str, Any]]) -> str:
    """The readable table: one row per learner, then the spread-vs-noise lines."""
    head = ["learner"] + [h for _, h, _ in COLUMNS]
    rows = []
    for lid, r in report.items():
        cells = [lid]
        for name, _, spec in COLUMNS:
            none = "never" if name == "forgetting_half_life" else "-"
            cell = _fmt(r[name], spec, none)
            iv = r["intervals"].get(name)
            if iv and name.startswith("meta"):
                cell += f" [{iv[0]:+.3f},{iv[1]:+.3f}]"
            cells.append(cell)
        rows.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    lines = ["  ".join(str(c).rjust(w) if j else str(c).ljust(w)
                       for j, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in [head, *rows]]
    lines.append("")
    lines.append("intervals: 95% (bootstrap over items within windows; Wilson for rates). "
                 "half-life 'never' = survival never fell to 0.5")
    first = next(iter(report.values()), {})
    for name, s in first.get("spread", {}).items():
        if s["spread"] is None:
            lines.append(f"{name}: spread n/a (fewer than 2 learners with an interval)")
            continue
        flag = "WITHIN NOISE" if s["within_noise"] else "larger than noise"
        lines.append(f"{name}: spread {s['spread']:.3f} vs noise {s['noise']:.3f} -> {flag}")
    lines.append("")
    for lid, r in report.items():
        ranked = sorted(r["transitions"].items(), key=lambda kv: (-kv[1], kv[0]))
        if ranked and ranked[0][1] > 0:   # the top 3 counts, ties included (at most 8 items)
            cut = sorted({n for _, n in ranked}, reverse=True)[:3][-1]
            top = [(i, n) for i, n in ranked if n >= max(cut, 1)][:8]
            lines.append(f"{lid}: most transitions: " + ", ".join(f"{i} {n}" for i, n in top))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from common.errors import EvolveError
    from fitness.formats import load
    from fitness.report import score

    if args.boot < 1:
        raise EvolveError(f"--boot {args.boot}: pass at least 1 bootstrap resample (1000 is usual)")
    trajs = load(args.file, args.format)
    report = score(trajs, n_boot=args.boot, seed=args.seed)
    if args.json:
        print(json.dumps(report, allow_nan=False))
    else:
        print(table(report))
    return 0
