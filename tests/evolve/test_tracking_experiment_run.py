"""`evolve.tracking_runs.log_experiment_run`: runs that are not evolutions (experiments, tuning studies) on a real
SQLite MLflow store: params, summary metrics, histories, tags and artifacts, read back."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from common.errors import EvolveError
from evolve.tracking import Tracker
from evolve.tracking_runs import log_experiment_run


def _tracker(tmp_path: Path) -> Tracker:
    return Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "exp", str(tmp_path / "artifacts"))


def test_experiment_run_records_params_metrics_histories_tags_and_artifacts(tmp_path: Path) -> None:
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("# report\n")
    (report / "plot.png").write_bytes(b"\x89PNG")
    extra = tmp_path / "weights.yaml"
    extra.write_text("weights: {a: 1}\n")
    tracker = _tracker(tmp_path)
    run_id = log_experiment_run(
        tracker, "grokking-p97-seed0", "experiment.grokking",
        params={"p": 97, "weight_decay": 1.0, "name": "x", "seeds": [0, 1], "long": "y" * 900},
        metrics={"memorised_step": 200, "val_after": 0.97, "undefined": None, "bad": math.nan},
        histories={"val_acc": [(0, 0.01), (100, 0.5), (200, 0.97)], "alpha": [(0, 9.3), (5, None)]},
        artifacts=[report, extra], tags={"evolve.experiment": "grokking", "evolve.run_seed": 0},
        artifact_path="report")
    client = tracker.client
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "grokking-p97-seed0"
    assert run.info.experiment_id == tracker.experiment_id
    tags = run.data.tags
    assert tags["evolve.kind"] == "experiment.grokking" and tags["evolve.run_seed"] == "0"
    assert tags["evolve.experiment"] == "grokking" and "mlflow.parentRunId" not in tags
    params = run.data.params
    assert params["p"] == "97" and params["weight_decay"] == "1.0" and params["name"] == "x"
    assert params["seeds"] == "[0, 1]" and len(params["long"]) == 500
    assert run.data.metrics == {"memorised_step": 200.0, "val_after": 0.97, "val_acc": 0.97,
                                "alpha": 9.3}
    pts = sorted(client.get_metric_history(run_id, "val_acc"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in pts] == [(0, 0.01), (100, 0.5), (200, 0.97)]
    assert len(client.get_metric_history(run_id, "alpha")) == 1      # the None point left out
    names = {a.path for a in client.list_artifacts(run_id, "report")}
    assert names == {"report/report.md", "report/plot.png", "report/weights.yaml"}
    # not an evolution: nothing that reads evolutions sees it
    with pytest.raises(EvolveError, match="no evolution in experiment"):
        tracker.latest_evolution()
    assert tracker.evolution_runs() == []


def test_missing_artifact_fails_before_any_run_is_created(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path)
    with pytest.raises(EvolveError, match=r"artifact .*nope does not exist; write it before"):
        log_experiment_run(tracker, "x", "experiment.x", artifacts=[tmp_path / "nope"])
    assert tracker.client.search_runs([tracker.experiment_id]) == []


def test_a_failure_while_logging_marks_the_run_failed(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path)
    with pytest.raises(ValueError):   # float("not a number"), after the run was created
        log_experiment_run(tracker, "x", "experiment.x", metrics={"bad": "not a number"})
    runs = tracker.client.search_runs([tracker.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FAILED"


def test_an_artifact_dir_holding_the_artifact_location_is_refused_before_any_run(
        tmp_path: Path) -> None:
    """An experiment's --out that holds tracking.artifact_location would copy into itself."""
    out = tmp_path / "out"
    (out / "artifacts").mkdir(parents=True)
    (out / "report.md").write_text("# report\n")
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "exp", str(out / "artifacts"))
    with pytest.raises(EvolveError, match=r"artifact location .*out/artifacts is inside .*out, "
                                          r"which this run logs.*outside it$"):
        log_experiment_run(tracker, "x", "experiment.x", artifacts=[out])
    assert tracker.client.search_runs([tracker.experiment_id]) == []
    log_experiment_run(tracker, "y", "experiment.y", artifacts=[out / "report.md"])   # a file is fine
