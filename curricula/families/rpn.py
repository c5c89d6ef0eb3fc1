"""Reverse-polish evaluation ``3 4 + 2 *=`` → ``14`` over single digits and + - *."""

from __future__ import annotations

from functools import cache
from typing import ClassVar

from curricula.families._common import check_int, cycle, distinct_indices, rng_for, unravel
from curricula.items import Item, exact_match
from curricula.registry import FAMILIES

MAX_DEPTH = 5      # 5 operators: 21-char prompt + up to 6-char answer (9^6) stays within 28 chars
OPS = "+-*"


@cache
def shapes(depth: int) -> tuple[str, ...]:
    """Every valid RPN token pattern with `depth` operators, e.g. depth 2 → ('NNNOO', 'NNONO')."""
    out = []

    def walk(seq: str, nums: int, stack: int) -> None:
        if nums == depth + 1 and stack == 1:
            out.append(seq)
            return
        if nums < depth + 1:
            walk(seq + "N", nums + 1, stack + 1)
        if stack >= 2:
            walk(seq + "O", nums, stack - 1)

    walk("", 0, 0)
    return tuple(sorted(out))


def evaluate(tokens: list[str]) -> int:
    stack: list[int] = []
    for t in tokens:
        if t in OPS:
            b, a = stack.pop(), stack.pop()
            stack.append(a + b if t == "+" else a - b if t == "-" else a * b)
        else:
            stack.append(int(t))
    return stack[0]


@FAMILIES.named
class RPN:
    """Every RPN expression of `depth` operators; category ``chain`` (stack ≤ 2) or ``nested``."""

    name: ClassVar[str]   # from curricula/registry.py (FAMILIES.named)
    description: ClassVar[str] = "reverse-polish evaluation of single digits with + - * (`depth` operators)"

    def __init__(self, depth: int = 2) -> None:
        self.depth = check_int(self.name, "depth", depth, 1, MAX_DEPTH)
        self._shapes = shapes(self.depth)
        # index = (shape, each digit, each operator) in mixed radix
        self._radix = [len(self._shapes)] + [10] * (self.depth + 1) + [len(OPS)] * self.depth
        self.size = len(self._shapes) * 10 ** (self.depth + 1) * len(OPS) ** self.depth

    def item(self, index: int) -> Item:
        """The expression with number `index` in [0, size)."""
        parts = unravel(index, self._radix)
        shape = self._shapes[parts[0]]
        digits, ops = iter(parts[1:self.depth + 2]), iter(parts[self.depth + 2:])
        tokens = [str(next(digits)) if s == "N" else OPS[next(ops)] for s in shape]
        depth_max, h = 0, 0
        for s in shape:
            h += 1 if s == "N" else -1
            depth_max = max(depth_max, h)
        nested = (depth_max - 2) / max(1, self.depth - 1)
        muls = tokens.count("*") / self.depth
        difficulty = round(0.5 * self.depth / MAX_DEPTH + 0.25 * nested + 0.25 * muls, 4)
        return Item(id=f"rpn_{''.join(tokens).replace('*', 'x').replace('+', 'p').replace('-', 'm')}",
                    prompt=" ".join(tokens) + "=", answer=str(evaluate(tokens)), family=self.name,
                    category="chain" if depth_max <= 2 else "nested", difficulty=difficulty)

    def generate(self, n: int, seed: int) -> list[Item]:
        idx = distinct_indices(rng_for(self.name, "generate", seed), n, self.size,
                               f"rpn(depth={self.depth})")
        return [self.item(i) for i in idx]

    def verify(self, item: Item, output: str) -> bool:
        return exact_match(item, output)

    def pretrain_items(self, n: int, seed: int) -> list[Item]:
        return cycle(rng_for(self.name, "pretrain", seed), n, self.size, self.item,
                     f"rpn(depth={self.depth})")
