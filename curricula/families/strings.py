"""String transforms of short lowercase strings: ``rev:abcde=`` → ``edcba``, ``sort:dbeca=`` →
``abcde``, ``rot2:abcde=`` → ``cdeab`` (rotate left by k, 1 ≤ k < length)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from curricula.families._common import check_int, check_subset, cycle, distinct_indices, rng_for
from curricula.items import Item, exact_match
from curricula.registry import FAMILIES

TRANSFORMS = ("reverse", "sort", "rotate")
_DIFFICULTY = {"reverse": 0.3, "sort": 0.6, "rotate": 0.5}   # rotate gets + up to 0.3 for mid k
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@FAMILIES.named
class Strings:
    """Every (transform, string[, k]); category = transform."""

    name: ClassVar[str]   # from curricula/registry.py (FAMILIES.named)
    description: ClassVar[str] = "reverse / sort / rotate-k of short lowercase strings (`length` letters)"

    def __init__(self, length: int = 5, transforms: Sequence[str] | str = TRANSFORMS) -> None:
        # length 10 is the widest that fits: "sort:abcdefghij=" + 10-letter answer = 26 chars.
        self.length = check_int(self.name, "length", length, 2, 10)
        self.transforms = check_subset(self.name, "transforms", transforms, TRANSFORMS)
        words = 26 ** self.length
        self._sizes = [words * (self.length - 1 if t == "rotate" else 1) for t in self.transforms]
        self.size = sum(self._sizes)

    def item(self, index: int) -> Item:
        """Item number `index` in [0, size): transform blocks in order, then k, then the word."""
        b = 0
        while index >= self._sizes[b]:
            index -= self._sizes[b]
            b += 1
        t = self.transforms[b]
        k, w = divmod(index, 26 ** self.length)
        word = "".join(_LETTERS[(w // 26 ** i) % 26] for i in range(self.length))
        if t == "reverse":
            tag, answer, d = "rev", word[::-1], _DIFFICULTY[t]
        elif t == "sort":
            tag, answer, d = "sort", "".join(sorted(word)), _DIFFICULTY[t]
        else:
            k += 1
            tag, answer = f"rot{k}", word[k:] + word[:k]
            d = _DIFFICULTY[t] + 0.3 * min(k, self.length - k) / (self.length // 2)
        difficulty = round(0.4 * self.length / 10 + 0.6 * d, 4)
        return Item(id=f"str_{tag}_{word}", prompt=f"{tag}:{word}=", answer=answer,
                    family=self.name, category=t, difficulty=difficulty)

    def generate(self, n: int, seed: int) -> list[Item]:
        idx = distinct_indices(rng_for(self.name, "generate", seed), n, self.size,
                               f"strings(length={self.length})")
        return [self.item(i) for i in idx]

    def verify(self, item: Item, output: str) -> bool:
        return exact_match(item, output)

    def pretrain_items(self, n: int, seed: int) -> list[Item]:
        return cycle(rng_for(self.name, "pretrain", seed), n, self.size, self.item,
                     f"strings(length={self.length})")
