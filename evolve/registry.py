"""One generic registry for every unit of extension.

Task families, curriculum strategies, fitness signals, selection and variation operators are each
a small file plus one registration line::

    FAMILIES = Registry[TaskFamily]("task family")

    @FAMILIES.register("modular", "a∘b mod p, including operations never pretrained on")
    class Modular: ...

A duplicate name fails loudly; an unknown name lists the valid ones (the CLI turns that into its
one-line error). This module imports nothing but the standard library so that the leaf packages
(`curricula`, `learners`, `fitness`) may use it without pulling in the orchestrator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown registry name; `str()` is a one-line message that lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    description: str
    obj: T


class Registry(Generic[T]):
    """A name → object table that refuses duplicates and explains unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, description: str) -> Callable[[T], T]:
        """Decorator: register `obj` under `name` with a one-line `description`."""

        def deco(obj: T) -> T:
            self.add(name, description, obj)
            return obj

        return deco

    def add(self, name: str, description: str, obj: T) -> None:
        if name in self._entries:
            raise ValueError(f"duplicate {self.kind} name {name!r}: each name registers once")
        if not description or "\n" in description:
            raise ValueError(f"{self.kind} {name!r} needs a one-line description")
        self._entries[name] = Entry(name, description, obj)

    def get(self, name: str) -> T:
        try:
            return self._entries[name].obj
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}"
            ) from None

    def entry(self, name: str) -> Entry[T]:
        self.get(name)
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
