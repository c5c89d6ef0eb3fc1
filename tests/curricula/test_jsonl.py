"""The file-backed family: key-term judging after NFKC + casefold, and located errors."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from curricula import FAMILIES
from curricula.families.jsonl import SAMPLE


def write(tmp_path: Path, lines: list[str]) -> Path:
    p = tmp_path / "qa.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def row(i: str, **kw: object) -> str:
    base = {"id": i, "question": f"q {i}?", "answer": f"a {i}", "key_terms": [f"a {i}"],
            "category": "c", "difficulty": 0.5}
    base.update(kw)
    return json.dumps(base, ensure_ascii=False)


def test_sample_file_is_the_default_and_has_mixed_categories() -> None:
    fam = FAMILIES.get("jsonl")()
    assert fam.path == SAMPLE and SAMPLE.is_file()
    items = fam.generate(40, seed=0)
    assert len(Counter(i.category for i in items)) >= 4
    assert any(not (i.answer.isascii()) for i in items)        # a Unicode case such as H₂O
    assert all(not i.exact and i.key_terms for i in items)


def test_key_terms_match_after_nfkc_and_casefold() -> None:
    fam = FAMILIES.get("jsonl")()
    water = next(i for i in fam.items if i.answer == "H₂O")
    assert fam.verify(water, "H2O") and fam.verify(water, "it is h2o.")
    assert not fam.verify(water, "HO2")
    street = next(i for i in fam.items if i.answer == "Straße")
    assert fam.verify(street, "strasse") and fam.verify(street, "STRAẞE")
    mona = next(i for i in fam.items if len(i.key_terms) > 1)
    assert fam.verify(mona, "LEONARDO DA VINCI")
    assert not fam.verify(mona, "Leonardo")                    # every key term must occur


def test_exact_judge(tmp_path: Path) -> None:
    p = write(tmp_path, [row("x1", answer="Paris", key_terms=["paris"])])
    fam = FAMILIES.get("jsonl")(path=str(p), judge="exact")
    (it,) = fam.generate(1, seed=0)
    assert it.exact and fam.verify(it, "Paris\n") and not fam.verify(it, "the city of Paris")


def test_optional_fields_default(tmp_path: Path) -> None:
    p = write(tmp_path, [json.dumps({"id": "m", "question": "2+2?", "answer": "4"}), ""])
    (it,) = FAMILIES.get("jsonl")(path=p).items
    assert (it.key_terms, it.category, it.difficulty) == (("4",), "", 0.5)


@pytest.mark.parametrize("bad, what", [
    ('{"id": "b", "question": "q?"', "not valid JSON"),
    ('["a", "b"]', "expected a JSON object"),
    (json.dumps({"id": "b", "answer": "x"}), "field 'question' is missing"),
    (row("b", key_terms="x"), "key_terms"),
    (row("b", difficulty=2), "difficulty"),
    (row("b", category=3), "category"),
    (row("a"), "duplicate id 'a' (first on line 1)"),
])
def test_malformed_line_names_file_and_line(tmp_path: Path, bad: str, what: str) -> None:
    p = write(tmp_path, [row("a"), "", bad, row("z")])
    with pytest.raises(ValueError) as exc:
        FAMILIES.get("jsonl")(path=str(p))
    msg = str(exc.value)
    assert msg.startswith(f"{p}:3: ") and what in msg and "\n" not in msg


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(ValueError, match=re.escape(f"no such file '{missing}'")):
        FAMILIES.get("jsonl")(path=str(missing))
