"""The generic registry: duplicates fail loudly, unknown names list the valid ones."""

from __future__ import annotations

import pytest

from evolve.registry import Registry, UnknownNameError


def test_duplicate_name_is_refused() -> None:
    reg: Registry[int] = Registry("widget")
    reg.add("a", "first", 1)
    with pytest.raises(ValueError, match="duplicate widget name 'a'"):
        reg.add("a", "again", 2)


def test_unknown_name_lists_valid_names_in_one_line() -> None:
    reg: Registry[int] = Registry("widget")
    reg.add("beta", "b", 2)
    reg.add("alpha", "a", 1)
    with pytest.raises(UnknownNameError) as info:
        reg.get("gamma")
    msg = str(info.value)
    assert msg == "unknown widget 'gamma'; valid: alpha, beta"
    assert "\n" not in msg


def test_names_are_sorted_and_decorator_returns_object() -> None:
    reg: Registry[type] = Registry("thing")

    @reg.register("zed", "last")
    class Zed:
        pass

    @reg.register("abc", "first")
    class Abc:
        pass

    assert reg.names() == ["abc", "zed"]
    assert reg.get("zed") is Zed
    assert [e.description for e in reg.entries()] == ["first", "last"]


def test_description_must_be_one_line() -> None:
    reg: Registry[int] = Registry("widget")
    with pytest.raises(ValueError, match="one-line description"):
        reg.add("x", "two\nlines", 1)
