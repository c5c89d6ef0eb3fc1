"""What the engine records about one learner in one generation: the unit that tracking writes to
MLflow, that `evolve lineage` and `evolve tune` read back, and that replay follows.

Plain data, no mlflow import: only the tracking modules (`evolve/tracking*.py`) talk to MLflow.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

OPERATORS = ("init", "clone", "mutate", "crossover")


def learner_id(generation: int, index: int) -> str:
    """The one learner-id format: learner `index` of `generation` is "g2-l3"."""
    return f"g{generation}-l{index}"


_ID = re.compile(r"^g(\d+)-l(\d+)$")   # what `learner_id` writes, read back


def learner_index(lid: str) -> int:
    """The index part of a learner id: "g2-l3" -> 3."""
    m = _ID.match(lid)
    if m is None:
        raise ValueError(f"{lid!r} is not a learner id; learner ids look like g2-l3")
    return int(m.group(2))


def learner_key(lid: str) -> tuple[int, int, str]:
    """Sort key: g2-l10 after g2-l9; ids of another form last."""
    m = _ID.match(lid)
    return (int(m.group(1)), int(m.group(2)), "") if m else (1 << 30, 0, lid)


@dataclass
class LearnerRecord:
    learner_id: str                          # "g{generation}-l{index}", e.g. "g2-l3"
    generation: int
    genome: dict[str, Any]                   # flat, JSON-able: logged as MLflow params
    parents: list[str] = field(default_factory=list)       # parent learner ids ([] for init)
    operator: str = "init"                   # one of OPERATORS
    decisions: list[str] = field(default_factory=list)
    # ^ human-readable, replayable lines: "lr : 3e-4 --- (* 0.8) --> 2.4e-4",
    #   "parents: g2-l3 x g2-l5 (svd merge)"
    fitness: float | None = None             # None while unscored; failed learners get the worst
    failed: bool = False
    failure: str = ""                        # why, one line ("loss became nan at step 37")
    signals: dict[str, float | None] = field(default_factory=dict)   # logged as signal.<name>
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    # ^ per-checkpoint histories, metric name -> [(step in training items, value)]
    adapter_dir: str | None = None           # PEFT adapter dir to log under artifact "adapter/"
    run_id: str | None = None                # filled in by the tracker
    parent_run_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.operator not in OPERATORS:
            raise ValueError(f"operator {self.operator!r} is not one of {', '.join(OPERATORS)}")

    @property
    def scored(self) -> bool:
        """Did not fail and has a finite fitness: what champions, means and colour scales use."""
        return not self.failed and self.fitness is not None and math.isfinite(self.fitness)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LearnerRecord:
        d = dict(d)
        d["curves"] = {k: [tuple(p) for p in v] for k, v in d.get("curves", {}).items()}
        return cls(**d)


@dataclass(frozen=True)
class LineageEdge:
    child: str
    parents: tuple[str, ...]
    operator: str
    generation: int
