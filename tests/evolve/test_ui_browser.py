"""`evolve ui` as a person sees it: a real MLflow UI server on a real SQLite store, driven by a real
headless Chromium. Screenshots go to tests/output/<test>/ ($EVOLVE_TEST_OUTPUT overrides)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import Browser
from conftest_server import (
    free_port,
    stop_group,
    summary_of,
    synthetic_generations,
    tiny_adapter,
    wait_http,
)

from evolve import tracking_view as view
from evolve.tracking import Tracker

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Path:
    root = Path(os.environ.get("EVOLVE_TEST_OUTPUT", REPO / "tests" / "output"))
    out = root / request.node.name
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def store(tmp_path: Path) -> dict[str, str]:
    """An evolution as `evolve run` records it: named, three generations, a registered champion."""
    _, adapter, _, _ = tiny_adapter(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "evolve", str(tmp_path / "art"))
    tracker.run_name = view.evolution_name("evolve", 1, "smoke.yaml", ["generations=3"])
    run_id = tracker.start_evolution({"seed": 1})
    gens = synthetic_generations(adapter)
    for g, recs in enumerate(gens):
        tracker.log_generation(g, recs, summary_of(recs))
    version = tracker.register_champion(gens[2][1], "evolve-champion")
    tracker.finish()
    return {"uri": uri, "run": run_id, "exp": tracker.experiment_id, "version": version,
            "champion_run": str(gens[2][1].run_id)}


@pytest.fixture
def ui(store: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """`evolve ui` on the store; yields the URL it prints."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "evolve.cli", "ui", "--port", str(port)],
                            cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": store["uri"],
                                                  "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield first.split(" at ", 1)[1].split()[0]
    finally:
        stop_group(proc)


@pytest.mark.server
@pytest.mark.browser
def test_the_ui_opens_on_the_evolution_with_its_columns_links_and_champion(
        ui: str, store: dict[str, str], tmp_path: Path, shots: Path) -> None:
    base = ui.split("/#/")[0]
    assert ui == view.experiment_url(base, store["exp"])  # what `evolve ui` prints
    b = Browser(tmp_path / "profile")
    try:
        # 1. the printed link: the training runs table, evolve's saved view and its columns
        b.goto(ui)
        text = b.wait_for("evolve.operator")
        b.screenshot(shots / "1_runs_table.png")
        assert "Model training" in text and "matching runs" in text
        assert view.VIEW_NAME in text
        for col in ("fitness", "evolve.generation", "evolve.operator", "evolve.parents"):
            assert f"\n{col}\n" in text, col
        assert "evolve · seed 1 · smoke · generations=3" in text
        assert "Overview\nObservability" not in text  # not the GenAI traces overview
        # 2. the evolution run's page: its description links the tree and plots, one click each
        b.goto(base + "/" + view.run_route(store["exp"], store["run"]))
        text = b.wait_for("Family tree")
        assert "Champion g2-l1 (fitness 1.400)" in text
        links = b.js("Object.fromEntries(Array.from(document.querySelectorAll('a'))"
                     ".map(a => [a.innerText.trim(), a.getAttribute('href')]))")
        assert links["Family tree"] == view.run_route(store["exp"], store["run"],
                                                      "plots/lineage.html")
        assert links["its run"] == view.run_route(store["exp"], store["champion_run"])
        assert links[f"evolve-champion v{store['version']}"] == \
            f"#/models/evolve-champion/versions/{store['version']}"
        # the fitness plot is inline: the server answered the image
        assert b.wait_js("Array.from(document.images).filter(i => i.src.includes('fitness.png'))"
                         ".map(i => i.naturalWidth).filter(w => w > 100)")
        b.js("document.querySelector('a[href*=\"lineage.html\"]').scrollIntoView()")
        b.screenshot(shots / "2_evolution_run.png")
        # 3. the link's target: MLflow's artifact viewer on the family tree
        b.goto(base + "/" + links["Family tree"])
        b.wait_for("plots/lineage.html")
        # the viewer renders the page in an iframe (a blob of the artifact's bytes)
        frames = b.wait_js("Array.from(document.querySelectorAll('iframe')).map(f => f.src)")
        assert frames[0].startswith("blob:")
        b.js("new Promise(r => setTimeout(r, 1500))")  # let the tree's script draw it
        b.screenshot(shots / "3_family_tree.png")
        # 4. the champion's model version: linked to its run, its ancestry and the evolution
        b.goto(f"{base}/#/models/evolve-champion/versions/{store['version']}")
        text = b.wait_for("Ancestry, oldest first")
        assert "g2-l1: crossover of g1-l2 × g1-l0" in text and "g0-l2: init" in text
        hrefs = b.js("Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href'))")
        assert any(h and store["champion_run"] in h for h in hrefs)   # MLflow's "Source run"
        assert any(h and h.startswith(view.run_route(store["exp"], store["run"])) for h in hrefs)
        b.screenshot(shots / "4_champion_version.png")
    finally:
        b.close()
    assert urllib.parse.urlparse(ui).fragment.endswith("viewStateShareKey=evolve")
