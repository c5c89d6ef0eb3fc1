"""Modular arithmetic `a∘b mod p`, including operations a base model was never pretrained on.

Prompt ``13*44+13%97=`` reads "(13*44+13) mod 97"; the answer is the decimal residue. Items are
cells of the ops × p × p table drawn without replacement, so any split of one draw into train and
holdout parts (see `curricula.items.split_holdout`) leaves them disjoint: the grokking setting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from curricula.families._common import check_int, check_subset, cycle, distinct_indices, rng_for
from curricula.items import Item, exact_match
from curricula.registry import FAMILIES


@dataclass(frozen=True)
class Op:
    fmt: str                              # prompt text before "%p=", with {a} and {b}
    fn: Callable[[int, int], int]
    difficulty: float                     # in [0, 1]: familiar linear ops low, unseen quadratics high


OPS: dict[str, Op] = {
    "add": Op("{a}+{b}", lambda a, b: a + b, 0.1),
    "sub": Op("{a}-{b}", lambda a, b: a - b, 0.2),
    "mul": Op("{a}*{b}", lambda a, b: a * b, 0.35),
    "muladd": Op("{a}*{b}+{a}", lambda a, b: a * b + a, 0.55),
    "sqadd": Op("{a}^2+{b}", lambda a, b: a * a + b, 0.55),
    "cubeadd": Op("{a}^3+{b}", lambda a, b: a ** 3 + b, 0.7),
    "sqsum": Op("{a}^2+{a}*{b}+{b}^2", lambda a, b: a * a + a * b + b * b, 0.85),
}
# What pretraining may show the base model; every other op stays unseen until a learner trains on it.
FAMILIAR = ("add", "mul")


def cell_id(op: str, p: int, a: int, b: int) -> str:
    """A table cell's item id, e.g. ``modadd_97_013_044``."""
    return f"mod{op}_{p}_{a:03d}_{b:03d}"


def parse_cell_id(item_id: str) -> tuple[str, int, int, int] | None:
    """``modadd_97_013_044`` -> ("add", 97, 13, 44); None for an id that is not a modular cell."""
    parts = item_id.split("_")
    if len(parts) != 4 or not parts[0].startswith("mod") or parts[0][3:] not in OPS or \
            not all(x.isdigit() for x in parts[1:]):
        return None
    return parts[0][3:], int(parts[1]), int(parts[2]), int(parts[3])


@FAMILIES.named
class Modular:
    """Cells of the `ops` × p × p table; category = op name, difficulty from the op."""

    name: ClassVar[str]   # from curricula/registry.py (FAMILIES.named)
    description: ClassVar[str] = "a∘b mod p (add, sub, mul and never-pretrained ops like a*b+a, a^2+b)"

    def __init__(self, p: int = 97, ops: Sequence[str] | str = tuple(OPS),
                 canonical: bool = False) -> None:
        # p <= 999 keeps the widest default prompt ("a^2+a*b+b^2%p=" + answer) within ~28 chars.
        self.p = check_int(self.name, "p", p, 2, 999)
        self.ops = check_subset(self.name, "ops", ops, tuple(OPS))
        if not isinstance(canonical, bool):
            raise ValueError(f"{self.name}: canonical = {canonical!r}; set it to true or false")
        # canonical: only cells with a <= b are drawn, so a commutative op's held-out cell (a, b)
        # never has its mirror (b, a) trained: holdout accuracy cannot come from commutativity
        # alone (with a+b at 50 %, about half the holdout is such mirrors).
        self.canonical = canonical
        # the canonical cells, listed; the full table's cell i is divmod(i, p), never listed
        self._canon = [(a, b) for a in range(self.p) for b in range(a, self.p)] if canonical else []

    def _n_cells(self) -> int:
        return len(self._canon) if self.canonical else self.p * self.p

    def _cell(self, i: int) -> tuple[int, int]:
        return self._canon[i] if self.canonical else divmod(i, self.p)

    def item(self, op: str, a: int, b: int) -> Item:
        """The table cell (op, a, b) as an Item with id like ``modadd_97_013_044``."""
        o = OPS[op]
        return Item(
            id=cell_id(op, self.p, a, b),
            prompt=o.fmt.format(a=a, b=b) + f"%{self.p}=",
            answer=str(o.fn(a, b) % self.p),
            family=self.name, category=op, difficulty=o.difficulty)

    def _draw(self, ops: tuple[str, ...], n: int, rng_purpose: str, seed: int) -> list[Item]:
        pp = self._n_cells()
        idx = distinct_indices(rng_for(self.name, rng_purpose, seed), n, len(ops) * pp,
                               f"modular(p={self.p}, ops={','.join(ops)}"
                               f"{', canonical' if self.canonical else ''})")
        return [self.item(ops[i // pp], *self._cell(i % pp)) for i in idx]

    def generate(self, n: int, seed: int) -> list[Item]:
        """`n` distinct table cells in seeded order (any prefix/suffix split is disjoint)."""
        return self._draw(self.ops, n, "generate", seed)

    def table(self, op: str) -> list[Item]:
        """The whole p × p table of one op, row-major (a, then b); canonical: only a <= b."""
        check_subset(self.name, "op", [op], tuple(OPS))
        return [self.item(op, *self._cell(i)) for i in range(self._n_cells())]

    def verify(self, item: Item, output: str) -> bool:
        return exact_match(item, output)

    def pretrain_items(self, n: int, seed: int) -> list[Item]:
        """Only the familiar ops (add, mul): the others must stay unseen by the base model."""
        pp = self.p * self.p

        def make(i: int) -> Item:
            return self.item(FAMILIAR[i // pp], (i % pp) // self.p, i % self.p)

        return cycle(rng_for(self.name, "pretrain", seed), n, len(FAMILIAR) * pp, make,
                     f"modular(p={self.p}) familiar ops")
