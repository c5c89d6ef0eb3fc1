"""`evolve.config_layers.tracking_settings`: the tracking section as `load_config` resolves it, without the
rest of the config; what `evolve ui`, `evolve lineage`, `evolve replay` and the experiments open."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from common.errors import EvolveError
from evolve.config import load_config
from evolve.config_layers import tracking_settings

CASES = {
    "env only": (None, [], "sqlite:///env.db"),
    "file beats env": ({"uri": "sqlite:///file.db", "experiment": "from-file"}, [], "sqlite:///env.db"),
    "set beats file": ({"uri": "sqlite:///file.db", "draw_plots": "every"},
                       ["tracking.uri=sqlite:///set.db", "tracking.experiment=from-set",
                        "tracking.model_name=m"], "sqlite:///env.db"),
    "mlflow.yaml of the working directory": (None, ["tracking.draw_plots=every"], None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_tracking_settings_equal_what_load_config_resolves(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    section, sets, env = CASES[name]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlflow.yaml").write_text("tracking_uri: sqlite:///cwd.db\nexperiment: cwd-exp\n"
                                          "artifact_location: arts\n")
    if env is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", env)
    path = None
    if section is not None:
        path = tmp_path / "run.yaml"
        path.write_text("population: 3\ntracking: " + repr(section).replace("'", "") + "\n")
    got = tracking_settings(path, sets)
    assert got == dataclasses.asdict(load_config(path, sets).tracking)
    want_uri = {"env only": "sqlite:///env.db", "file beats env": "sqlite:///file.db",
                "set beats file": "sqlite:///set.db",
                "mlflow.yaml of the working directory": "sqlite:///cwd.db"}[name]
    assert got["uri"] == want_uri
    assert got["artifact_location"] == str(tmp_path / "arts")   # relative to the working dir
    if name == "set beats file":
        assert (got["experiment"], got["model_name"], got["draw_plots"]) == ("from-set", "m", "every")


def test_only_the_tracking_section_is_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only command must open the store even when the rest would not validate."""
    monkeypatch.chdir(tmp_path)
    sets = ["population=1", "tracking.uri=sqlite:///x.db"]
    with pytest.raises(EvolveError, match="population 1 is below 2"):
        load_config(None, sets)
    assert tracking_settings(None, sets)["uri"] == "sqlite:///x.db"
    with pytest.raises(EvolveError, match="expected key=value"):
        tracking_settings(None, ["tracking.uri"])


def test_ui_flags_go_through_the_same_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evolve.commands import ui
    from evolve.tracking_flags import tracking_args, tracking_of_args

    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text("tracking: {experiment: e1}\n")
    p = argparse.ArgumentParser()
    tracking_args(p)
    args = p.parse_args(["--config", "run.yaml", "--set", "tracking.uri=sqlite:///u.db"])
    assert tracking_of_args(args) == tracking_settings("run.yaml", ["tracking.uri=sqlite:///u.db"])
    assert tracking_of_args(args)["experiment"] == "e1"
    cmd = ui.command(tracking_of_args(args), "127.0.0.1", 5001)
    assert cmd[cmd.index("--backend-store-uri") + 1] == "sqlite:///u.db"
