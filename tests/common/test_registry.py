"""The generic registry: duplicates fail loudly, unknown names list the valid ones."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from common.registry import Registry, UnknownNameError


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


def test_lazy_entry_is_listed_without_import_and_loads_on_first_lookup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lazy_plugin_mod.py").write_text(
        'class Widget:\n    """A widget for the lazy test.\n\n    More text."""\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry[type] = Registry("widget", {"w": "lazy_plugin_mod:Widget"})
    assert reg.names() == ["w"] and "w" in reg and len(reg) == 1
    assert "lazy_plugin_mod" not in sys.modules                      # listing imported nothing
    cls = reg.get("w")
    assert cls is sys.modules["lazy_plugin_mod"].Widget
    assert reg.entry("w").description == "A widget for the lazy test"   # docstring's first line
    monkeypatch.delitem(sys.modules, "lazy_plugin_mod")


def test_lazy_entries_refuse_duplicates_and_bad_targets() -> None:
    reg: Registry[object] = Registry("widget", {"a": "json:loads"})
    with pytest.raises(ValueError, match="duplicate widget name 'a'"):
        reg.add("a", "again", 1)
    with pytest.raises(ValueError, match="duplicate widget name 'a'"):
        reg.lazy("a", "json:dumps")
    with pytest.raises(ValueError, match="'module:object'"):
        reg.lazy("b", "json.loads")


def test_lazy_entry_whose_name_disagrees_fails_loudly() -> None:
    reg: Registry[object] = Registry("family", {"modular": "curricula.families.addition:Addition"})
    with pytest.raises(ValueError, match="whose name is 'addition'"):
        reg.get("modular")


def test_lazy_entry_loads_once_when_threads_look_it_up_together(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # learner groups train in threads and look signals up at once; a slow import keeps the
    # threads inside the load together
    from concurrent.futures import ThreadPoolExecutor

    (tmp_path / "slow_plugin_mod.py").write_text(
        "import time\ntime.sleep(0.2)\n\ndef fn():\n    \"\"\"A slow plugin.\"\"\"\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry[object] = Registry("plugin", {"slow": "slow_plugin_mod:fn"})
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: reg.get("slow"), range(4)))
    assert all(g is sys.modules["slow_plugin_mod"].fn for g in got)
    monkeypatch.delitem(sys.modules, "slow_plugin_mod")


def test_named_gives_a_class_the_name_its_table_line_gives_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "named_plugin_mod.py").write_text(
        "from typing import ClassVar\n\nfrom named_plugin_reg import REG\n\n\n"
        "@REG.named\nclass Gadget:\n    \"\"\"A gadget.\"\"\"\n\n    name: ClassVar[str]\n\n\n"
        "class Stray:\n    \"\"\"Not in the table.\"\"\"\n")
    (tmp_path / "named_plugin_reg.py").write_text(
        "from common.registry import Registry\n\n"
        "REG = Registry('gadget', {'gadget': 'named_plugin_mod:Gadget'})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from named_plugin_reg import REG

    cls = REG.get("gadget")
    assert cls.name == "gadget"                     # written once, in the table
    with pytest.raises(ValueError, match="not in the registry's table"):
        REG.named(sys.modules["named_plugin_mod"].Stray)
    for mod in ("named_plugin_mod", "named_plugin_reg"):
        monkeypatch.delitem(sys.modules, mod)


def test_every_registered_class_carries_its_table_name() -> None:
    import curricula

    for reg in (curricula.FAMILIES, curricula.STRATEGIES):
        for entry in reg.entries():
            assert entry.obj.name == entry.name
