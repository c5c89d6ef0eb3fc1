"""The step primitives below both training and the assessment: train in lockstep, probe, judge.

`evolve.train` (a generation's training of one group) and `evolve.assess` (the learning-speed
assessment) both drive a `Population` through these; neither imports the other's internals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from curricula.items import Item
    from learners.population import Population

Pair = tuple[str, str]


def pairs(items: Sequence[Item]) -> list[Pair]:
    return [(it.prompt, it.answer) for it in items]


def probe_items(pop: Population, items: Sequence[Item], max_new_tokens: int = 32,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every learner's verdicts `correct` [P, N] bool, answer probabilities `prob` [P, N] and
    self-confidence `self_prob` [P, N] (probability of its own greedy answer, `ProbeResult`).

    Exact items: the teacher-forced probe (every answer token and eos the argmax = greedy
    decoding's verdict). Key-term items (`exact` False): every learner's greedy continuation of
    the prompt (batched `generate()`, at most `max_new_tokens` tokens) is correct iff it contains
    every key term after NFKC + casefolding (`curricula.items.key_terms_match`, the judge of the
    key-term families), so "It is water" answers "H2O" with key term "water". Their `prob` is
    still the teacher-forced probability of the reference answer: a free-form answer has no
    single probability, and the confidence signals then mean the same for both kinds of item
    (`self_prob` too: the teacher-forced probability of the greedy reading of the reference).
    """
    from curricula.items import key_terms_match
    from learners.probe import generate_greedy

    res = pop.probe(pairs(items))
    correct = np.array(res.correct, dtype=bool)
    prob = np.asarray(res.prob, dtype=np.float64)
    judged = [j for j, it in enumerate(items) if not getattr(it, "exact", True)]
    if judged:
        texts = generate_greedy(pop.model, pop.tokenizer, pop.P, [items[j].prompt for j in judged],
                                max_new_tokens, pop.probe_chunk, pop.device, fast=pop.fast)
        for i, j in enumerate(judged):
            terms = items[j].key_terms or (items[j].answer,)
            correct[:, j] = [key_terms_match(terms, texts[p][i]) for p in range(pop.P)]
    return correct, prob, np.asarray(res.self_prob, dtype=np.float64)


def train_steps(pop: Population, streams: list[list[list[Pair]]], on_step: Callable[[], None] | None = None,
                ) -> tuple[np.ndarray, list[int | None]]:
    """Train every learner through its own list of batches in lockstep; [P] mean loss, failing step.

    Learners with fewer batches than the longest sit out the remaining steps (no update at all: their
    AdamW state and step count stay as if trained alone).
    """
    P = len(streams)
    total, count = np.zeros(P), np.zeros(P)
    failed_at: list[int | None] = [None] * P
    for t in range(max((len(s) for s in streams), default=0)):
        active = [t < len(s) for s in streams]
        losses = pop.train_step([s[t] if a else [] for s, a in zip(streams, active, strict=True)],
                                active=active)
        for p in range(P):
            if active[p] and np.isfinite(losses[p]):
                total[p] += losses[p]
                count[p] += 1
            elif active[p] and failed_at[p] is None:
                failed_at[p] = t
        if on_step is not None:
            on_step()
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan), failed_at
