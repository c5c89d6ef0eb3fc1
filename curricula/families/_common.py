"""Helpers shared by the procedural families: parameter checks and distinct seeded draws."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# Below this many candidates `random.sample(range(size), n)` is cheap and exact; above it (e.g.
# 10^24 digit pairs) we draw indices with rejection, which is fast because n << size there.
_SAMPLE_LIMIT = 1 << 40


def check_int(family: str, name: str, value: Any, low: int, high: int) -> int:
    """An int in [low, high], else ValueError naming the parameter and the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{family}: {name} = {value!r} is invalid; valid: an integer in [{low}, {high}]")
    return value


def check_float(family: str, name: str, value: Any, low: float, high: float) -> float:
    """A number in [low, high], else ValueError naming the parameter and the range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{family}: {name} = {value!r} is invalid; valid: a number in [{low}, {high}]")
    return float(value)


def check_subset(family: str, name: str, value: Any, valid: Sequence[str]) -> tuple[str, ...]:
    """A non-empty subset of `valid` (list or comma-separated string), in `valid`'s order."""
    got = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    bad = [v for v in got if v not in valid]
    if bad or not got:
        raise ValueError(f"{family}: {name} = {value!r} is invalid; valid: a non-empty subset of "
                         f"{', '.join(valid)}")
    return tuple(v for v in valid if v in got)


def rng_for(family: str, purpose: str, seed: int) -> random.Random:
    """A private RNG per (family, purpose, seed); string seeds are hashed stably (sha512)."""
    return random.Random(f"{family}:{purpose}:{seed}")


def distinct_indices(rng: random.Random, n: int, size: int, what: str) -> list[int]:
    """`n` distinct integers in [0, size), in seeded random order; ValueError if size < n."""
    if n < 0:
        raise ValueError(f"n = {n} is invalid; ask for n >= 0 items")
    if n > size:
        raise ValueError(f"{what} has only {size} distinct items, asked for {n}")
    if size <= _SAMPLE_LIMIT:
        return rng.sample(range(size), n)
    seen: set[int] = set()
    out: list[int] = []
    while len(out) < n:
        i = rng.randrange(size)
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def cycle(rng: random.Random, n: int, size: int, make: Callable[[int], T], what: str) -> list[T]:
    """`n` pretraining items from an index space: distinct while n <= size, then more shuffled passes."""
    if size == 0:
        raise ValueError(f"{what} has no pretraining items")
    out: list[T] = []
    while len(out) < n:
        out += [make(i) for i in distinct_indices(rng, min(n - len(out), size), size, what)]
    return out


def unravel(index: int, sizes: Iterable[int]) -> list[int]:
    """Mixed-radix digits of `index` (most significant first), e.g. (7, [2, 5]) -> [1, 2]."""
    sizes = list(sizes)
    out = []
    for s in reversed(sizes):
        index, r = divmod(index, s)
        out.append(r)
    return out[::-1]


