"""Multi-digit addition ``123+456=`` → ``579``; difficulty grows with digits and carries."""

from __future__ import annotations

from typing import ClassVar

from curricula.families._common import check_int, cycle, distinct_indices, rng_for
from curricula.items import Item, exact_match
from curricula.registry import FAMILIES

MAX_DIGITS = 12


def carries(a: int, b: int) -> int:
    """How many column carries the schoolbook sum a + b makes (e.g. 58 + 67 → 2)."""
    n, c = 0, 0
    while a or b:
        c = (a % 10 + b % 10 + c) // 10
        n += c
        a, b = a // 10, b // 10
    return n


@FAMILIES.named
class Addition:
    """Operands uniform in [0, 10^digits); category ``carryK`` for K column carries."""

    name: ClassVar[str]   # from curricula/registry.py (FAMILIES.named)
    description: ClassVar[str] = "multi-digit addition a+b, `digits` per operand (difficulty grows with it)"

    def __init__(self, digits: int = 3) -> None:
        # 3 digits: "123+456=" + "579" is 11 chars, far inside the tiny base's 64-char context.
        self.digits = check_int(self.name, "digits", digits, 1, MAX_DIGITS)

    def item(self, a: int, b: int) -> Item:
        c = carries(a, b)
        width = len(str(max(a, b)))
        # Half from operand length (relative to the 12-digit maximum), half from carries per digit.
        difficulty = round(0.5 * width / MAX_DIGITS + 0.5 * c / self.digits, 4)
        return Item(id=f"add_{a}_{b}", prompt=f"{a}+{b}=", answer=str(a + b), family=self.name,
                    category=f"carry{c}", difficulty=difficulty)

    def _draw(self, n: int, purpose: str, seed: int, repeat: bool) -> list[Item]:
        m = 10 ** self.digits
        rng = rng_for(self.name, purpose, seed)
        what = f"addition(digits={self.digits})"
        if repeat:
            return cycle(rng, n, m * m, lambda i: self.item(*divmod(i, m)), what)
        return [self.item(*divmod(i, m)) for i in distinct_indices(rng, n, m * m, what)]

    def generate(self, n: int, seed: int) -> list[Item]:
        return self._draw(n, "generate", seed, repeat=False)

    def verify(self, item: Item, output: str) -> bool:
        return exact_match(item, output)

    def pretrain_items(self, n: int, seed: int) -> list[Item]:
        """Additions of the same size: the base model learns the format and some of the skill."""
        return self._draw(n, "pretrain", seed, repeat=True)
