"""Learning rates written as `3e-4` are floats everywhere evolve reads YAML (PyYAML alone would
read YAML 1.1 and return the string '3e-4')."""

from __future__ import annotations

from pathlib import Path

from evolve.config import load_config
from evolve.config_files import load_yaml


def test_exponent_without_dot_is_a_float() -> None:
    assert load_yaml("a: 3e-4\nb: [1e-3, 2E+2]\nc: 1.5\nd: 7\ne: abc") == {
        "a": 3e-4, "b": [1e-3, 200.0], "c": 1.5, "d": 7, "e": "abc"}


def test_set_and_config_file_take_exponent_learning_rates(tmp_path: Path) -> None:
    cfg = load_config(sets=["genome.lr=[3e-3, 3e-2]"])
    assert cfg.genome["lr"] == [3e-3, 3e-2]
    f = tmp_path / "c.yaml"
    f.write_text("genome:\n  lr: [1e-4, 1e-2]\n")
    assert load_config(f).genome["lr"] == [1e-4, 1e-2]
