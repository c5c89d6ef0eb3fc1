"""Two or more evolutions side by side (`evolve compare RUN RUN ...`): the config keys where they
differ, fitness and the outcome per generation, and the champions, as text tables and one figure.

Plain data in (`Evolution`, read from the store by `evolve.commands.compare`), text and a PNG out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# per-generation series shown for every run: fitness (normalised within a generation) and the
# outcome (learning speed on never-trained probe items, comparable across generations and runs)
SERIES = ("champion_fitness", "mean_fitness", "assess_auc_mean")


@dataclass
class Evolution:
    run_id: str
    name: str
    params: dict[str, str]
    history: dict[str, dict[int, float]]    # metric -> {generation: value}
    champions: dict[int, tuple[str, float | None]]   # generation -> (learner id, fitness)
    model: str = ""                         # registered champion, name/version

    @property
    def label(self) -> str:
        return f"{self.run_id[:8]} {self.name}"


def config_differences(runs: Sequence[Evolution]) -> list[tuple[str, list[str | None]]]:
    """(key, value per run) for every config key whose value is not the same in all runs
    (a key one run lacks counts as different)."""
    keys = sorted({k for r in runs for k in r.params})
    out = []
    for k in keys:
        vals = [r.params.get(k) for r in runs]
        if len(set(vals)) > 1:
            out.append((k, vals))
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def text_table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in head]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def per_generation(runs: Sequence[Evolution]) -> tuple[list[str], list[list[Any]]]:
    """One row per generation; per run its champion, champion fitness, mean fitness, outcome."""
    gens = sorted({g for r in runs for h in r.history.values() for g in h} |
                  {g for r in runs for g in r.champions})
    head = ["gen"]
    for i, _ in enumerate(runs):
        head += [f"[{i + 1}] champion", f"[{i + 1}] fitness", f"[{i + 1}] mean",
                 f"[{i + 1}] assess_auc"]
    rows: list[list[Any]] = []
    for g in gens:
        row: list[Any] = [g]
        for r in runs:
            champ = r.champions.get(g)
            row += [champ[0] if champ else None,
                    *[r.history.get(k, {}).get(g) for k in SERIES]]
        rows.append(row)
    return head, rows


def report(runs: Sequence[Evolution]) -> str:
    """The text `evolve compare` prints."""
    parts = ["runs:"] + [f"  [{i + 1}] {r.run_id}  {r.name}" for i, r in enumerate(runs)]
    diffs = config_differences(runs)
    parts += ["", "config differences:" if diffs else "config: identical"]
    if diffs:
        parts.append(text_table(["key", *[f"[{i + 1}]" for i in range(len(runs))]],
                                [[k, *vals] for k, vals in diffs]))
    head, rows = per_generation(runs)
    parts += ["", "per generation (fitness is normalised within a generation; assess_auc = mean "
              "learning speed on never-trained items, comparable across runs):",
              text_table(head, rows)]
    champs = []
    for i, r in enumerate(runs):
        last = max(r.champions) if r.champions else None
        lid, fit = r.champions[last] if last is not None else (None, None)
        auc = r.history.get("assess_auc_mean", {}).get(last) if last is not None else None
        champs.append([f"[{i + 1}]", lid, fit, auc, r.model or "-"])
    parts += ["", "champions (last generation):",
              text_table(["run", "champion", "fitness", "assess_auc", "model version"], champs)]
    return "\n".join(parts)


def plot(runs: Sequence[Evolution], path: Path) -> Path:
    """One panel per series, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SERIES), figsize=(5 * len(SERIES), 3.8), squeeze=False)
    for ax, key in zip(axes[0], SERIES, strict=True):
        for i, r in enumerate(runs):
            pts = r.history.get(key, {})
            xs = sorted(pts)
            if xs:
                ax.plot(xs, [pts[x] for x in xs], "o-", label=f"[{i + 1}] {r.label}"[:40])
        ax.set_title(key)
        ax.set_xlabel("generation")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
