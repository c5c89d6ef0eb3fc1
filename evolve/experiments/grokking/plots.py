"""The grokking report's plots, one or more per part (matplotlib, Agg, imported when drawing)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from evolve.experiments.report import _plt, _save, line_plot, loop_plot


def single(out: Path, run: dict[str, Any], s: dict[str, Any]) -> list[Path]:
    """accuracy.png (with self-confidence), confidence_knowledge.png, alpha.png of the watched run."""
    h = run["history"]
    marks = {"train acc 100%": s["memorised_step"], "onset (val 50%)": s["onset_step"],
             "peak confidence gap": s["peak_gap_step"], "detector fired": s["detector_step"]}
    acc = line_plot(out / "accuracy.png", h["step"],
                    {"train accuracy": h["train_acc"], "validation accuracy": h["val_acc"],
                     "validation self-confidence": h["val_self"],
                     "validation P(true answer)": h["val_conf"]},
                    title="Grokking: accuracy and confidence over training steps",
                    xlabel="step (full batch)", ylabel="accuracy / mean probability",
                    marks=marks, ylim=(-0.02, 1.02))
    loop = loop_plot(out / "confidence_knowledge.png",
                     {"self-confidence (own answer)": (h["val_acc"], h["val_self"]),
                      "P(true answer)": (h["val_acc"], h["val_conf"])},
                     h["step"], title="Confidence vs knowledge (validation set, watched run)",
                     xlabel="knowledge = validation accuracy", ylabel="mean confidence")
    series = {"mean alpha": h["alpha"]}
    series.update({f"alpha {k}": v for k, v in run["layer_alpha"].items()})
    alpha = line_plot(out / "alpha.png", h["step"], series,
                      title="weightwatcher layer alpha over steps (2 = the claimed well-trained edge)",
                      xlabel="step", ylabel="power-law exponent alpha", marks=marks, hline=2.0)
    return [acc, loop, alpha]


def dunning_kruger(out: Path, runs: list[dict[str, Any]]) -> Path:
    """One confidence-vs-knowledge curve per early-warning run, its gap peak marked."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=110)
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="y = x (calibrated)")
    for i, r in enumerate(runs):
        h = r["history"]
        c = "C0" if r["onset"] is not None else "C3"
        ax.plot(h["val_acc"], h["val_self"], color=c, lw=0.8, alpha=0.5,
                label=None if i else "a run (blue: groks, red: never)")
        gap = [s - a for s, a in zip(h["val_self"], h["val_acc"], strict=True)]
        k = max(range(len(gap)), key=lambda j: gap[j])
        ax.scatter([h["val_acc"][k]], [h["val_self"][k]], color=c, s=12, zorder=3)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("knowledge = validation accuracy")
    ax.set_ylabel("self-confidence (mean max probability)")
    ax.set_title("Confidence vs knowledge, every run (dot: peak gap)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, out / "dunning_kruger.png")


def early_warning(out: Path, runs: list[dict[str, Any]], rules: dict[str, Any]) -> Path:
    """Alarm step against onset step on the test runs, one panel per rule."""
    plt = _plt()
    names = list(rules)
    cols = 3
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.6 * rows), dpi=100, squeeze=False)
    onset = {r["id"]: r["onset"] for r in runs}
    top = max([o for o in onset.values() if o is not None] or [1])
    for ax, name in zip(axes.flat, names, strict=False):
        res = rules[name]
        pts = [(onset[i], a) for i, a in res["alarms"].items() if onset[i] is not None and a is not None]
        ax.plot([0, top], [0, top], color="0.6", ls=":", lw=1)
        if pts:
            ax.scatter(*zip(*pts, strict=True), s=14)
        ax.set_title(f"{name}\nlead {res['lead_time_median']}, FA {res['false_alarm_rate']}",
                     fontsize=8)
        ax.set_xlabel("onset step", fontsize=8)
        ax.set_ylabel("alarm step", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    return _save(fig, out / "early_warning.png")


def hysteresis(out: Path, hy: dict[str, Any]) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    x = [math.log10(w) for w in hy["levels"]]
    for i, r in enumerate(hy["per_seed"]):
        ax.plot(x, r["up"], color="C0", marker=">", lw=1, alpha=0.7, label=None if i else "up")
        ax.plot(x, r["down"], color="C1", marker="<", lw=1, alpha=0.7, label=None if i else "down")
    ax.set_xlabel("log10(weight decay)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"Weight-decay sweep up then down (warm starts): area {hy['loop_area']:.3f}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "hysteresis.png")


def meta_optimizer(out: Path, meta: dict[str, Any]) -> Path:
    plt = _plt()
    arms = meta["arms"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    names = list(arms)
    budget = meta["plan"]["budget"]
    for i, n in enumerate(names):
        a = arms[n]
        ts = [budget * 1.05 if t is None else t for t in a["times"]]
        ax.scatter([i] * len(ts), ts, s=12, color="C0")
        m = a["time_to_generalise_median"]
        if m is not None and math.isfinite(m):
            ax.scatter([i], [m], marker="_", s=300, color="C3")
    ax.axhline(budget, color="0.5", ls=":", lw=1)
    ax.set_xticks(range(len(names)), names, rotation=35, fontsize=7, ha="right")
    ax.set_ylabel("steps to val acc >= 0.95 (above the line: not reached)")
    ax.set_title("Time to generalise per arm (red: median)")
    for name, tr in meta["traces"].items():
        bx.plot(tr["step"], tr["weight_decay"], label=f"{name}: weight decay")
        bx.plot(tr["step"], tr["val_acc"], ls="--", label=f"{name}: val acc")
    bx.set_xlabel("step")
    bx.set_title("First seed: weight decay and validation accuracy")
    bx.legend(fontsize=7)
    bx.grid(alpha=0.3)
    return _save(fig, out / "meta_optimizer.png")
