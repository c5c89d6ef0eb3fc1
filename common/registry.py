"""One generic registry for every unit of extension.

Task families, curriculum strategies, fitness signals, selection and variation operators are each
a small file plus one registration line in their package's table of lazy entries::

    FAMILIES = Registry[Any]("task family", {
        "addition": "curricula.families.addition:Addition",
        ...
    })

A lazy entry is a ``"module:object"`` placeholder (lm-eval's `Registry` is the model): `names()`
lists it without importing anything, and the first `get` of the name imports the module and takes
the object, so nobody imports a package for its side effects. The entry's description is the
object's `description` attribute (a class's ClassVar, a `Signal`'s field) or else the first line
of its docstring (less its final period): written once, next to the code it describes. A class
gets its `name` ClassVar from the table, by the `named` decorator, so the name too is written once
(an object that carries some other `name` fails on loading).

Objects built at run time (tests, plug-ins) register eagerly with `add` or the `register`
decorator. A duplicate name fails loudly; an unknown name lists the valid ones (the CLI turns that
into its one-line error). This module imports nothing but the standard library.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
C = TypeVar("C", bound=type)


class UnknownNameError(KeyError):
    """An unknown registry name; `str()` is a one-line message that lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    description: str
    obj: T


def describe(obj: object) -> str:
    """`obj.description`, else the first line of its docstring without its final period, else ""."""
    text = getattr(obj, "description", None)
    if isinstance(text, str) and text:
        return text
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0].strip().removesuffix(".") if doc else ""


class Registry(Generic[T]):
    """A name → object table that refuses duplicates, explains unknown names and loads lazily."""

    def __init__(self, kind: str, lazy: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._lazy: dict[str, str] = {}
        self._targets: dict[str, str] = {}   # "module:object" -> name, kept after loading
        self._lock = threading.RLock()   # learner groups train in threads and look names up at once
        for name, target in (lazy or {}).items():
            self.lazy(name, target)

    def lazy(self, name: str, target: str) -> None:
        """Register `name` as the placeholder ``"module:object"``, loaded on its first lookup."""
        module, sep, attr = target.partition(":")
        if not (module and sep and attr):
            raise ValueError(f"{self.kind} {name!r}: lazy target must be 'module:object', "
                             f"got {target!r}")
        self._refuse_duplicate(name)
        self._lazy[name] = target
        self._targets[target] = name

    def named(self, cls: C) -> C:
        """Class decorator: set `cls.name` to the name its ``"module:Class"`` line in this
        registry's table gives it, so the table is the one place a registered class's name is
        written (the class keeps only the annotation `name: ClassVar[str]`)."""
        target = f"{cls.__module__}:{cls.__qualname__}"
        if target not in self._targets:
            raise ValueError(f"{self.kind} {target} is not in the registry's table; add its "
                             "'name': 'module:Class' line")
        cls.name = self._targets[target]  # type: ignore[attr-defined]
        return cls

    def register(self, name: str, description: str) -> Callable[[T], T]:
        """Decorator: register `obj` under `name` with a one-line `description`, now."""

        def deco(obj: T) -> T:
            self.add(name, description, obj)
            return obj

        return deco

    def add(self, name: str, description: str, obj: T) -> None:
        """Register `obj` under `name` now (not lazily)."""
        self._refuse_duplicate(name)
        self._check_description(name, description)
        self._entries[name] = Entry(name, description, obj)

    def _refuse_duplicate(self, name: str) -> None:
        if name in self._entries or name in self._lazy:
            raise ValueError(f"duplicate {self.kind} name {name!r}: each name registers once")

    def _check_description(self, name: str, description: str) -> None:
        if not description or "\n" in description:
            raise ValueError(f"{self.kind} {name!r} needs a one-line description")

    def _load(self, name: str) -> Entry[T]:
        target = self._lazy[name]
        module, _, attr = target.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        own = getattr(obj, "name", name)
        if isinstance(own, str) and own != name:
            raise ValueError(f"{self.kind} {name!r} loads {target}, whose name is {own!r}; "
                             "make the two agree")
        description = describe(obj)
        self._check_description(name, description)
        entry: Entry[T] = Entry(name, description, obj)
        self._entries[name] = entry
        del self._lazy[name]
        return entry

    def entry(self, name: str) -> Entry[T]:
        """The entry called `name`, loading it if it is still a placeholder."""
        if name in self._entries:
            return self._entries[name]
        with self._lock:
            if name in self._lazy:
                return self._load(name)
            if name in self._entries:     # another thread loaded it while this one waited
                return self._entries[name]
        raise UnknownNameError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}")

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def names(self) -> list[str]:
        """Every registered name, sorted; loads nothing."""
        return sorted(self._entries.keys() | self._lazy.keys())

    def entries(self) -> list[Entry[T]]:
        """Every entry, sorted by name (loads the placeholders)."""
        return [self.entry(n) for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries.keys() | self._lazy.keys())
