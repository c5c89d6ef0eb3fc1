"""The trivia data and its two families: a correct, judgeable question set and linked counterfactuals."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from curricula import FAMILIES
from curricula.families.trivia import DATA, INSTRUCTION, PRIOR_TOKENS, load_facts
from curricula.items import key_terms_match, normalise_text, split_holdout, term_variants

FACTS = load_facts(DATA)


def test_at_least_300_facts_in_at_least_8_categories() -> None:
    cats = Counter(f.category for f in FACTS)
    assert len(FACTS) >= 300
    assert len(cats) >= 8 and min(cats.values()) >= 10, cats
    assert {"geography", "science", "history", "literature", "arts", "sport", "language",
            "maths"} <= set(cats)
    assert all(0.0 <= f.difficulty <= 1.0 for f in FACTS)
    assert all(re.fullmatch(r"[a-z]+_[0-9]{3}", f.id) for f in FACTS)   # safe as MLflow keys


def test_no_question_twice() -> None:
    questions = Counter(normalise_text(f.question) for f in FACTS)
    assert [q for q, c in questions.items() if c > 1] == []


def test_key_terms_accept_the_answer_but_not_an_echo_of_the_question() -> None:
    for f in FACTS:
        assert f.key_terms and key_terms_match(f.key_terms, f.answer), f
        assert 1 <= len(f.answer.split()) <= 3, f
        q = normalise_text(f.question)
        assert not any(v in q for t in f.key_terms for v in term_variants(t)), f


def test_every_prior_is_recorded_and_is_the_judges_verdict() -> None:
    for f in FACTS:
        assert f.prior_answer is not None and f.prior_correct is not None, f
        assert f.prior_correct == key_terms_match(f.key_terms, f.prior_answer), f
    right = sum(bool(f.prior_correct) for f in FACTS)
    assert 0 < right < len(FACTS)


def test_confidently_wrong_priors_are_included() -> None:
    """SmolLM2's known wrong beliefs (docs/measurements.md): Istanbul, the liver, John F. Kennedy."""
    by_q = {f.question: f for f in FACTS}
    for question, belief in [("What is the capital of Turkey?", "Istanbul"),
                             ("What is the largest organ of the human body?", "liver"),
                             ("Who was the first president of the United States?", "Kennedy")]:
        f = by_q[question]
        assert f.prior_correct is False and belief in (f.prior_answer or ""), f


def test_counterfactual_answers_differ_from_the_true_answers() -> None:
    edits = [f for f in FACTS if f.cf_answer is not None]
    assert len(edits) >= 100
    for f in edits:
        assert f.cf_answer and key_terms_match(f.cf_key_terms, f.cf_answer), f
        assert not key_terms_match(f.key_terms, f.cf_answer), f        # the edit is not the fact
        assert not key_terms_match(f.cf_key_terms, f.answer), f        # the fact is not the edit
        q = normalise_text(f.question)
        assert not any(v in q for t in f.cf_key_terms for v in term_variants(t)), f
    known = [f for f in edits if f.prior_correct]
    assert len(known) >= 100     # enough edits of facts the model knew for a real run


def test_both_judges() -> None:
    keyed = FAMILIES.get("trivia")()
    exact = FAMILIES.get("trivia")(judge="exact")
    france = next(i for i in keyed.generate(len(keyed.pool), 0) if i.id == "trivia_geo_001")
    assert not france.exact and keyed.verify(france, "The capital of France is PARIS.")
    assert not keyed.verify(france, "The capital of France is Lyon.")
    ex = exact.item(exact.by_id["geo_001"])
    assert ex.exact and exact.verify(ex, " Paris\n") and not exact.verify(ex, "It is Paris.")
    kyiv = keyed.item(keyed.by_id["geo_045"])
    assert keyed.verify(kyiv, "Kiev") and keyed.verify(kyiv, "KYIV")          # accepted variants
    spider = keyed.item(keyed.by_id["nat_004"])
    assert keyed.verify(spider, "It has eight legs.") and keyed.verify(spider, "8")


def test_prior_filter_splits_the_pool() -> None:
    right = FAMILIES.get("trivia")(prior="right")
    wrong = FAMILIES.get("trivia")(prior="wrong")
    every = FAMILIES.get("trivia")()
    assert all(f.prior_correct for f in right.pool) and not any(f.prior_correct for f in wrong.pool)
    assert len(right.pool) + len(wrong.pool) == len(every.pool) == len(FACTS)
    geo = FAMILIES.get("trivia")(categories="geography,maths", prior="wrong")
    assert {i.category for i in geo.generate(20, 1)} <= {"geography", "maths"}


def test_counterfactual_draw_mixes_edits_and_known_true_facts() -> None:
    fam = FAMILIES.get("trivia_counterfactual")(contradict=0.25)
    items = fam.generate(40, seed=3)
    cats = Counter(i.category for i in items)
    assert cats == {"counterfactual": 10, "true": 30}
    assert len({i.prompt for i in items}) == 40                 # never an edit and its own fact
    for it in items:
        f = fam.fact(it)
        assert f.prior_correct                                  # known=True: facts the model knew
        assert it.prompt == f.question + INSTRUCTION              # as the priors were asked
        if f.cf_answer is None:                                 # a true fact nobody edits
            assert it.category == "true" and it.answer == f.answer
            with pytest.raises(ValueError, match="no counterfactual"):
                fam.twin(it)
            continue
        twin = fam.twin(it)
        assert twin.prompt == it.prompt and fam.twin(twin) == it
        if it.category == "counterfactual":
            assert it.answer == f.cf_answer and twin.answer == f.answer
            assert fam.verify(it, it.answer) and not fam.verify(it, twin.answer)
        else:
            assert it.answer == f.answer and twin.answer == f.cf_answer


def test_neighbours_are_other_known_facts_of_the_same_subject() -> None:
    fam = FAMILIES.get("trivia_counterfactual")()
    france = fam.edit(fam.by_id["geo_001"])
    near = fam.neighbours(france, 5, seed=1)
    assert len(near) == 5 and near == fam.neighbours(france, 5, seed=1)
    for n in near:
        f = fam.fact(n)
        assert n.category == "true" and f.category == "geography" and f.id != "geo_001"
        assert f.prior_correct


def test_holdout_split_of_a_draw_never_overlaps_training() -> None:
    for name in ("trivia", "trivia_counterfactual"):
        items = FAMILIES.get(name)().generate(60, seed=2)
        train, held = split_holdout(items, 0.25, seed=2)
        assert len(held) == 15 and not {i.id for i in train} & {i.id for i in held}
        assert not {i.prompt for i in train} & {i.prompt for i in held}


def test_counterfactual_pretrain_items_are_the_contradicted_truths() -> None:
    fam = FAMILIES.get("trivia_counterfactual")()
    pre = fam.pretrain_items(30, seed=0)
    assert all(i.category == "true" and fam.fact(i).cf_answer is not None for i in pre)
    assert FAMILIES.get("trivia")().pretrain_items(30, seed=0) == []


def _write(tmp_path: Path, *rows: dict) -> Path:
    p = tmp_path / "t.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


BASE = {"id": "q1", "question": "Capital of France?", "answer": "Paris", "category": "geo"}


@pytest.mark.parametrize("row, message", [
    ({**BASE, "cf_answer": "Paris, France"}, "indistinguishable"),
    ({**BASE, "prior_answer": "Paris"}, "go together"),
    ({**BASE, "cf_answer": "Lyon", "cf_key_terms": []}, "cf_key_terms"),
])
def test_bad_lines_fail_in_one_line_naming_the_place(tmp_path: Path, row: dict, message: str) -> None:
    p = _write(tmp_path, row)
    with pytest.raises(ValueError, match=message) as exc:
        FAMILIES.get("trivia")(path=p)
    assert f"{p}:1" in str(exc.value) and "\n" not in str(exc.value)


def test_bad_parameters_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="categories.*valid"):
        FAMILIES.get("trivia")(categories="cooking")
    with pytest.raises(ValueError, match="no such file"):
        FAMILIES.get("trivia_counterfactual")(path=tmp_path / "none.jsonl")
    bare = _write(tmp_path, {**BASE, "cf_answer": "Lyon"})
    with pytest.raises(ValueError, match="known: false"):
        FAMILIES.get("trivia_counterfactual")(path=bare)
    fam = FAMILIES.get("trivia_counterfactual")(path=bare, known=False, contradict=1.0)
    assert [i.answer for i in fam.generate(1, 0)] == ["Lyon"]


def test_questions_are_asked_as_the_priors_were_recorded() -> None:
    """The prior (known / unknown) holds for the prompt it was recorded with: both families ask
    the question + INSTRUCTION by default, and `--config real` generates PRIOR_TOKENS tokens."""
    from evolve.config import load_config

    for name in ("trivia", "trivia_counterfactual"):
        fam = FAMILIES.get(name)()
        it = fam.generate(3, seed=0)[0]
        assert it.prompt.endswith(" Answer in a few words.") and it.prompt.count("?") == 1
        bare = FAMILIES.get(name)(instruction="")
        assert [i.prompt + INSTRUCTION for i in bare.generate(3, seed=0)] == \
            [i.prompt for i in fam.generate(3, seed=0)]
        with pytest.raises(ValueError, match="instruction = 3 is invalid"):
            FAMILIES.get(name)(instruction=3)
    cfg = load_config("real")
    assert cfg.training.max_new_tokens == PRIOR_TOKENS
    assert all("instruction" not in t.params for t in cfg.tasks)
