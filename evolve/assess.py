"""Do later generations learn new items faster? The learning-speed assessment.

After a generation's training (its final states already saved), every learner of the group is
trained on the run's fixed never-trained probe items for a fixed budget of `steps` optimiser steps,
all learners on the same seeded order, probed before and at `checkpoints` evenly spaced points. The
population is thrown away afterwards, so the assessment never leaks into evolution. Per learner it
records (signal names are stable; `evolve tune` and the selection experiment read them).

The outcome is learning, not knowing (DESIGN.md, "Outcome, controls and heritability"): the gain
and the share learned never mix in what the learner knew before the assessment trained it, which
is reported beside them as `assess_initial_accuracy`.

- `assess_gain`: area under accuracy(t) - accuracy(0) over the budget, trapezoid rule, divided by
  the budget (= `assess_auc` - `assess_initial_accuracy`): how much it learned, and how soon.
- `assess_learned_share`: share of the items wrong before the assessment that are right at its
  end (None when none was wrong).
- `assess_initial_accuracy`: probe accuracy before the assessment trains (what it already knew).
- `assess_auc`: area under the probe-accuracy curve over the budget, trapezoid rule, divided by the
  budget: 0..1, higher = learned more, sooner. The point before training counts.
- `assess_learned_per_100`: probe items wrong before and right at the end, per 100 optimiser steps.
- `assess_half_life`: forgetting half-life (fitness's Kaplan-Meier `forgetting_half_life`) over the
  assessment checkpoints, in training items; None when survival never fell to 0.5 (never forgot).
- `assess_final_accuracy`: probe accuracy at the end of the budget.

Failed learners (before or during the assessment) get None everywhere.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from evolve.steps import pairs, probe_items, train_steps

if TYPE_CHECKING:
    from curricula.items import Item
    from learners.population import Population

NAMES = ("assess_gain", "assess_learned_share", "assess_initial_accuracy", "assess_auc",
         "assess_learned_per_100", "assess_half_life", "assess_final_accuracy")
# (higher_is_better, how fitness.combine ranks None): a None half-life means "never forgot"
META = {"assess_gain": (True, "worst"), "assess_learned_share": (True, "worst"),
        "assess_initial_accuracy": (True, "worst"), "assess_auc": (True, "worst"),
        "assess_learned_per_100": (True, "worst"),
        "assess_half_life": (True, "best"), "assess_final_accuracy": (True, "worst")}
# the outcomes whose mean over a generation's learners is an evolution-run metric (`<name>_mean`):
# every one whose undefined value ranks worst; a half-life's None ("never forgot") has no number
AVERAGED = tuple(n for n in NAMES if META[n][1] == "worst")


def schedule(n_items: int, steps: int, batch_size: int, checkpoints: int, seed: int,
             ) -> tuple[list[list[int]], list[int]]:
    """Item indices per step (a seeded order, cycled) and the steps after which to probe."""
    order = list(range(n_items))
    random.Random(seed).shuffle(order)
    batches = [[order[(t * batch_size + j) % n_items] for j in range(min(batch_size, n_items))]
               for t in range(steps)]
    probe_at = sorted({max(1, round(steps * (c + 1) / checkpoints)) for c in range(checkpoints)})
    return batches, probe_at


def auc(steps: Sequence[int], acc: Sequence[float]) -> float:
    """Trapezoid area under accuracy over steps (first step 0), divided by the last step: 0..1."""
    x, y = np.asarray(steps, dtype=float), np.asarray(acc, dtype=float)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / x[-1]) if x[-1] > 0 else float(y[0])


def summarise(correct: np.ndarray, steps: list[int], batch_size: int, item_ids: list[str],
              ) -> dict[str, float | None]:
    """The assess_* signals of one learner from its probe verdicts `correct` [C+1, N] at `steps`."""
    from fitness import Trajectory, compute_signals

    acc = correct.mean(axis=1)
    learned = int(np.sum(~correct[0] & correct[-1]))
    traj = Trajectory(
        learner_id="assess", steps=[s * batch_size for s in steps[1:]],
        baseline={i: bool(correct[0, j]) for j, i in enumerate(item_ids)},
        window=dict.fromkeys(item_ids, 0),
        correct={i: [bool(c) for c in correct[1:, j]] for j, i in enumerate(item_ids)},
        confidence={i: [None] * (len(steps) - 1) for i in item_ids},
    )
    half = compute_signals(traj, ["forgetting_half_life"])["forgetting_half_life"].value
    wrong0 = int(np.sum(~correct[0]))
    area = auc(steps, acc)
    return {
        "assess_gain": area - float(acc[0]),
        "assess_learned_share": learned / wrong0 if wrong0 else None,
        "assess_initial_accuracy": float(acc[0]),
        "assess_auc": area,
        "assess_learned_per_100": 100.0 * learned / steps[-1],
        "assess_half_life": None if half is None else float(half),
        "assess_final_accuracy": float(acc[-1]),
    }


def assess_population(pop: Population, items: Sequence[Item], steps: int, batch_size: int,
                      checkpoints: int, seed: int, max_new_tokens: int = 32,
                      ) -> tuple[list[dict[str, float | None]], list[list[tuple[int, float]]]]:
    """Train `pop` in place on `items` for `steps` steps; per learner (signals, accuracy curve).

    Call only on a population whose states are already saved: the training here is the fork.
    Items are judged as in training (`evolve.steps.probe_items`: key-term items by generation).
    """
    P = pop.P
    if steps <= 0 or not items:
        return [{} for _ in range(P)], [[] for _ in range(P)]
    probe_pairs = pairs(items)
    batches, probe_at = schedule(len(items), steps, batch_size, checkpoints, seed)
    was_failed = np.asarray(pop.failed, dtype=bool).copy()
    verdicts = [probe_items(pop, items, max_new_tokens)[0]]                # [P, N] each
    done = 0
    for stop in probe_at:
        chunk = [[probe_pairs[j] for j in b] for b in batches[done:stop]]
        train_steps(pop, [chunk] * P)
        done = stop
        verdicts.append(probe_items(pop, items, max_new_tokens)[0])
    failed = np.asarray(pop.failed, dtype=bool) | was_failed
    correct = np.stack(verdicts)                                           # [C+1, P, N]
    at = [0] + probe_at
    ids = [it.id for it in items]
    signals: list[dict[str, float | None]] = []
    curves: list[list[tuple[int, float]]] = []
    for p in range(P):
        if failed[p]:
            signals.append(dict.fromkeys(NAMES))
            curves.append([])
            continue
        signals.append(summarise(correct[:, p], at, batch_size, ids))
        curves.append([(s * batch_size, float(a)) for s, a in zip(at, correct[:, p].mean(1),
                                                                  strict=True)])
    return signals, curves
