"""Balanced-brackets check ``([]{})?`` → ``yes``, ``([)]?`` → ``no``, with mixed bracket kinds.

Half the items (rounded by the seed) are balanced strings drawn uniformly; the others are near
misses: a balanced string with two characters swapped, one bracket's kind changed or one bracket
flipped, so that "no" cannot be read off the first character.
"""

from __future__ import annotations

import random
from functools import cache
from math import comb
from typing import ClassVar

from curricula.families._common import check_int, rng_for
from curricula.items import Item, exact_match
from curricula.registry import FAMILIES

PAIRS = ("()", "[]", "{}")
_CODE = {c: "abcdef"[i] for i, c in enumerate("()[]{}")}   # ids stay [a-z0-9_] (MLflow-safe keys)


@cache
def _paths(r: int, h: int) -> int:
    """Bracket paths of r more characters from depth h back to depth 0 (ballot numbers)."""
    if h < 0 or h > r or (r - h) % 2:
        return 0
    if r == 0:
        return 1
    return _paths(r - 1, h + 1) + _paths(r - 1, h - 1)


def balanced(s: str) -> bool:
    stack = []
    for c in s:
        if c in "([{":
            stack.append(c)
        elif not stack or PAIRS["([{".index(stack.pop())][1] != c:
            return False
    return not stack


def max_depth(s: str) -> int:
    h = m = 0
    for c in s:
        h = max(0, h + (1 if c in "([{" else -1))
        m = max(m, h)
    return m


@FAMILIES.named
class Parens:
    """Strings of `length` brackets of `kinds` kinds; category balanced / swap / kind / flip."""

    name: ClassVar[str]   # from curricula/registry.py (FAMILIES.named)
    description: ClassVar[str] = "balanced-brackets check over (), [] and {} (answer yes / no), `length` chars"

    def __init__(self, length: int = 8, kinds: int = 3) -> None:
        self.length = check_int(self.name, "length", length, 2, 20)
        if self.length % 2:
            raise ValueError(f"parens: length = {length} is odd; valid: an even integer in [2, 20]")
        self.kinds = check_int(self.name, "kinds", kinds, 1, 3)
        half = self.length // 2
        self.n_balanced = comb(2 * half, half) // (half + 1) * self.kinds ** half   # Catalan × kinds
        self.n_total = (2 * self.kinds) ** self.length

    def balanced_string(self, index: int) -> str:
        """The balanced string number `index` in [0, n_balanced) (unranked, so draws are exact)."""
        out: list[str] = []
        stack: list[int] = []
        r = self.length
        for _ in range(self.length):
            r -= 1
            h = len(stack)
            w_open = _paths(r, h + 1) * self.kinds ** ((r - h - 1) // 2) if h + 1 <= r else 0
            for k in range(self.kinds):
                if index < w_open:
                    out.append(PAIRS[k][0])
                    stack.append(k)
                    break
                index -= w_open
            else:
                out.append(PAIRS[stack.pop()][1])
        return "".join(out)

    def item(self, s: str, category: str) -> Item:
        difficulty = round(0.5 * self.length / 20 + 0.5 * max_depth(s) / (self.length // 2), 4)
        return Item(id="parens_" + "".join(_CODE[c] for c in s), prompt=s + "?",
                    answer="yes" if balanced(s) else "no", family=self.name,
                    category=category, difficulty=difficulty)

    def _near_miss(self, s: str, rng: random.Random) -> tuple[str, str]:
        chars, i = list(s), rng.randrange(len(s))            
        how = rng.choice(["swap", "flip"] + (["kind"] if self.kinds > 1 else []))
        if how == "swap":
            j = rng.randrange(len(s))                        
            chars[i], chars[j] = chars[j], chars[i]
        else:
            k = "()[]{}".index(chars[i])
            if how == "flip":
                chars[i] = "()[]{}"[k ^ 1]
            else:
                other = rng.choice([j for j in range(self.kinds) if j != k // 2])
                chars[i] = PAIRS[other][k % 2]
        return "".join(chars), how

    def _draw(self, n: int, rng: random.Random) -> list[Item]:
        if n > self.n_total:
            raise ValueError(f"parens(length={self.length}, kinds={self.kinds}) has only "
                             f"{self.n_total} distinct items, asked for {n}")
        n_yes = min(n // 2 + (n % 2 and rng.random() < 0.5), self.n_balanced)
        yes = [self.balanced_string(i) for i in rng.sample(range(self.n_balanced), n_yes)]
        items = [self.item(s, "balanced") for s in yes]
        seen: set[str] = set(yes)
        tries = 0
        while len(items) < n:
            tries += 1
            if tries > 200 * n + 1000:   # near misses are plentiful from length 6 on; this is a guard
                raise ValueError(f"parens(length={self.length}, kinds={self.kinds}) found only "
                                 f"{len(seen)} distinct items, asked for {n}; raise length")
            src = self.balanced_string(rng.randrange(self.n_balanced))
            s, how = self._near_miss(src, rng)
            if s not in seen and not balanced(s):
                seen.add(s)
                items.append(self.item(s, how))
        rng.shuffle(items)
        return items

    def generate(self, n: int, seed: int) -> list[Item]:
        return self._draw(n, rng_for(self.name, "generate", seed))

    def verify(self, item: Item, output: str) -> bool:
        return exact_match(item, output)

    def pretrain_items(self, n: int, seed: int) -> list[Item]:
        """Same distribution; distinct up to the family's size, then further passes."""
        rng = rng_for(self.name, "pretrain", seed)
        out: list[Item] = []
        while len(out) < n:
            out += self._draw(min(n - len(out), self.n_total // 2), rng)
        return out
