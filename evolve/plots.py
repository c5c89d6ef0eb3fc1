"""The pictures logged on every evolution run under `plots/`: fitness per generation, the champions'
signals over checkpoints, and the family tree. matplotlib with the Agg backend (no display).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402

from evolve.lineage_html import FAILED_COLOR, score_range, tree_layout  # noqa: E402
from evolve.records import LearnerRecord  # noqa: E402

MAX_PANELS = 6   # more curve panels than this are unreadable at 11 x 7 in


def _scored(records: list[LearnerRecord]) -> list[LearnerRecord]:
    return [r for r in records if r.scored]


def champions(records: list[LearnerRecord]) -> dict[int, LearnerRecord]:
    """generation -> its best learner that did not fail."""
    out: dict[int, LearnerRecord] = {}
    for r in _scored(records):
        if r.generation not in out or r.fitness > out[r.generation].fitness:  # type: ignore[operator]
            out[r.generation] = r
    return out


def fitness_per_generation(records: list[LearnerRecord], path: Path) -> Path:
    """Champion and mean fitness per generation, the min-max spread shaded, every learner a dot."""
    gens = sorted({r.generation for r in records})
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    best: list[float] = []
    mean: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    gx: list[int] = []
    for g in gens:
        xs = [r.fitness for r in _scored(records) if r.generation == g and r.fitness is not None]
        if not xs:
            continue
        gx.append(g)
        best.append(max(xs))
        mean.append(sum(xs) / len(xs))
        lo.append(min(xs))
        hi.append(max(xs))
        ax.scatter([g] * len(xs), xs, s=12, color="0.55", zorder=2,
                   label="learner" if len(gx) == 1 else None)
    if gx:
        ax.fill_between(gx, lo, hi, color="C0", alpha=0.15, label="spread (min-max)")
        ax.plot(gx, best, "o-", color="C1", lw=2, label="champion", zorder=3)
        ax.plot(gx, mean, "s--", color="C0", lw=1.5, label="mean", zorder=3)
    failed = [(r.generation, sum(1 for q in records if q.generation == r.generation and q.failed))
              for r in records if r.failed]
    for g, n in sorted(set(failed)):
        ax.annotate(f"{n} failed", (g, 0), xycoords=("data", "axes fraction"),
                    xytext=(0, 4), textcoords="offset points", ha="center", fontsize=8,
                    color=FAILED_COLOR)
    ax.set_xticks(gens)
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness")
    ax.set_title("Fitness per generation")
    ax.grid(alpha=0.3)
    if gx:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no learner was scored", ha="center", transform=ax.transAxes)
    return _save(fig, path)


def champion_signals(records: list[LearnerRecord], path: Path) -> Path:
    """Each generation's champion: its per-checkpoint curves (x = training items), one panel per
    curve, one line per generation (darker = later)."""
    champs = champions(records)
    names = sorted({k for r in champs.values() for k in r.curves})[:MAX_PANELS]
    ncol = min(3, max(1, len(names)))
    nrow = max(1, math.ceil(len(names) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.8 * ncol, 3.0 * nrow + 0.6), dpi=110,
                             squeeze=False)
    cmap = plt.get_cmap("viridis")
    gens = sorted(champs)
    for ax, name in zip(axes.flat, names, strict=False):
        for i, g in enumerate(gens):
            pts = champs[g].curves.get(name, [])
            if pts:
                steps, vals = zip(*pts, strict=True)
                ax.plot(steps, vals, "o-", ms=3, lw=1.4, color=cmap(i / max(1, len(gens) - 1)),
                        label=f"g{g}: {champs[g].learner_id}")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("training items", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    if not names:
        axes.flat[0].text(0.5, 0.5, "no per-checkpoint curves recorded", ha="center", va="center")
    elif gens:
        axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle("Champions' signals over checkpoints")
    return _save(fig, path)


def family_tree(records: list[LearnerRecord], path: Path) -> Path:
    """Who descends from whom: rows are generations, colour is fitness, each edge names its
    operator, failed learners are red with a cross."""
    pos = tree_layout(records)
    lo, hi = score_range(records)
    ncol = max([int(c) for c, _ in pos.values()] + [0]) + 1
    gens = sorted({g for _, g in pos.values()})
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * ncol + 2), max(3.0, 1.25 * len(gens) + 1)),
                           dpi=110)
    norm, cmap = Normalize(lo, hi if hi > lo else lo + 1), plt.get_cmap("viridis")
    styles = {"crossover": ("C0", "-"), "mutate": ("C1", "--"), "clone": ("0.35", "-")}
    for r in records:
        cx, cy = pos[r.learner_id]
        for p in r.parents:
            if p in pos:
                px, py = pos[p][0], pos[p][1] + 0.45   # start below the parent's name (+0.33)
                ecolor, ls = styles.get(r.operator, ("0.5", "-"))
                ax.plot([px, cx], [py, cy], ls, color=ecolor, lw=1.2, zorder=1)
                # label at the midpoint: edges sharing an end are furthest apart there
                ax.text((px + cx) / 2, (py + cy) / 2, r.operator, fontsize=6,
                        color=ecolor, ha="center", va="center", zorder=2,
                        bbox={"fc": "white", "ec": "none", "pad": 0.3, "alpha": 0.8})
    for r in records:
        x, y = pos[r.learner_id]
        ok = r.scored
        color: Any = FAILED_COLOR if r.failed else (
            cmap(norm(r.fitness)) if ok and r.fitness is not None else "0.6")
        ax.scatter([x], [y], s=420, color=color, edgecolors="black", zorder=3)
        if r.failed:
            ax.scatter([x], [y], s=120, marker="x", color="white", linewidths=2, zorder=4)
        ax.text(x, y + 0.33, r.learner_id, ha="center", va="center", fontsize=7, zorder=4)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, fraction=0.03, pad=0.02).set_label("fitness")
    ax.set_yticks(gens, [f"gen {g}" for g in gens])
    ax.set_ylim(max(gens, default=0) + 0.6, min(gens, default=0) - 0.6)   # generation 0 on top
    ax.set_xlim(-0.6, ncol - 0.4)
    ax.set_xticks([])
    for s in ("top", "right", "bottom"):
        ax.spines[s].set_visible(False)
    ax.set_title("Family tree (edge = operator; red x = failed)")
    return _save(fig, path)


def draw_all(records: list[LearnerRecord], out_dir: Path) -> list[Path]:
    """All three PNGs into `out_dir`: fitness.png, champion_signals.png, family_tree.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [fitness_per_generation(records, out_dir / "fitness.png"),
            champion_signals(records, out_dir / "champion_signals.png"),
            family_tree(records, out_dir / "family_tree.png")]


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
