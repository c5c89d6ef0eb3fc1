"""The wheel ships the default configs, and a non-editable copy of the package finds them.

The wheel is built from a copy of the sources in tmp_path (setuptools writes `build/` beside the
sources), with the venv's own setuptools (no build isolation: nothing is downloaded)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHIPPED = {"default", "smoke", "tune", "real", "grokking", "grokking_lora"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("setuptools")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for pkg in ("common", "evolve", "learners", "fitness", "curricula"):
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("evolve-*.whl")
    return whl


def test_wheel_ships_the_configs(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n for n in names if n.startswith("evolve/configs/")} == \
        {f"evolve/configs/{c}.yaml" for c in SHIPPED}
    assert "curricula/data/sample.jsonl" in names


def test_installed_copy_loads_its_shipped_configs(wheel: Path, tmp_path: Path) -> None:
    """The wheel unpacked as site-packages would hold it, imported ahead of the editable checkout,
    run from a directory with no configs/: load_config finds default, smoke, real (with the trivia
    data it names) and tune."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = (
        "import json, evolve, evolve.config as c, evolve.config_files as f\n"
        "import evolve.commands.tune as t\n"
        "cfgs = {n: c.load_config(None if n == 'default' else n)\n"
        "        for n in ('default', 'smoke', 'real')}\n"
        "print(json.dumps({'evolve': evolve.__file__, 'default': str(f.DEFAULT_CONFIG),\n"
        "  'online': str(t.ONLINE_CONFIG), 'shipped': f.shipped_configs(),\n"
        "  'population': {n: x.population for n, x in cfgs.items()},\n"
        "  'tune': c.load_config(t.ONLINE_CONFIG).population}))\n")
    env = {**os.environ, "PYTHONPATH": str(site), "MLFLOW_TRACKING_URI": "sqlite:///x.db"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(got["evolve"]).is_relative_to(site)        # the wheel's copy, not the checkout
    assert Path(got["default"]).is_relative_to(site) and Path(got["online"]).is_relative_to(site)
    assert set(got["shipped"]) == SHIPPED
    assert got["population"] == {"default": 8, "smoke": 4, "real": 8} and got["tune"] == 6


def test_checkout_configs_paths_still_work() -> None:
    from evolve.config import load_config
    from evolve.config_files import DEFAULT_CONFIG, config_file

    assert (REPO / "configs" / "smoke.yaml").resolve() == DEFAULT_CONFIG.parent / "smoke.yaml"
    assert load_config(REPO / "configs" / "smoke.yaml").population == 4
    assert config_file("smoke") == config_file("smoke.yaml") == DEFAULT_CONFIG.parent / "smoke.yaml"


def test_unknown_config_names_the_shipped_ones(tmp_path: Path) -> None:
    from common.errors import EvolveError
    from evolve.config import load_config

    with pytest.raises(EvolveError, match=r"nope: no such file; pass an existing YAML file or a "
                                          r"shipped config \(default, grokking, grokking_lora, real, smoke, tune\)"):
        load_config("nope")
    with pytest.raises(EvolveError, match="no such file"):
        load_config(tmp_path / "smoke.yaml")     # a path is a path, never a shipped name


def test_wheel_ships_the_built_embedded_base(wheel: Path) -> None:
    """A fresh install needs no 5-minute pretraining: the weights and the manifest are in it."""
    from evolve import shipped_base

    names = set(zipfile.ZipFile(wheel).namelist())
    for f in (*shipped_base.FILES, shipped_base.MANIFEST):
        assert f"evolve/embedded_base/{f}" in names
