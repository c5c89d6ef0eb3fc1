"""Lineage as plain data: a learner's edge, its ancestry, the `lineage.json` document."""

from __future__ import annotations

from typing import Any

from evolve.records import LearnerRecord, LineageEdge, learner_key


def edge_of(rec: LearnerRecord) -> LineageEdge:
    """The lineage edge of a learner (an `init` learner has no parents)."""
    return LineageEdge(rec.learner_id, tuple(rec.parents), rec.operator, rec.generation)


def ancestry(edges: dict[str, LineageEdge], learner: str) -> list[LineageEdge]:
    """Every edge on the way to `learner` (itself included), oldest first."""
    seen, todo = set(), [learner]
    while todo:
        cur = todo.pop()
        if cur in seen or cur not in edges:
            continue
        seen.add(cur)
        todo.extend(edges[cur].parents)
    return sorted((edges[c] for c in seen), key=lambda e: learner_key(e.child))


def lineage_document(records: list[LearnerRecord], edges: list[LineageEdge]) -> dict[str, Any]:
    """What `lineage.json` holds: the edge list plus each learner's fitness, failure and run."""
    return {
        "edges": [{"child": e.child, "parents": list(e.parents), "operator": e.operator,
                   "generation": e.generation} for e in edges],
        "learners": {r.learner_id: {"fitness": r.fitness, "failed": r.failed, "run_id": r.run_id,
                                    "genome": r.genome} for r in records},
    }
