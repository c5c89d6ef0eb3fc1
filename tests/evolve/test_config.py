"""The run config: YAML defaults, --set overrides, tracking precedence, one-line errors, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from common.errors import EvolveError
from evolve.config import RunConfig, from_dict, load_config
from evolve.config_files import DEFAULT_CONFIG
from evolve.config_layers import apply_set
from evolve.tracking_uri import resolve_tracking


def test_default_yaml_is_the_embedded_default_and_round_trips(tmp_path: Path) -> None:
    cfg = load_config()
    assert cfg.population >= 8 and cfg.generations >= 2 and cfg.base is None
    again = from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
    (tmp_path / "c.yaml").write_text(cfg.to_yaml())
    assert load_config(tmp_path / "c.yaml") == cfg
    # every key of the embedded YAML is a real field (no silently ignored defaults)
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    assert set(raw) == set(cfg.to_dict())


def test_every_field_has_help() -> None:
    import dataclasses

    from evolve import config as c

    for cls in (c.RunConfig, c.TaskConfig, c.TrainingConfig, c.SelectionConfig, c.VariationConfig,
                c.FitnessConfig, c.AssessConfig, c.TrackingConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"


def test_set_dotted_paths_with_list_indexes_and_yaml_scalars() -> None:
    cfg = load_config(sets=["population=16", "tasks.0.family=rpn", "tasks.0.n=5",
                            "fitness.weights.final_accuracy=2", "training.max_grad_norm=null",
                            "variation.reseed=false"])
    assert cfg.population == 16 and isinstance(cfg.population, int)
    assert cfg.tasks[0].family == "rpn" and cfg.tasks[0].n == 5
    assert cfg.fitness.weights["final_accuracy"] == 2.0
    assert cfg.training.max_grad_norm is None and cfg.variation.reseed is False
    d: dict = {"tasks": [{"family": "modular"}]}
    apply_set(d, "tasks.1.family=addition")  # index == len appends
    assert d["tasks"][1] == {"family": "addition"}
    with pytest.raises(EvolveError, match="not an index"):
        apply_set(d, "tasks.5.family=x")


def test_family_params_sit_beside_family_and_round_trip() -> None:
    cfg = load_config(sets=["tasks.0.family=modular", "tasks.0.p=23"])
    assert cfg.tasks[0].params == {"p": 23}
    assert cfg.to_dict()["tasks"][0]["p"] == 23


@pytest.mark.parametrize(("sets", "needle"), [
    (["population=1"], "population 1 is below 2"),
    (["tasks.0.family=nosuch"], "valid: "),
    (["selection.operator=nosuch"], "valid: "),
    (["fitness.weights.nosuch=1"], "unknown signal 'nosuch'"),
    (["genome.curricula=[nosuch]"], "valid: "),
    (["bogus=1"], "unknown config key 'bogus'; valid: seed, population"),
    (["training.bogus=1"], "unknown config key training.'bogus'"),
    (["training.checkpoint_every=6"], "multiple of"),
    (["variation.merge=avg"], "valid: svd, linear, ties, none"),
    (["inheritance=weird"], "valid: lamarckian, darwinian"),
])
def test_bad_values_are_one_line_errors_naming_the_fix(sets: list[str], needle: str) -> None:
    with pytest.raises((EvolveError, KeyError, ValueError)) as info:
        load_config(sets=sets)
    msg = str(info.value).strip("'\"")
    assert needle in msg and "\n" not in msg


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("population: 4\ntasks: [\n  {family: modular\n")
    with pytest.raises(EvolveError) as info:
        load_config(bad)
    assert str(info.value).startswith(f"{bad}:") and "invalid YAML" in str(info.value)
    assert str(info.value).split(":")[1].isdigit()


def test_tracking_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlflow.yaml").write_text(
        "tracking_uri: sqlite:///from_file.db\nexperiment: filexp\nartifact_location: ./arts\n")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load_config()
    assert cfg.tracking.uri == "sqlite:///from_file.db" and cfg.tracking.experiment == "filexp"
    assert cfg.tracking.artifact_location == str(tmp_path / "arts")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from_env.db")
    assert load_config().tracking.uri == "sqlite:///from_env.db"
    assert load_config(sets=["tracking.uri=sqlite:///from_set.db"]).tracking.uri == \
        "sqlite:///from_set.db"
    assert resolve_tracking()["uri"] == "sqlite:///from_env.db"


def test_weights_file_replaces_weights(tmp_path: Path) -> None:
    wf = tmp_path / "w.yaml"
    wf.write_text(yaml.safe_dump({"weights": {"final_accuracy": 0.7, "oscillation": 0.3}}))
    cfg = load_config(sets=[f"fitness.weights_file={wf}"])
    assert cfg.fitness.weights == {"final_accuracy": 0.7, "oscillation": 0.3}
    wf.write_text(yaml.safe_dump({"nosuch_signal": 1.0}))
    with pytest.raises(EvolveError, match="unknown signal 'nosuch_signal'"):
        load_config(sets=[f"fitness.weights_file={wf}"])


def test_config_is_a_dataclass_with_validation() -> None:
    with pytest.raises(EvolveError, match="population"):
        RunConfig(population=1, tasks=load_config().tasks)
