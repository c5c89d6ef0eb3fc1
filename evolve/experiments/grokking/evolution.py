"""Grokking inside evolution: which learners of an `evolve run` grokked and when, read back from
MLflow, as `evolution.json`, `evolution.md` (section 6 of the grokking report) and
`evolution_curves.png` (train vs holdout accuracy per learner over its checkpoints).

    python -m evolve.experiments.grokking.evolution --uri sqlite:///DIR/mlflow.db \
        --experiment grokking [--run RUN_ID] --out docs/results/grokking --command "..." --wall 312

Everything comes from the learner runs: the `evolve.grokked` tag's signal (`grokking`), the
`signal.grok_*` metrics and the `curve.train_acc` / `curve.holdout_acc` histories.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evolve.experiments.report import write_json
from evolve.records import LearnerRecord, learner_key

GENES = ("lr", "weight_decay", "rank", "alpha", "target_modules")
YES_NO = {True: "yes", False: "no"}   # None: the detector was undefined (too few checkpoints)


def rows_of(records: Sequence[LearnerRecord]) -> list[dict[str, Any]]:
    """One row per learner: id, genes, the grokking verdict and timings, final accuracies, curves."""
    out = []
    for r in sorted(records, key=lambda r: learner_key(r.learner_id)):
        s = r.signals
        train, hold = r.curves.get("train_acc", []), r.curves.get("holdout_acc", [])
        out.append({
            "learner": r.learner_id, "generation": r.generation, "parents": r.parents,
            "genes": {g: r.genome.get(g) for g in GENES},
            "grokked": None if s.get("grokking") is None else s["grokking"] == 1.0,
            "memorised_step": _int(s.get("grok_memorised_step")),
            "onset_step": _int(s.get("grok_onset_step")), "delay": _int(s.get("grok_delay")),
            "final_train_acc": train[-1][1] if train else None,
            "final_holdout_acc": hold[-1][1] if hold else None,
            "max_holdout_acc": max((v for _, v in hold), default=None),
            "max_holdout_step": max(hold, key=lambda p: p[1])[0] if hold else None,
            "checkpoints": len(hold), "failed": r.failed,
            "train_acc": [list(p) for p in train], "holdout_acc": [list(p) for p in hold]})
    return out


def _int(x: float | None) -> int | None:
    return None if x is None or not math.isfinite(x) else int(round(x))


def plot(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """A panel per learner: train (blue) and holdout (orange) accuracy over checkpoint steps; a
    grokked learner's panel is framed red with lines at memorisation (dotted) and onset (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(rows))
    cols = min(4, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.4 * nrows), squeeze=False,
                             sharey=True)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, r in zip(axes.flat, rows, strict=False):
        for key, colour, label in (("train_acc", "C0", "train"), ("holdout_acc", "C1", "holdout")):
            pts = r[key]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour, lw=1.2, label=label)
        if r["memorised_step"] is not None:
            ax.axvline(r["memorised_step"], color="C0", ls=":", lw=1)
        if r["grokked"]:
            if r["onset_step"] is not None:
                ax.axvline(r["onset_step"], color="C3", ls="--", lw=1)
            for spine in ax.spines.values():
                spine.set_color("C3")
                spine.set_linewidth(2)
        g = r["genes"]
        ax.set_title(f"{r['learner']}{'  GROKKED' if r['grokked'] else ''}\nlr {_g(g['lr'])} "
                     f"wd {_g(g['weight_decay'])} r {g['rank']}", fontsize=8,
                     color="C3" if r["grokked"] else "black")
        ax.set_ylim(-0.02, 1.02)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("training items", fontsize=7)
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _g(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, (int, float)) else str(x)


def section(rows: Sequence[dict[str, Any]], command: str, wall_s: float | None,
            config: str) -> list[str]:
    """The markdown of section 6: the command, a table per learner, the verdict from the rows."""
    grok = [r for r in rows if r["grokked"]]
    defined = [r for r in rows if r["grokked"] is not None]
    mem = [r for r in rows if r["memorised_step"] is not None]
    md = [f"Command: `{command}` (config `{config}`)"
          + (f"; {wall_s:.0f} s wall on the shared 2-core machine." if wall_s else "."), "",
          f"**{len(grok)} of {len(defined)} learners grokked** (the `grokking` detector fired: a "
          "window-mean jump of holdout accuracy > 0.2 after train accuracy plateaued); "
          f"{len(mem)} memorised their training items (train accuracy >= 0.9)"
          + (f"; of those, {sum(_before(r) for r in mem)} had their best holdout accuracy at or "
             "before the checkpoint where they memorised" if mem else "") + ".", "",
          "| learner | lr | weight decay | rank | memorised at | onset at | delay | "
          "final train | final holdout | best holdout (at) | grokked |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        g = r["genes"]
        md.append(f"| {r['learner']} | {_g(g['lr'])} | {_g(g['weight_decay'])} | {g['rank']} | "
                  f"{_s(r['memorised_step'])} | {_s(r['onset_step'])} | {_s(r['delay'])} | "
                  f"{_s(r['final_train_acc'])} | {_s(r['final_holdout_acc'])} | "
                  f"{_s(r['max_holdout_acc'])} ({_s(r['max_holdout_step'])}) | {YES_NO.get(r['grokked'], '-')} |")
    md += ["", "Steps count training items of the generation (every pass over the items counts). "
           "Memorised = first checkpoint with train accuracy >= 0.9; onset = first checkpoint after "
           "it where holdout accuracy came half-way up its later rise; delay = onset - memorised. "
           "MLflow: tag `evolve.grokked`, metrics `signal.grok_memorised_step`, "
           "`signal.grok_onset_step`, `signal.grok_delay` on each learner run; curves "
           "`curve.train_acc`, `curve.holdout_acc`.", "",
           "![train vs holdout accuracy per learner](evolution_curves.png)", ""]
    return md


def _before(r: dict[str, Any]) -> bool:
    return r["max_holdout_step"] is not None and r["max_holdout_step"] <= r["memorised_step"]


def _s(x: Any) -> str:
    if x is None:
        return "-"
    return f"{x:.2f}" if isinstance(x, float) else str(x)


def write(rows: list[dict[str, Any]], out: Path, command: str, wall_s: float | None,
          config: str, run_id: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "evolution.json", {"command": command, "config": config, "wall_s": wall_s,
                                        "run_id": run_id, "learners": rows,
                                        "grokked": [r["learner"] for r in rows if r["grokked"]]})
    plot(rows, out / "evolution_curves.png")
    (out / "evolution.md").write_text("\n".join(section(rows, command, wall_s, config)))
    report = out / "report.md"   # section 6 of the grokking report, replaced when rewritten
    if report.is_file():
        from evolve.experiments.grokking.writer import EVOLUTION_HEADING, evolution_md

        text = report.read_text()
        head = text.split(EVOLUTION_HEADING)[0].rstrip("\n")
        report.write_text(head + "\n\n" + "\n".join(evolution_md(out)))


def main(argv: Sequence[str] | None = None) -> int:
    from evolve.tracking import Tracker

    ap = argparse.ArgumentParser(prog="python -m evolve.experiments.grokking.evolution",
                                 description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--uri", required=True, help="MLflow tracking URI of the evolution")
    ap.add_argument("--experiment", required=True, help="its MLflow experiment name")
    ap.add_argument("--run", default=None, help="evolution run id (default: the latest)")
    ap.add_argument("--out", type=Path, default=Path("docs/results/grokking"))
    ap.add_argument("--command", default="", help="the `evolve run` command, for the report")
    ap.add_argument("--config", default="configs/grokking.yaml")
    ap.add_argument("--wall", type=float, default=None, help="its wall time in seconds")
    a = ap.parse_args(argv)
    tracker = Tracker(a.uri, a.experiment)
    run = a.run or tracker.latest_evolution()
    rows = rows_of(tracker.load_records(run))
    write(rows, a.out, a.command, a.wall, a.config, run)
    print(f"{sum(bool(r['grokked']) for r in rows)} of {len(rows)} learners grokked; "
          f"wrote {a.out / 'evolution.md'}", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    raise SystemExit(main())
