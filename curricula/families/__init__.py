"""Task families: one module each, registered on `curricula.FAMILIES` when imported."""

from __future__ import annotations

from curricula.families import addition, facts, jsonl, modular, parens, rpn, strings, trivia

__all__ = ["addition", "facts", "jsonl", "modular", "parens", "rpn", "strings", "trivia"]
