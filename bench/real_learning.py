"""Did a real-model evolution learn and forget? Figures from an `evolve run`'s state directory.

    python bench/real_learning.py STATE_DIR/RUN_ID [--json]

Reads every `trajectories_g<N>.json` the run wrote (one trajectory per learner per generation) and
prints, per learner and for the median learner:
- learned: the share of its initially-wrong trained items (wrong at the probe before any training of
  the generation, the trajectory's `initial`) that are right at its last checkpoint;
- regressed: trained items that were right at some probe (before any training, before their own
  window, or at a checkpoint) and are wrong at the last checkpoint, and holdout items (never
  trained) right before training and wrong at the end (interference with what the model knew);
- for counterfactual edits (`tcf_edit_*`): the share that end right (the prior overwritten).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def learner_figures(t: Any) -> dict[str, Any]:
    """The figures of one trajectory (fitness.Trajectory).

    "Initially" is the probe before any training of the generation (`initial`), not an item's
    `baseline`, which is the probe before its own window: by then the learner has trained the items
    of earlier windows, so two generation-0 learners (both the base itself) can hold different
    baselines for one item. A trajectory without `initial` (older files) falls back to baselines."""
    final = {i: (c[-1] is True) for i, c in t.correct.items()}
    start = t.initial or t.baseline
    wrong0 = [i for i in t.baseline if not start[i]]
    learned = [i for i in wrong0 if final[i]]
    ever = {i for i, c in t.correct.items()
            if start[i] or t.baseline[i] or any(x is True for x in c)}
    regressed = sorted(i for i in ever if not final[i])
    hold_lost = [h for j, h in enumerate(t.holdout_ids)
                 if t.holdout_baseline[j] and t.holdout_correct and not t.holdout_correct[-1][j]]
    hold_gained = [h for j, h in enumerate(t.holdout_ids)
                   if not t.holdout_baseline[j] and t.holdout_correct and t.holdout_correct[-1][j]]
    edits = [i for i in t.baseline if i.startswith("tcf_edit_")]
    return {
        "learner": t.learner_id, "trained": len(t.baseline), "initially_wrong": len(wrong0),
        "learned": len(learned), "learned_share": len(learned) / len(wrong0) if wrong0 else None,
        "regressed": len(regressed), "regressed_items": regressed,
        "holdout": len(t.holdout_ids), "holdout_right_before": sum(t.holdout_baseline),
        "holdout_lost": len(hold_lost), "holdout_gained": len(hold_gained),
        "edits": len(edits), "edits_right_at_end": sum(final[i] for i in edits),
    }


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("state", type=Path, help="the run's state directory (STATE_DIR/RUN_ID)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    from fitness.formats import load_evolve

    files = sorted(args.state.glob("trajectories_g*.json"),
                   key=lambda p: int(p.stem.rsplit("g", 1)[1]))
    if not files:
        print(f"real_learning: no trajectories_g*.json in {args.state}; pass STATE_DIR/RUN_ID of "
              "an evolve run", file=sys.stderr)
        return 2
    rows = [learner_figures(t) for f in files for t in load_evolve(f)]
    shares = [r["learned_share"] for r in rows if r["learned_share"] is not None]
    out = {
        "learners": len(rows), "generations": len(files),
        "median_learned_share": median(shares),
        "median_regressed": median([r["regressed"] for r in rows]),
        "median_holdout_lost": median([r["holdout_lost"] for r in rows]),
        "learners_with_a_regression": sum(r["regressed"] + r["holdout_lost"] > 0 for r in rows),
        "median_edits_right_share": median([r["edits_right_at_end"] / r["edits"] for r in rows
                                            if r["edits"]]),
        "per_learner": rows,
    }
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    for r in rows:
        share = "-" if r["learned_share"] is None else f"{r['learned_share']:.2f}"
        print(f"{r['learner']:>7}: learned {r['learned']}/{r['initially_wrong']} ({share}), "
              f"regressed {r['regressed']}, holdout lost {r['holdout_lost']}/"
              f"{r['holdout_right_before']} gained {r['holdout_gained']}, "
              f"edits right {r['edits_right_at_end']}/{r['edits']}")
    print(f"median learner: learned share {out['median_learned_share']}, regressed "
          f"{out['median_regressed']}, holdout lost {out['median_holdout_lost']}; "
          f"{out['learners_with_a_regression']} of {len(rows)} learners regressed somewhere")
    return 0


if __name__ == "__main__":
    sys.exit(main())
