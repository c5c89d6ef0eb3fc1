"""General-knowledge questions for real pretrained models, and counterfactual edits of them.

The data (`curricula/data/trivia.jsonl`, written for the project) has one fact a line: the JSONL
fields of the `jsonl` family (`id`, `question`, a short canonical `answer`, `key_terms`, `category`,
`difficulty`) plus
- `prior_answer` / `prior_correct`: what SmolLM2-135M-Instruct answered (its chat template, the
  question + `INSTRUCTION`, greedy, `PRIOR_TOKENS` new tokens) and whether the key-term judge
  accepted it;
- `cf_answer` / `cf_key_terms` (optional): a counterfactual edit of the fact ("the capital of
  France is Lyon"), never accepted by the true key terms and never accepting the true answer.

`trivia` asks the questions. `trivia_counterfactual` mixes edited facts (the question with the
counterfactual answer: a model that knows the fact starts confidently wrong) with true facts the
model knew (neighbours whose answers the edits may disturb); edit ``tcf_edit_<fact>`` and its true
twin ``tcf_true_<fact>`` share the question (`twin`), so a probe can hold both.

Both families ask `question + instruction`, by default `INSTRUCTION`: the prompt form the priors
were recorded with, so "known" means known when asked this way (the engine's default generation
budget, `training.max_new_tokens`, is `PRIOR_TOKENS`). `instruction: ""` asks the bare question.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from curricula.families._common import check_float, check_subset, cycle, distinct_indices, rng_for
from curricula.families.jsonl import JUDGES, parse_line, read_rows
from curricula.items import Item, exact_match, key_terms_match
from curricula.registry import FAMILIES

DATA = Path(__file__).resolve().parent.parent / "data" / "trivia.jsonl"
PRIORS = ("any", "right", "wrong")
EDIT, TRUE = "tcf_edit_", "tcf_true_"
# The prompt form and generation budget of the recorded priors (`prior_answer`, `prior_correct`):
# the one definition of how a trivia question is asked (families below, configs/real.yaml's budget).
INSTRUCTION = " Answer in a few words."
PRIOR_TOKENS = 32


@dataclass(frozen=True)
class Fact:
    """One line of the trivia file."""

    id: str
    question: str
    answer: str
    key_terms: tuple[str, ...]
    category: str
    difficulty: float
    prior_answer: str | None = None      # None: the file records no prior
    prior_correct: bool | None = None
    cf_answer: str | None = None         # None: no counterfactual edit of this fact
    cf_key_terms: tuple[str, ...] = ()


def _fact(line: str, where: str) -> Fact:
    it = parse_line(line, where, "trivia", exact=False)
    obj: dict[str, Any] = json.loads(line)
    prior_answer, prior_correct = obj.get("prior_answer"), obj.get("prior_correct")
    if (prior_answer is None) != (prior_correct is None) or \
            (prior_answer is not None and not isinstance(prior_answer, str)) or \
            (prior_correct is not None and not isinstance(prior_correct, bool)):
        raise ValueError(f"{where}: 'prior_answer' (a string) and 'prior_correct' (true/false) "
                         "go together; give both or neither")
    cf, cf_terms = obj.get("cf_answer"), obj.get("cf_key_terms", [obj.get("cf_answer")])
    if cf is not None:
        if not isinstance(cf, str) or not cf.strip():
            raise ValueError(f"{where}: field 'cf_answer' must be a non-empty string")
        if not isinstance(cf_terms, list) or not cf_terms or \
                not all(isinstance(t, str) and t.strip() for t in cf_terms):
            raise ValueError(f"{where}: field 'cf_key_terms' must be a non-empty list of non-empty strings")
        if key_terms_match(it.key_terms, cf) or key_terms_match(cf_terms, it.answer):
            raise ValueError(f"{where}: counterfactual {cf!r} is indistinguishable from the answer "
                             f"{it.answer!r} by the key terms; choose a different edit")
    return Fact(it.id, it.prompt, it.answer, it.key_terms, it.category, it.difficulty,
                prior_answer, prior_correct, cf, tuple(cf_terms) if cf is not None else ())


def load_facts(path: str | Path) -> list[Fact]:
    """Every fact of the file in file order; one-line ValueError naming the file and line."""
    return read_rows(path, _fact, "trivia")


class _TriviaBase:
    """Loading, the judge and the category filter shared by both families."""

    name: ClassVar[str]

    def __init__(self, path: str | Path, judge: str, categories: Sequence[str] | str,
                 instruction: str) -> None:
        if judge not in JUDGES:
            raise ValueError(f"{self.name}: judge = {judge!r} is invalid; valid: one of {', '.join(JUDGES)}")
        if not isinstance(instruction, str):
            raise ValueError(f"{self.name}: instruction = {instruction!r} is invalid; valid: a string "
                             f"appended to each question (default {INSTRUCTION!r}, '' for none)")
        self.path, self.judge, self.instruction = Path(path), judge, instruction
        self.facts = load_facts(self.path)
        every = tuple(dict.fromkeys(f.category for f in self.facts))
        self.categories = every if categories in ("all", None) else \
            check_subset(self.name, "categories", categories, every)
        self.by_id = {f.id: f for f in self.facts}

    def _in(self, f: Fact) -> bool:
        return f.category in self.categories

    def _known(self, f: Fact, prior: str) -> bool:
        if prior == "any":
            return True
        if f.prior_correct is None:
            raise ValueError(f"{self.name}: {self.path} line of {f.id!r} records no prior answer; "
                             "use prior: any (or known: false) with this file")
        return f.prior_correct == (prior == "right")

    def _item(self, iid: str, f: Fact, answer: str, terms: tuple[str, ...], category: str,
              difficulty: float) -> Item:
        return Item(id=iid, prompt=f.question + self.instruction, answer=answer, family=self.name, category=category,
                    difficulty=difficulty, key_terms=terms, exact=self.judge == "exact")

    def verify(self, item: Item, output: str) -> bool:
        if item.exact:
            return exact_match(item, output)
        return key_terms_match(item.key_terms, output)


@FAMILIES.named
class Trivia(_TriviaBase):
    """Items ``trivia_<fact id>``; `prior` keeps the facts SmolLM2 got right / wrong / any."""

    name: ClassVar[str]   # from curricula/registry.py (FAMILIES.named)
    description: ClassVar[str] = ("general-knowledge questions with short answers and key terms, "
                                  "with SmolLM2-135M's prior answers")

    def __init__(self, path: str | Path = DATA, judge: str = "key_terms",
                 categories: Sequence[str] | str = "all", prior: str = "any",
                 instruction: str = INSTRUCTION) -> None:
        super().__init__(path, judge, categories, instruction)
        if prior not in PRIORS:
            raise ValueError(f"trivia: prior = {prior!r} is invalid; valid: one of {', '.join(PRIORS)}")
        self.prior = prior
        self.pool = [f for f in self.facts if self._in(f) and self._known(f, prior)]

    def item(self, f: Fact) -> Item:
        return self._item(f"trivia_{f.id}", f, f.answer, f.key_terms, f.category, f.difficulty)

    def generate(self, n: int, seed: int) -> list[Item]:
        """`n` distinct questions of the pool in seeded order; ValueError if it has fewer."""
        idx = distinct_indices(rng_for(self.name, "generate", seed), n, len(self.pool),
                               f"trivia (prior {self.prior}, {len(self.categories)} categories)")
        return [self.item(self.pool[i]) for i in idx]

    def pretrain_items(self, n: int, seed: int) -> list[Item]:
        """None: a real model brings its own priors, and pretraining on the questions leaks answers."""
        return []


@FAMILIES.named
class TriviaCounterfactual(_TriviaBase):
    """Category ``counterfactual`` (``tcf_edit_<fact>``) or ``true`` (``tcf_true_<fact>``)."""

    name: ClassVar[str]   # from curricula/registry.py (FAMILIES.named)
    description: ClassVar[str] = ("edited real facts (capital of France? -> Lyon) "
                                  "mixed with true facts the model knew")

    def __init__(self, path: str | Path = DATA, judge: str = "key_terms",
                 categories: Sequence[str] | str = "all", contradict: float = 0.5,
                 known: bool = True, instruction: str = INSTRUCTION) -> None:
        super().__init__(path, judge, categories, instruction)
        self.contradict = check_float(self.name, "contradict", contradict, 0.0, 1.0)
        if not isinstance(known, bool):
            raise ValueError(f"{self.name}: known = {known!r} is invalid; valid: true or false")
        self.known = known
        prior = "right" if known else "any"
        self.true_pool = [f for f in self.facts if self._in(f) and self._known(f, prior)]
        self.edit_pool = [f for f in self.true_pool if f.cf_answer is not None]

    def edit(self, f: Fact) -> Item:
        """The counterfactual item: the fact's question, the edited answer."""
        if f.cf_answer is None:
            raise ValueError(f"{self.name}: fact {f.id!r} has no counterfactual edit")
        return self._item(EDIT + f.id, f, f.cf_answer, f.cf_key_terms, "counterfactual",
                          round(0.5 + f.difficulty / 2, 3))

    def true(self, f: Fact) -> Item:
        """The fact as it is: the question, the true answer."""
        return self._item(TRUE + f.id, f, f.answer, f.key_terms, "true", f.difficulty)

    def fact(self, item: Item | str) -> Fact:
        """The fact behind an item of this family (or its id)."""
        iid = item if isinstance(item, str) else item.id
        for prefix in (EDIT, TRUE):
            if iid.startswith(prefix) and iid[len(prefix):] in self.by_id:
                return self.by_id[iid[len(prefix):]]
        raise ValueError(f"{self.name}: {iid!r} is not an item of this file "
                         f"(ids are {EDIT}<fact id> or {TRUE}<fact id>)")

    def twin(self, item: Item | str) -> Item:
        """The edit's true-fact item (same question, true answer), or the true item's edit."""
        iid = item if isinstance(item, str) else item.id
        f = self.fact(iid)
        return self.true(f) if iid.startswith(EDIT) else self.edit(f)

    def neighbours(self, item: Item | str, k: int, seed: int = 0) -> list[Item]:
        """Up to `k` true facts of the same subject category as `item`'s fact (never that fact),
        from the known pool, in seeded order: what an edit may disturb."""
        f = self.fact(item)
        same = [g for g in self.true_pool if g.category == f.category and g.id != f.id]
        rng = rng_for(self.name, f"neighbours:{f.id}", seed)
        return [self.true(same[i]) for i in rng.sample(range(len(same)), min(k, len(same)))]

    def generate(self, n: int, seed: int) -> list[Item]:
        """round(contradict * n) edits and the rest true facts of other questions, shuffled:
        the same question never appears twice in one draw."""
        rng = rng_for(self.name, "generate", seed)
        n_edit = round(self.contradict * n)
        what = f"{self.name} ({'known' if self.known else 'all'} facts, {len(self.categories)} categories)"
        edits = [self.edit_pool[i] for i in distinct_indices(
            rng, n_edit, len(self.edit_pool), f"{what} edits")]
        taken = {f.id for f in edits}
        rest = [f for f in self.true_pool if f.id not in taken]
        trues = [rest[i] for i in distinct_indices(rng, n - n_edit, len(rest), f"{what} true facts")]
        items = [self.edit(f) for f in edits] + [self.true(f) for f in trues]
        rng.shuffle(items)
        return items

    def pretrain_items(self, n: int, seed: int) -> list[Item]:
        """The prior the edits contradict: the true items of the editable facts (a real model
        already holds them; a toy base would be pretrained on them, as `facts` does)."""
        return cycle(rng_for(self.name, "pretrain", seed), n, len(self.edit_pool),
                     lambda i: self.true(self.edit_pool[i]), f"{self.name} editable facts")
