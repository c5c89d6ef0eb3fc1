"""Shared report helpers for the experiments: number formatting, markdown tables, JSON that never
holds NaN, the line and loop plots, and logging a finished experiment run to MLflow.

matplotlib (Agg backend) and the tracker are imported inside the functions that draw or log, so an
experiment module that imports this stays cheap to import.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MISSING = "n/a"


def fmt(x: Any, digits: int = 3) -> str:
    """A number for a report: `n/a` for None/NaN, ints as ints, floats to `digits` significant."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return MISSING
    if isinstance(x, bool) or isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"
    return str(x)


def first_index(values: Sequence[Any], ok: Any, start: int = 0) -> int | None:
    """Index of the first value at or after `start` that is not None and passes `ok`."""
    return next((i for i in range(start, len(values)) if values[i] is not None and ok(values[i])),
                None)


def mean(xs: Sequence[float]) -> float | None:
    """The mean, None for no values."""
    return sum(xs) / len(xs) if xs else None


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells go through `fmt`."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def clean(obj: Any) -> Any:
    """Replace NaN/inf by None recursively (strict JSON), tuples by lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


def write_json(path: Path, doc: Any) -> Path:
    """Write `doc` as strict, indented JSON (NaN -> null)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(doc), indent=1, allow_nan=False) + "\n")
    return path


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _marks(ax: Any, marks: Mapping[str, float | None]) -> None:
    """Vertical dashed lines at named x positions (None = not reached, not drawn)."""
    for i, (label, x) in enumerate((k, v) for k, v in marks.items() if v is not None):
        ax.axvline(x, color=f"C{(i + 3) % 10}", ls="--", lw=1.2, label=f"{label} ({fmt(x)})")


def line_plot(path: Path, x: Sequence[float], series: Mapping[str, Sequence[float | None]], *,
              title: str, xlabel: str, ylabel: str,
              marks: Mapping[str, float | None] | None = None,
              ylim: tuple[float, float] | None = None, hline: float | None = None) -> Path:
    """One line per series over `x` (None values leave gaps), named vertical marks, legend."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.3), dpi=110)
    for i, (label, ys) in enumerate(series.items()):
        ax.plot(x, [math.nan if v is None else v for v in ys], color=f"C{i}", lw=1.8, label=label)
    if hline is not None:
        ax.axhline(hline, color="0.4", lw=1, ls=":")
    _marks(ax, marks or {})
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def loop_plot(path: Path, curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
              steps: Sequence[int], *, title: str, xlabel: str, ylabel: str) -> Path:
    """Trajectories in a plane (e.g. knowledge vs confidence), coloured by step, start and end
    marked, the diagonal y = x drawn (calibration)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=110)
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="y = x (calibrated)")
    markers = "os^D"
    sc = None
    for i, (label, (xs, ys)) in enumerate(curves.items()):
        ax.plot(xs, ys, color=f"C{i}", lw=1, alpha=0.6)
        sc = ax.scatter(xs, ys, c=steps, cmap="viridis", s=16, marker=markers[i % 4], zorder=3,
                        label=label)
        ax.annotate("start", (xs[0], ys[0]), xytext=(6, -10), textcoords="offset points",
                    fontsize=8, color=f"C{i}")
        ax.annotate("end", (xs[-1], ys[-1]), xytext=(6, 4), textcoords="offset points",
                    fontsize=8, color=f"C{i}")
    if sc is not None:
        fig.colorbar(sc, ax=ax, label="step")
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    _plt().close(fig)
    return path


def log_run(settings: Mapping[str, Any], run_name: str, kind: str, params: Mapping[str, Any],
            history: Mapping[str, Sequence[tuple[int, float]]], summary: Mapping[str, float],
            out_dir: Path | Sequence[Path]) -> str:
    """Record a finished experiment as one MLflow run (tag `evolve.kind` = `kind`): params, the
    summary metrics, each history series as a metric over steps, and `out_dir` (a directory, or
    a list of files and directories) as artifacts under `report/`, through
    `evolve.tracking_runs.log_experiment_run` (the mlflow side).
    `settings` = {uri, experiment, artifact_location} (`evolve.config_layers.tracking_settings`)."""
    from evolve.tracking_runs import log_experiment_run
    from evolve.tracking_store import Store

    store = Store(settings["uri"], settings["experiment"], settings.get("artifact_location"))
    return log_experiment_run(store, run_name, kind, params=params, metrics=summary,
                              histories=history,
                              artifacts=[out_dir] if isinstance(out_dir, Path) else out_dir,
                              artifact_path="report")
