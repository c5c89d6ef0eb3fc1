"""The decision-log grammar: write one line per decision, parse it back, replay it exactly.

    gene line     NAME : OLD --- (HOW) --> NEW       NAME a gene or curriculum_params.KEY,
                                                     OLD "-" when the parameter did not exist
    parents line  parents: ID x ID [x ID] (HOW [weights=W,W] [density=D])
    adapter line  adapter: gaussian noise std=S seed=N
    note line     WORD: free text        (e.g. "elite: g2-l3 kept unchanged"; no genome change)

HOW on gene lines is `* 1.2`, `* 0.8`, `* 1.2 clip`, `neighbour`, `resample`, `from ID`, `reseed`.
Values are written by `evolve.genome.fmt_value`, which round-trips exactly, so the NEW text is the
child's value bit for bit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from common.errors import EvolveError
from evolve.config import MERGE_METHODS
from evolve.genome import GENE, Genome, fmt_value, parse_gene

_GENE = re.compile(r"^(?P<name>[\w.]+) : (?P<old>.*?) --- \((?P<how>[^)]*)\) --> (?P<new>.*)$")
_PARENTS = re.compile(r"^parents: (?P<ids>.+?) \((?P<how>[^)]*)\)$")
_NOTE = re.compile(r"^\w+: ")
_NOISE = re.compile(r"^adapter: gaussian noise std=(?P<std>\S+) seed=(?P<seed>\d+)$")


@dataclass(frozen=True)
class MergePlan:
    """Merge the parents' adapters (evolve.merge.merge_adapters) into the child's rank."""

    method: str                            # linear | svd | ties
    parents: tuple[str, ...]
    weights: tuple[float, ...]             # one per parent
    density: float = 1.0                   # ties: fraction of each delta's entries kept


def gene_line(name: str, old: Any, how: str, new: Any) -> str:
    """`lr : 3e-4 --- (* 0.8) --> 2.4e-4`; `old` None is written "-"."""
    return f"{name} : {'-' if old is None else fmt_value(old)} --- ({how}) --> {fmt_value(new)}"


def merge_line(plan: MergePlan) -> str:
    """`parents: g2-l3 x g2-l5 (svd merge)`; weights only when unequal, density only for ties."""
    opts = "" if len(set(plan.weights)) == 1 else " weights=" + ",".join(map(fmt_value, plan.weights))
    if plan.method == "ties":
        opts += f" density={fmt_value(plan.density)}"
    return f"parents: {' x '.join(plan.parents)} ({plan.method} merge{opts})"


def _current(g: Genome, name: str) -> Any:
    if name.startswith("curriculum_params."):
        return g.curriculum_params.get(name.split(".", 1)[1])
    if not hasattr(g, name) or name == "curriculum_params":
        raise EvolveError(f"decision names unknown gene {name!r}")
    return getattr(g, name)


def apply_decisions(genome: Genome, lines: Sequence[str]) -> Genome:
    """Replay decision lines on a copy of `genome` and return it. A gene line whose OLD is not the
    genome's current value raises (the log belongs to another genome); parents and adapter lines
    (and any `WORD: text` note) do not change the genome. A curriculum line that switches strategy clears its parameters."""
    g = genome.copy()
    for line in lines:
        if _NOTE.match(line):                       # parents / adapter / note lines
            continue
        m = _GENE.match(line)
        if m is None:
            raise EvolveError(f"cannot parse decision line {line!r}; expected 'NAME : OLD --- (HOW)"
                              " --> NEW'")
        name, old, new = m["name"], m["old"], m["new"]
        cur = _current(g, name)
        if old != ("-" if cur is None else fmt_value(cur)):
            raise EvolveError(f"decision {line!r} does not apply: {name} is "
                              f"{'-' if cur is None else fmt_value(cur)} in this genome")
        if name.startswith("curriculum_params."):
            g.curriculum_params[name.split(".", 1)[1]] = parse_gene(name, new, g.curriculum)
        else:
            value = parse_gene(name, new)
            if name in GENE and GENE[name].strategy and value != getattr(g, name):
                g.curriculum_params = {}            # a new strategy has its own parameters
            setattr(g, name, value)
    g.__post_init__()
    return g


def adapter_plan(lines: Sequence[str]) -> tuple[MergePlan | None, tuple[float, int] | None]:
    """The adapter operations in a decision log: (merge plan or None, (noise std, seed) or None)."""
    plan, noise = None, None
    for line in lines:
        m = _PARENTS.match(line)
        if m and m["how"].split()[0] in MERGE_METHODS and " merge" in m["how"]:
            ids = tuple(m["ids"].split(" x "))
            opts = dict(kv.split("=", 1) for kv in m["how"].split()[2:])
            weights = (tuple(float(x) for x in opts["weights"].split(",")) if "weights" in opts
                       else (1.0 / len(ids),) * len(ids))
            plan = MergePlan(m["how"].split()[0], ids, weights, float(opts.get("density", 1.0)))
        m = _NOISE.match(line)
        if m:
            noise = (float(m["std"]), int(m["seed"]))
    return plan, noise
