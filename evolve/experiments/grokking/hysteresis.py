"""Hysteresis, measured: sweep AdamW's weight decay up and then back down with warm starts.

At each level of the sweep the same model (and optimiser state) trains `segment` more steps; the
branch value at a level is the mean validation accuracy over the segment's last 3 probes. The up
branch visits the levels in increasing order, the down branch then in decreasing order, the top
level once (shared by both). The loop is `fitness.signals.branch_area` over log10(weight decay):
the signed area between the branches (positive: the down branch generalises more at the same decay).
A loop exists when the interval of the area over seeds excludes 0.

The down branch has trained longer at each level than the up branch. A time control separates
path from time: a fresh run at the lowest decay for as many steps as the whole sweep; if it too
ends generalised, the area measures elapsed time, not the path through the control parameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from evolve.experiments.grokking.setting import SMALL, GrokConfig, Trainer
from evolve.experiments.paired import t_interval


def plan(quick: bool) -> dict[str, Any]:
    if quick:
        return {"levels": [0.1, 0.3, 1.0, 3.0], "segment": 300, "seeds": [0, 1],
                "train_fraction": 0.5}
    return {"levels": [0.1, 0.2, 0.5, 1.0, 2.0, 4.0], "segment": 500, "seeds": [0, 1, 2, 3, 4],
            "train_fraction": 0.5}


def _tail(tr: Trainer, k: int = 3) -> float:
    vals = tr.hist["val_acc"][-k:]
    return sum(vals) / len(vals)


def sweep(levels: list[float], segment: int, seed: int, train_fraction: float) -> dict[str, Any]:
    """One seed: the up and down branches (val acc per level) and the time control."""
    cfg = GrokConfig(**dict(SMALL, train_fraction=train_fraction, weight_decay=levels[0], seed=seed,
                            probe_every=50, alpha_every=0))
    tr = Trainer(cfg)
    up, down = [], []
    for wd in levels:
        tr.set_hparams(weight_decay=wd)
        tr.advance(segment)
        up.append(_tail(tr))
    down_levels = levels[::-1]
    down.append(up[-1])                                   # the top level is the turning point
    for wd in down_levels[1:]:
        tr.set_hparams(weight_decay=wd)
        tr.advance(segment)
        down.append(_tail(tr))
    down = down[::-1]                                      # aligned with `levels`
    total = tr.step
    ctrl = Trainer(GrokConfig(**dict(SMALL, train_fraction=train_fraction,
                                     weight_decay=levels[0], seed=seed, probe_every=50,
                                     alpha_every=0)))
    ctrl.advance(total)
    from fitness.signals import branch_area

    x = [math.log10(w) for w in levels]
    return {"seed": seed, "up": up, "down": down, "area": branch_area(x, up, down),
            "time_control_val_acc": _tail(ctrl), "steps": total,
            "history": {k: tr.hist[k] for k in ("step", "val_acc", "train_acc", "weight_decay")}}


def run(quick: bool, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    p = plan(quick)
    rows = []
    for seed in p["seeds"]:
        rows.append(sweep(p["levels"], p["segment"], seed, p["train_fraction"]))
        if log:
            log(f"hysteresis seed {seed}: area {rows[-1]['area']:.3f} "
                f"(up {[round(v, 2) for v in rows[-1]['up']]}, "
                f"down {[round(v, 2) for v in rows[-1]['down']]})")
    ti = t_interval([r["area"] for r in rows])
    ctl = t_interval([r["time_control_val_acc"] for r in rows])
    lo, hi = ti["lo"], ti["hi"]
    exists = lo is not None and hi is not None and (lo > 0 or hi < 0)
    return {"loop_area": ti["mean"], "ci": [lo, hi], "seeds": p["seeds"], "per_seed": rows,
            "levels": p["levels"], "segment": p["segment"], "train_fraction": p["train_fraction"],
            "x": "log10(weight decay)", "y": "validation accuracy (mean of the last 3 probes)",
            "loop_exists": exists, "time_control_val_acc": ctl["mean"],
            "time_control_ci": [ctl["lo"], ctl["hi"]]}
