"""End to end against a real `mlflow server` on 127.0.0.1: `evolve run` (the CLI, a real small
evolution on the tiny base) records through the server, and the lineage read back over the REST API
is the lineage the run reported."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest_server import mlflow_server, rest  # noqa: F401  (mlflow_server is a fixture)

from evolve.cli import main as cli_main


@pytest.mark.server
def test_evolve_run_against_a_server_and_lineage_over_rest(
        mlflow_server: str, tmp_path: Path,  # noqa: F811
        sets_for: Callable[..., list[str]]) -> None:
    sets = sets_for(tmp_path, **{"tracking.uri": mlflow_server, "tracking.experiment": "e2e"})
    summary = tmp_path / "summary.json"
    argv = ["run", "--quiet", "--summary-json", str(summary)]
    for s in sets:
        argv += ["--set", s]
    assert cli_main(argv) == 0
    out = json.loads(summary.read_text())
    run_id = out["mlflow"]["run_id"]

    runs = rest(mlflow_server, "/api/2.0/mlflow/runs/search", {
        "experiment_ids": [out["mlflow"]["experiment_id"]], "max_results": 1000,
        "filter": f"tags.`mlflow.parentRunId` = '{run_id}'"})["runs"]
    learners = {}
    for run in runs:
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        metrics = {m["key"]: m["value"] for m in run["data"].get("metrics", [])}
        assert run["info"]["status"] == "FINISHED"
        learners[tags["evolve.learner_id"]] = (int(tags["evolve.generation"]),
                                               tags["evolve.operator"], tags["evolve.parents"],
                                               metrics)
    # 4 learners x 2 generations, each exactly once
    assert sorted(learners) == sorted(f"g{g}-l{i}" for g in range(2) for i in range(4))
    for gen, op, parents, metrics in learners.values():
        if gen == 0:
            assert op == "init" and parents == ""
        else:   # every child names parents that exist in the previous generation
            assert op in ("clone", "mutate", "crossover") and parents
            assert all(p in learners and learners[p][0] == 0 for p in parents.split(","))
        assert "fitness" in metrics
    # the champions the run reported are the learners the server holds, with those fitnesses
    for row in out["generations"]:
        gen, _, _, metrics = learners[row["champion"]]
        assert gen == row["generation"]
        assert metrics["fitness"] == pytest.approx(row["champion_fitness"])
    # and `evolve lineage` reads the same tree back through the server
    assert cli_main(["lineage", out["champion"], "--json",
                     "--set", f"tracking.uri={mlflow_server}",
                     "--set", "tracking.experiment=e2e"]) == 0
