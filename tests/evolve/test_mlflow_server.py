"""Against a real `mlflow server` on 127.0.0.1: an evolution recorded through it, its lineage read
back over the REST API; and `evolve ui` serving a SQLite store."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest_server import (  # noqa: F401  (mlflow_server is a fixture)
    free_port,
    group_alive,
    mlflow_server,
    rest,
    stop_group,
    summary_of,
    synthetic_generations,
    tiny_adapter,
    wait_http,
)

from evolve.cli import main as cli_main
from evolve.records import LineageEdge
from evolve.tracking import Tracker


@pytest.mark.server
def test_evolution_through_a_server_and_lineage_over_rest(mlflow_server: str,  # noqa: F811
                                                          tmp_path: Path) -> None:
    _, adapter, _, _ = tiny_adapter(tmp_path)
    # a local artifact path is the client's disk, not the server's: the server's store is used
    tracker = Tracker(mlflow_server, "served", artifact_location="./ignored_for_servers")
    run_id = tracker.start_evolution({"seed": 3, "population": 4})
    gens = synthetic_generations(adapter)
    for g, recs in enumerate(gens):
        tracker.log_generation(g, recs, summary_of(recs))
    version = tracker.register_champion(gens[2][1], "served-champion")
    tracker.finish()
    assert not (Path.cwd() / "ignored_for_servers").exists()

    found = rest(mlflow_server, "/api/2.0/mlflow/runs/search", {
        "experiment_ids": [tracker.experiment_id], "max_results": 1000,
        "filter": f"tags.`mlflow.parentRunId` = '{run_id}'"})["runs"]
    edges = []
    for run in found:
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert run["info"]["status"] == "FINISHED"
        edges.append(LineageEdge(tags["evolve.learner_id"],
                                 tuple(p for p in tags["evolve.parents"].split(",") if p),
                                 tags["evolve.operator"], int(tags["evolve.generation"])))
    want = [LineageEdge(r.learner_id, tuple(r.parents), r.operator, r.generation)
            for g in gens for r in g]
    assert sorted(edges, key=lambda e: e.child) == sorted(want, key=lambda e: e.child)
    assert tracker.lineage_artifact(run_id) == tracker.lineage(run_id) == want

    parent = rest(mlflow_server, f"/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]
    ptags = {t["key"]: t["value"] for t in parent["data"]["tags"]}
    assert ptags["evolve.completed_generations"] == "2" and ptags["evolve.champion"] == "g2-l1"
    mv = rest(mlflow_server, "/api/2.0/mlflow/model-versions/get?" + urllib.parse.urlencode(
        {"name": "served-champion", "version": version}))["model_version"]
    assert mv["run_id"] == gens[2][1].run_id
    local = tracker.download_adapter(gens[2][1].run_id, tmp_path / "dl")
    assert (local / "adapter_model.safetensors").read_bytes() == \
        (adapter / "adapter_model.safetensors").read_bytes()


@pytest.mark.server
def test_evolve_ui_serves_the_configured_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'ui.db'}"
    Tracker(uri, "shown-in-ui", str(tmp_path / "art"))
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    proc = subprocess.Popen([sys.executable, "-m", "evolve.cli", "ui", "--port", str(port),
                             "--set", "tracking.experiment=shown-in-ui"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        exp = rest(f"http://127.0.0.1:{port}",
                   "/api/2.0/mlflow/experiments/get-by-name?experiment_name=shown-in-ui")
        assert Path(exp["experiment"]["artifact_location"]) == (tmp_path / "art").resolve()
    finally:
        stop_group(proc)
    assert not group_alive(proc.pid)   # nothing of the server is left behind


def test_evolve_ui_on_a_server_uri_just_points_at_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["ui", "--set", "tracking.uri=http://127.0.0.1:5999"]) == 0
    assert "already a server: open http://127.0.0.1:5999" in capsys.readouterr().out
