"""Question sets from a JSONL file, judged by key terms after NFKC + casefolding (H₂O = H2O).

One object per line: ``{"id", "question", "answer", "key_terms", "category", "difficulty"}``;
`id`, `question` and `answer` are required, `key_terms` defaults to ``[answer]``, `category` to
``""`` and `difficulty` to 0.5. Blank lines are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from curricula.families._common import distinct_indices, rng_for
from curricula.items import Item, exact_match, key_terms_match
from curricula.registry import FAMILIES

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample.jsonl"
JUDGES = ("key_terms", "exact")


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(t, str) and t.strip() for t in v)


def parse_line(line: str, where: str, family: str, exact: bool) -> Item:
    """One JSONL line as an Item; ValueError ``path:LINE: <what is wrong>``."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in ("id", "question", "answer"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise ValueError(f"{where}: field {key!r} is missing or not a non-empty string")
    terms = obj.get("key_terms", [obj["answer"]])
    if not _str_list(terms) or not terms:
        raise ValueError(f"{where}: field 'key_terms' must be a non-empty list of non-empty strings")
    category = obj.get("category", "")
    if not isinstance(category, str):
        raise ValueError(f"{where}: field 'category' must be a string")
    difficulty = obj.get("difficulty", 0.5)
    if isinstance(difficulty, bool) or not isinstance(difficulty, (int, float)) \
            or not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"{where}: field 'difficulty' = {difficulty!r} must be a number in [0, 1]")
    return Item(id=obj["id"], prompt=obj["question"], answer=obj["answer"], family=family,
                category=category, difficulty=float(difficulty), key_terms=tuple(terms),
                exact=exact)


def load_jsonl(path: str | Path, family: str = "jsonl", exact: bool = False) -> list[Item]:
    """Every item of the file, in file order; one-line ValueError for a missing file or bad line."""
    return read_rows(path, lambda line, where: parse_line(line, where, family, exact), "jsonl")


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=_HasId)


def read_rows(path: str | Path, parse: Callable[[str, str], R], family: str) -> list[R]:
    """`parse(line, "path:LINE")` of every non-blank line, in file order; a missing file or a
    repeated id is a one-line ValueError naming the file (and both lines)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{family}: no such file {str(p)!r}; set path to an existing JSONL file")
    rows: list[R] = []
    first_line: dict[str, int] = {}
    with p.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            row = parse(line, f"{p}:{n}")
            if row.id in first_line:
                raise ValueError(f"{p}:{n}: duplicate id {row.id!r} (first on line {first_line[row.id]})")
            first_line[row.id] = n
            rows.append(row)
    return rows


@FAMILIES.named
class JSONL:
    """File-backed items; `judge` = key_terms (default) or exact."""

    name: ClassVar[str]   # from curricula/registry.py (FAMILIES.named)
    description: ClassVar[str] = "question/answer items from a JSONL file, judged by NFKC+casefold key-term match"

    def __init__(self, path: str | Path = SAMPLE, judge: str = "key_terms") -> None:
        if judge not in JUDGES:
            raise ValueError(f"jsonl: judge = {judge!r} is invalid; choose one of {', '.join(JUDGES)}")
        self.path, self.judge = Path(path), judge
        self.items = load_jsonl(self.path, self.name, exact=judge == "exact")

    def generate(self, n: int, seed: int) -> list[Item]:
        """`n` distinct items of the file in seeded order; ValueError if the file has fewer."""
        idx = distinct_indices(rng_for(self.name, "generate", seed), n, len(self.items),
                               f"jsonl file {str(self.path)!r}")
        return [self.items[i] for i in idx]

    def verify(self, item: Item, output: str) -> bool:
        if item.exact:
            return exact_match(item, output)
        return key_terms_match(item.key_terms, output)

    def pretrain_items(self, n: int, seed: int) -> list[Item]:
        """None: a question file is evaluation material, and pretraining on it would leak answers."""
        return []
