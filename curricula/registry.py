"""The two registries of this package: task families and curriculum strategies.

Adding one is a module under `families/` or `strategies/` plus its line here; each entry loads on
its first lookup (see `common.registry`).
"""

from __future__ import annotations

from typing import Any

from common.registry import Registry

FAMILIES: Registry[Any] = Registry("task family", {
    "addition": "curricula.families.addition:Addition",
    "facts": "curricula.families.facts:Facts",
    "jsonl": "curricula.families.jsonl:JSONL",
    "modular": "curricula.families.modular:Modular",
    "parens": "curricula.families.parens:Parens",
    "rpn": "curricula.families.rpn:RPN",
    "strings": "curricula.families.strings:Strings",
    "trivia": "curricula.families.trivia:Trivia",
    "trivia_counterfactual": "curricula.families.trivia:TriviaCounterfactual",
})
STRATEGIES: Registry[Any] = Registry("curriculum strategy", {
    "adversarial": "curricula.strategies.adversarial:Adversarial",
    "easy_first": "curricula.strategies.easy_first:EasyFirst",
    "hard_first": "curricula.strategies.hard_first:HardFirst",
    "interleaved": "curricula.strategies.interleaved:Interleaved",
    "random": "curricula.strategies.random_order:RandomOrder",
    "rehearsal": "curricula.strategies.rehearsal:Rehearsal",
})
