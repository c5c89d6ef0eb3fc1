"""The default base is built once per (config, recipe), reused, never half-written, and reported.

Every test builds a TINY default (a few thousand parameters, a few steps): never the real one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.errors import EvolveError
from evolve.basemodel import (
    TMP_PREFIX,
    CorpusSpec,
    build_estimate,
    cache_key,
    default_base,
    resolve_base,
)
from learners.base import BaseConfig, load_base

TINY = BaseConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_len=64)
RECIPE = CorpusSpec(per_family=200, steps=8, batch_size=16, eval_items=16)


def _weights(path: Path) -> Path:
    return path / "model.safetensors"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return default_base(tmp_path_factory.mktemp("cache"), progress=False, config=TINY, spec=RECIPE)


def test_build_writes_a_loadable_base_and_a_report(built: Path) -> None:
    assert built.name == f"base-{cache_key(TINY, RECIPE)}"
    model, tok = load_base(built)
    assert model.config.hidden_size == 16 and tok.eos_token_id is not None
    report = json.loads((built / "report.json").read_text())
    assert len(report["loss_curve"]) == RECIPE.steps
    assert set(report["families"]) == set(RECIPE.families)
    for fam in report["families"].values():
        assert 0 <= fam["accuracy"] <= 1 and fam["n"] == RECIPE.eval_items and fam["categories"]
    cf = report["counterfactual"]
    assert cf["n"] > 0 and {"accuracy", "mean_prob", "prior_accuracy", "prior_mean_prob"} <= set(cf)
    assert report["parameters"] == sum(p.numel() for p in model.parameters())


def test_second_call_reuses_the_cache(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stamp = _weights(built).stat().st_mtime_ns
    again = default_base(built.parent, progress=False, config=TINY, spec=RECIPE)
    assert again == built and _weights(built).stat().st_mtime_ns == stamp
    assert "building" not in capsys.readouterr().err


def test_build_is_deterministic(built: Path, tmp_path: Path) -> None:
    other = default_base(tmp_path, progress=False, config=TINY, spec=RECIPE)
    a, _ = load_base(built)
    b, _ = load_base(other)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_leftover_of_a_killed_build_is_ignored_and_cleaned(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A build killed mid-way leaves only its temp dir; the next call builds a sound base."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    key = f"base-{cache_key(TINY, RECIPE)}"
    junk = tmp_path / f"{TMP_PREFIX}{key}-{dead}-abc123"
    junk.mkdir()
    (junk / "config.json").write_text("{}")       # half-written: no weights
    path = default_base(tmp_path, progress=False, config=TINY, spec=RECIPE)
    assert path == tmp_path / key and _weights(path).is_file()
    assert not junk.exists()
    err = capsys.readouterr().err
    assert "building the default base model once" in err and "time depends on the model size" in err
    assert not list(tmp_path.glob(TMP_PREFIX + "*"))  # our own temp dir is gone too


def test_key_depends_on_config_and_recipe() -> None:
    keys = {cache_key(TINY, RECIPE), cache_key(BaseConfig(), RECIPE),
            cache_key(TINY, CorpusSpec(per_family=200, steps=9, batch_size=16, eval_items=16))}
    assert len(keys) == 3 and cache_key(TINY, RECIPE) == cache_key(TINY, RECIPE)


def test_resolve_base_validates_a_given_path(built: Path, tmp_path: Path) -> None:
    assert resolve_base(str(built)) == built
    with pytest.raises(EvolveError, match="no config.json"):
        resolve_base(str(tmp_path))


def test_unwritable_cache_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(EvolveError, match="EVOLVE_CACHE") as err:
        default_base(tmp_path / "file" / "cache", progress=False, config=TINY, spec=RECIPE)
    assert "\n" not in str(err.value)


def test_build_estimate_scales_the_measured_step_time() -> None:
    """The default's message: ~94 ms a step on 2 free cores, ~175 on one (docs/base-model.md)."""
    assert build_estimate(BaseConfig(), CorpusSpec()).startswith("about 5 min on 2 free cores, 9 on one")
    assert build_estimate(BaseConfig(), CorpusSpec(steps=6000)).startswith("about 9 min on 2 free cores")
    assert build_estimate(TINY, RECIPE) == "time depends on the model size"
