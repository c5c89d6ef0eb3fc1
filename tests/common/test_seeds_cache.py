"""Seed derivation and the cache root: stable, distinct, and where the environment says."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.cache import cache_root
from common.seeds import derive_seed


def test_derive_seed_is_stable_and_distinct() -> None:
    assert derive_seed(0, "gen", 1) == derive_seed(0, "gen", 1)
    assert len({derive_seed(s, "gen", g) for s in range(5) for g in range(5)}) == 25
    assert 0 <= derive_seed(123, "x") < 2**31


def test_cache_root_follows_evolve_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EVOLVE_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("EVOLVE_CACHE")
    assert cache_root() == Path.home() / ".cache" / "evolve"
    assert cache_root(tmp_path / "x") == tmp_path / "x"
