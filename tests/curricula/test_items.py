"""Item helpers: ParamRange validation, the seeded holdout split, and text normalisation."""

from __future__ import annotations

import pytest

from common.ranges import ParamRange
from curricula.items import Item, key_terms_match, normalise_text, split_holdout


def _items(n: int) -> list[Item]:
    return [Item(id=f"x{i}", prompt=f"{i}=", answer=str(i), family="t") for i in range(n)]


def test_param_range_checks_its_values() -> None:
    r = ParamRange(0.0, 0.5)
    assert r.contains(0.25) and not r.contains(0.6)
    with pytest.raises(ValueError, match=r"ratio = 0.6 is out of range; valid: float in \[0, 0.5\]"):
        r.check("ratio", 0.6)
    ints = ParamRange(1, 4, "int")
    assert ints.check("block", 3) == 3
    assert not ints.contains(2.5)
    assert not ints.contains(True)
    choice = ParamRange(kind="choice", choices=["a", "b"])
    assert choice.choices == ("a", "b") and choice.contains("a") and not choice.contains("c")


@pytest.mark.parametrize("kw, what", [
    ({"kind": "gauss"}, "kind 'gauss' is unknown"),
    ({"low": 2.0, "high": 1.0}, "low 2.0 > high 1.0"),
    ({"low": 0.0, "high": 1.0, "kind": "log"}, "needs low > 0"),
    ({"kind": "choice"}, "non-empty choices"),
])
def test_param_range_rejects_nonsense(kw: dict, what: str) -> None:
    with pytest.raises(ValueError, match=what):
        ParamRange(**kw)


def test_split_holdout_is_seeded_disjoint_and_complete() -> None:
    items = _items(50)
    train, hold = split_holdout(items, 0.3, seed=1)
    assert len(hold) == 15 and len(train) == 35
    assert {i.id for i in train}.isdisjoint(i.id for i in hold)
    assert sorted(train + hold, key=lambda i: int(i.id[1:])) == items
    assert split_holdout(items, 0.3, seed=1) == (train, hold)
    assert split_holdout(items, 0.3, seed=2)[1] != hold
    assert [int(i.id[1:]) for i in train] == sorted(int(i.id[1:]) for i in train)  # input order kept


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_split_holdout_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="holdout fraction"):
        split_holdout(_items(4), fraction, seed=0)


def test_normalise_text_nfkc_casefold_whitespace() -> None:
    assert normalise_text("  H₂O \n is\tWATER ") == "h2o is water"
    assert normalise_text("Straße") == normalise_text("STRASSE")
    assert normalise_text("ﬁle") == "file"          # NFKC expands the ligature
    assert key_terms_match(["H₂O"], "it is h2o")
    assert not key_terms_match(["H₂O", "ice"], "it is h2o")


def test_key_term_variants_separated_by_a_bar() -> None:
    assert key_terms_match(["Kyiv|Kiev"], "the capital is KIEV") and key_terms_match(["Kyiv|Kiev"], "Kyiv")
    assert key_terms_match(["8|eight", "legs"], "Eight legs")
    assert not key_terms_match(["8|eight", "legs"], "eight arms")    # every term, one variant each
    assert not key_terms_match(["|"], "anything")                    # empty variants never match
