"""An early warning of grokking that uses only the past, fitted on half the runs, tested on the rest.

Runs: seeds x (training fraction, weight decay) in the small setting, so that the onset of the
jump varies several-fold, plus settings that do not generalise within the budget. The onset is
the first probed step with validation accuracy >= 0.5; a run "never groks" if that does not happen
within the budget.

Each rule turns the probe history up to step t into one number (all smoothed by a trailing median
of 3 probes, values relative to a running max use the running max *so far*) and raises its alarm
at the first probe where the number reaches the rule's threshold. A threshold is fitted on the
runs of the even seeds (maximise: share of grokking runs alarmed before their onset minus share
of never-grokking runs alarmed; ties go to fewer false alarms, then to the earlier alarm) and tested on the odd seeds: median
lead time (onset - alarm) with a bootstrap interval, Spearman's rho of alarm step vs onset step,
and the false-alarm rate on the never-grokking runs. The baseline "validation accuracy above twice
chance" has its threshold fixed at 2/p and is not fitted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from evolve.experiments.grokking.setting import SMALL, GrokConfig, Trainer, first_step
from evolve.experiments.grokking.stats import (
    bootstrap_median,
    carry_forward,
    running_extreme,
    spearman,
    trailing_median,
)

ONSET = 0.5   # validation accuracy that marks the jump's onset


def _fall(values: Sequence[float | None], relative: bool = False) -> list[float | None]:
    """How far the (smoothed) series is below its running max so far (a fraction of it if
    `relative`)."""
    s = trailing_median(carry_forward(values))
    top = running_extreme(s)
    out: list[float | None] = []
    for v, m in zip(s, top, strict=True):
        if v is None or m is None:
            out.append(None)
        else:
            out.append((m - v) / m if relative and m > 0 else (m - v))
    return out


def _gap(h: dict[str, list[Any]]) -> list[float]:
    return [s - a for s, a in zip(h["val_self"], h["val_acc"], strict=True)]


def _rise(values: Sequence[float | None]) -> list[float | None]:
    s = trailing_median(carry_forward(values))
    low = running_extreme(s, top=False)
    return [None if v is None or m is None else v - m for v, m in zip(s, low, strict=True)]


# name -> (description, statistic over the history, fitted?). The statistic at probe i may read
# probes 0..i only: a test feeds truncated histories and checks the values do not change.
RULES: dict[str, tuple[str, Callable[[dict[str, list[Any]]], list[float | None]], bool]] = {
    "val_acc_twice_chance": ("baseline: validation accuracy > 2/p (not fitted)",
                             lambda h: list(h["val_acc"]), False),
    "weight_norm_fall": ("baseline: weight norm's fall from its running max, relative",
                         lambda h: _fall(h["weight_norm"], relative=True), True),
    "confidence_gap_fall": ("confidence gap (self-confidence - val acc) below its running max",
                            lambda h: _fall(_gap(h)), True),
    "self_confidence_rise": ("validation self-confidence above its running min",
                             lambda h: _rise(h["val_self"]), True),
    "alpha_fall": ("mean weightwatcher alpha below its running max",
                   lambda h: _fall(h["alpha"]), True),
    "val_loss_fall": ("validation loss's fall from its running max, relative",
                      lambda h: _fall(h["val_loss"], relative=True), True),
}


def grid(quick: bool) -> tuple[list[int], list[tuple[float, float]], list[tuple[float, float]], int]:
    """(seeds, grokking settings, never-grokking settings, step budget), as (fraction, decay)."""
    if quick:
        return [0, 1], [(0.5, 1.0), (0.6, 1.0), (0.7, 1.0)], [(0.4, 1.0)], 1500
    return ([0, 1, 2, 3], [(0.5, 1.0), (0.6, 1.0), (0.7, 1.0), (0.5, 2.0), (0.6, 0.5), (0.7, 0.3)],
            [(0.4, 1.0), (0.6, 0.0)], 3000)


def run_all(quick: bool, log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Every run of the grid: {id, seed, train_fraction, weight_decay, history, onset, ...}."""
    seeds, grok, never, budget = grid(quick)
    runs = []
    for seed in seeds:
        for tf, wd in grok + never:
            cfg = GrokConfig(**dict(SMALL, train_fraction=tf, weight_decay=wd, seed=seed,
                                    steps=budget, probe_every=25, alpha_every=4))
            tr = Trainer(cfg)
            tr.advance(budget, stop_at=0.95)
            h = tr.hist
            run = {"id": f"s{seed}-f{tf}-wd{wd}", "seed": seed, "train_fraction": tf,
                   "weight_decay": wd, "p": cfg.p, "history": h, "budget": budget,
                   "onset": first_step(h, "val_acc", ONSET),
                   "memorised": first_step(h, "train_acc", 0.99),
                   "generalised": first_step(h, "val_acc", 0.95),
                   "seconds": h["seconds"][-1]}
            runs.append(run)
            if log:
                log(f"warning run {run['id']}: onset {run['onset']}, {run['seconds']:.0f}s")
    return runs


def alarm(run: dict[str, Any], rule: str, theta: float) -> int | None:
    """The step of the rule's first alarm in the run (None: it never fired)."""
    h = run["history"]
    stat = RULES[rule][1](h)
    return next((s for s, v in zip(h["step"][1:], stat[1:], strict=True)
                 if v is not None and v >= theta), None)


def _score(runs: Sequence[dict[str, Any]], rule: str, theta: float) -> tuple[float, float, float]:
    """(hit-before-onset rate - false-alarm rate, - false-alarm rate, median lead) of a threshold
    on some runs: compared in that order, so ties go to fewer false alarms, then earlier alarms."""
    grok = [r for r in runs if r["onset"] is not None]
    never = [r for r in runs if r["onset"] is None]
    leads, hits, false = [], 0, 0
    for r in grok:
        a = alarm(r, rule, theta)
        if a is not None and a < r["onset"]:
            hits += 1
            leads.append(r["onset"] - a)
    for r in never:
        false += alarm(r, rule, theta) is not None
    fa = false / len(never) if never else 0.0
    leads.sort()
    return (hits / len(grok) if grok else 0.0) - fa, -fa, (leads[len(leads) // 2] if leads else 0.0)


def fit_threshold(runs: Sequence[dict[str, Any]], rule: str, n: int = 60) -> float:
    """The threshold maximising `_score` over candidates spread over the rule's observed values."""
    vals = sorted({v for r in runs for v in RULES[rule][1](r["history"]) if v is not None})
    if not vals:
        return float("inf")
    cands = [vals[min(len(vals) - 1, round(i * (len(vals) - 1) / (n - 1)))] for i in range(n)]
    return max(sorted(set(cands)), key=lambda t: _score(runs, rule, t))


def evaluate(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per rule: threshold (fitted on even seeds), and on the odd seeds the lead times, their
    median and bootstrap interval, Spearman's rho (alarm vs onset), hit and false-alarm rates."""
    fit = [r for r in runs if r["seed"] % 2 == 0]
    test = [r for r in runs if r["seed"] % 2 == 1]
    out: dict[str, dict[str, Any]] = {}
    for rule, (desc, _, fitted) in RULES.items():
        theta = fit_threshold(fit, rule) if fitted else 2.0 / runs[0]["p"]
        grok = [r for r in test if r["onset"] is not None]
        never = [r for r in test if r["onset"] is None]
        alarms = {r["id"]: alarm(r, rule, theta) for r in test}
        fired = [(r, float(a)) for r in grok if (a := alarms[r["id"]]) is not None]
        leads = [float(r["onset"]) - a for r, a in fired]
        med, ci = bootstrap_median(leads)
        before = sum(lead > 0 for lead in leads)
        out[rule] = {
            "description": desc, "threshold": theta, "fitted": fitted,
            "lead_time_median": med, "lead_time_ci": ci,
            "spearman": spearman([a for _, a in fired], [float(r["onset"]) for r, _ in fired]),
            "false_alarm_rate": (sum(alarms[r["id"]] is not None for r in never) / len(never)
                                 if never else None),
            "hit_rate": before / len(grok) if grok else None,
            "fired_on_grokking": len(fired), "test_grokking": len(grok), "test_never": len(never),
            "alarms": alarms,
            "split": {"fit": [r["id"] for r in fit], "test": [r["id"] for r in test],
                      "rule": "fit on even seeds, test on odd seeds"},
        }
    return out


def dunning_kruger(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run: the step and size of the peak confidence gap, the onset, and which came first."""
    out = []
    for r in runs:
        h = r["history"]
        gap = _gap(h)
        k = max(range(len(gap)), key=lambda i: gap[i])
        out.append({"run": r["id"], "peak_gap_step": h["step"][k], "peak_gap": gap[k],
                    "self_confidence_at_peak": h["val_self"][k], "val_acc_at_peak": h["val_acc"][k],
                    "onset_step": r["onset"],
                    "peak_before_onset": None if r["onset"] is None else h["step"][k] < r["onset"]})
    return out
