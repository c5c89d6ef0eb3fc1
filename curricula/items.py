"""The unit of data (`Item`), a mutable-parameter range (`ParamRange`) and small shared helpers."""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PARAM_KINDS = ("float", "log", "int", "choice")


@dataclass(frozen=True)
class Item:
    """One prompt with its exact answer and a stable id (e.g. ``modadd_97_013_044``)."""

    id: str                    # stable across runs with the same seed and parameters
    prompt: str                # e.g. "13+44%97=" (ASCII for procedural families)
    answer: str                # exact answer, e.g. "57"
    family: str                # registry name
    category: str = ""         # for interleaving / lexicase (e.g. the operation)
    difficulty: float = 0.0    # in [0, 1], for easy-first / hard-first
    key_terms: tuple[str, ...] = ()   # only for key-term-judged items (JSONL)
    exact: bool = True         # True: exact-match (teacher-forced probe); False: key-term judge


@dataclass(frozen=True)
class ParamRange:
    """Where evolution may move one strategy parameter.

    `kind`: "float" (uniform in [low, high]), "log" (log-uniform, low > 0), "int" (integers in
    [low, high]) or "choice" (one of `choices`; low/high unused).
    """

    low: float = 0.0
    high: float = 1.0
    kind: str = "float"
    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in PARAM_KINDS:
            raise ValueError(f"ParamRange kind {self.kind!r} is unknown; use one of {PARAM_KINDS}")
        if self.kind == "choice":
            if not self.choices:
                raise ValueError("ParamRange kind 'choice' needs a non-empty choices tuple")
            object.__setattr__(self, "choices", tuple(self.choices))
        elif not self.low <= self.high:
            raise ValueError(f"ParamRange low {self.low} > high {self.high}; swap them")
        if self.kind == "log" and self.low <= 0:
            raise ValueError(f"ParamRange kind 'log' needs low > 0, got {self.low}")

    def contains(self, value: Any) -> bool:
        """True if `value` lies in the range (is one of the choices)."""
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "int" and (isinstance(value, bool) or int(value) != value):
            return False
        return self.low <= value <= self.high

    def check(self, name: str, value: Any) -> Any:
        """`value` if it is in range, else a one-line ValueError naming `name` and the range."""
        try:
            ok = self.contains(value)
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(f"{name} = {value!r} is out of range; {self.describe()}")
        return int(value) if self.kind == "int" else value

    def describe(self) -> str:
        if self.kind == "choice":
            return f"choose one of {', '.join(map(str, self.choices))}"
        return f"valid: {self.kind} in [{self.low:g}, {self.high:g}]"


def split_holdout(items: Sequence[Item], fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Seeded split into (train, holdout); holdout gets round(fraction * len) items.

    Both parts keep the input order; they are disjoint whenever the items are distinct.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction = {fraction} is out of range; valid: [0, 1)")
    k = round(fraction * len(items))
    held = set(random.Random(f"holdout:{seed}").sample(range(len(items)), k))
    train = [it for i, it in enumerate(items) if i not in held]
    holdout = [it for i, it in enumerate(items) if i in held]
    return train, holdout


def normalise_text(s: str) -> str:
    """Unicode NFKC, casefold, whitespace runs collapsed to one space (``"H₂O "`` → ``"h2o"``)."""
    return " ".join(unicodedata.normalize("NFKC", s).casefold().split())


def key_terms_match(key_terms: Sequence[str], output: str) -> bool:
    """Correct iff every key term, normalised, occurs in the normalised output.

    A term may list accepted variants separated by ``|`` (``"Kyiv|Kiev"``, ``"8|eight"``): one of
    them occurring is enough for that term.
    """
    out = normalise_text(output)
    return all(any(v in out for v in term_variants(t)) for t in key_terms)


def term_variants(term: str) -> list[str]:
    """The normalised, non-empty variants of one key term (``"Kyiv|Kiev"`` -> ``["kyiv", "kiev"]``)."""
    return [v for v in (normalise_text(x) for x in term.split("|")) if v]


def exact_match(item: Item, output: str) -> bool:
    """The exact judge: the output, stripped of surrounding whitespace, equals the answer."""
    return output.strip() == item.answer
