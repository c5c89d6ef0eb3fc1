"""`evolve report RUN`: one self-contained page per evolution, written and logged to the run
(real SQLite store; the page's family tree rendered by a real headless Chromium)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser import Browser
from conftest_server import summary_of, synthetic_generations, tiny_adapter
from mlflow.tracking import MlflowClient

from evolve import tracking_view as view
from evolve.cli import main as cli_main
from evolve.tracking import Tracker


@pytest.fixture(scope="module")
def evolution(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("report")
    _, adapter, _, _ = tiny_adapter(root)
    uri = f"sqlite:///{root / 'm.db'}"
    tracker = Tracker(uri, "rep", str(root / "art"))
    run_id = tracker.start_evolution({"seed": 2})
    gens = synthetic_generations(adapter)
    for g, recs in enumerate(gens):
        extra = {"assess_auc_mean": 0.1 * (g + 1)}
        if g > 0:  # what the selection analysis logs per generation (read from the store)
            extra.update({"heritability/parent_offspring_slope": 0.3 + 0.1 * g,
                          "response/observed": 0.02 * g, "response/predicted": 0.015 * g})
        tracker.log_generation(g, recs, {**summary_of(recs), **extra})
    tracker.register_champion(gens[2][1], "rep-champion")
    tracker.finish()
    return {"uri": uri, "run": run_id, "root": str(root), "exp": tracker.experiment_id}


def _sets(ev: dict[str, str]) -> list[str]:
    return ["--set", f"tracking.uri={ev['uri']}", "--set", "tracking.experiment=rep"]


def test_the_report_shows_champion_generations_response_signals_tree_and_curves(
        evolution: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert cli_main(["report", evolution["run"], "--out", str(out), *_sets(evolution)]) == 0
    page = out.read_text()
    for section in ("<h2>Champion</h2>", "<h2>Per generation</h2>", "<h2>Response to selection</h2>",
                    "<h2>Signals</h2>", "<h2>Family tree</h2>", "<h2>Champion's learning"):
        assert section in page
    assert "<td>g2-l1</td><td>1.4</td><td>crossover</td><td>g1-l2 × g1-l0</td>" in page
    # per generation: champion, fitness, the outcome and the selection metrics, as the store has them
    header = re.search(r"<h2>Per generation</h2>.*?<thead>(.*?)</thead>", page, re.S)
    assert header is not None
    for col in ("champion_fitness", "mean_fitness", "assess_auc_mean",
                "heritability/parent_offspring_slope", "response/observed"):
        assert f"<th>{col}</th>" in header.group(1)
    assert "<tr><td>2</td><td>g2-l1</td><td>1.4</td>" in page
    assert "no heritability / response metrics" not in page
    # figures inline (fitness, outcome, response, signals, curves): nothing to fetch
    assert page.count('src="data:image/png;base64,') == 5
    assert not re.search(r'src="(?!data:)', page)   # no image or script fetched from anywhere
    # the family tree holds every learner
    for i in range(4):
        assert f"g2-l{i}" in page


def test_the_report_is_logged_and_linked_from_the_run(evolution: dict[str, str],
                                                       tmp_path: Path) -> None:
    client = MlflowClient(evolution["uri"])
    assert cli_main(["report", "--out", str(tmp_path / "latest.html"), *_sets(evolution)]) == 0
    arts = [a.path for a in client.list_artifacts(evolution["run"])]
    assert "report.html" in arts
    note = client.get_run(evolution["run"]).data.tags[view.NOTE]
    assert f"[Report]({view.run_route(evolution['exp'], evolution['run'], 'report.html')})" in note


def test_a_bad_run_is_a_one_line_error(
        evolution: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["report", "g2-l1", *_sets(evolution)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("evolve report: error: RUN 'g2-l1' is not a run id; pass")
    assert cli_main(["report", "0" * 32, *_sets(evolution)]) == 2
    assert "no run 000" in capsys.readouterr().err


@pytest.mark.browser
def test_the_reports_family_tree_renders_offline(evolution: dict[str, str],
                                                 tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert cli_main(["report", evolution["run"], "--out", str(out), "--no-log",
                     *_sets(evolution)]) == 0
    b = Browser(tmp_path / "profile")
    try:
        b.goto(out.as_uri())
        b.wait_for("Family tree")
        rendered = b.wait_js("document.querySelector('iframe.tree').contentDocument?.body"
                             "?.getAttribute('data-rendered')")
        assert rendered == "12"
        assert b.js("Array.from(document.images).every(i => i.naturalWidth > 100)")
    finally:
        b.close()


def test_the_report_says_which_learners_grokked_and_when() -> None:
    """A learner probed at 20+ checkpoints gets a row (grokked or not, memorised and onset steps)
    and a curves panel; an ordinary evolution's learners (6 checkpoints) add no section."""
    from evolve.records import LearnerRecord
    from evolve.report_page import grokking

    steps = [480 * 25 * k for k in range(1, 41)]
    flat = [(s, 0.02) for s in steps]
    rise = [(s, 0.02 if k < 25 else 0.95) for k, s in enumerate(steps)]
    train = [(s, 1.0) for s in steps]
    genes = {"lr": 4e-3, "weight_decay": 1.0, "rank": 64, "alpha": 128.0, "target_modules": "q_proj"}
    grokked = LearnerRecord("g0-l0", 0, genes, signals={
        "grokking": 1.0, "grok_memorised_step": 12000.0, "grok_onset_step": 312000.0,
        "grok_delay": 300000.0}, curves={"train_acc": train, "holdout_acc": rise})
    stayed = LearnerRecord("g0-l1", 0, genes, signals={
        "grokking": 0.0, "grok_memorised_step": 12000.0, "grok_onset_step": None},
        curves={"train_acc": train, "holdout_acc": flat})
    undefined = LearnerRecord("g0-l2", 0, genes, signals={"grokking": None})
    html = "\n".join(grokking([grokked, stayed, undefined]))
    assert "<h2>Grokking</h2>" in html and "1 of 2 learners grokked" in html
    assert "<td>g0-l0</td><td>yes</td><td>12000</td><td>312000</td><td>300000</td>" in html
    assert "<td>g0-l1</td><td>no</td><td>12000</td><td>–</td>" in html and "g0-l2" not in html
    assert html.count('src="data:image/png;base64,') == 1
    short = LearnerRecord("g0-l3", 0, genes, signals={"grokking": 0.0},
                          curves={"train_acc": train[:6], "holdout_acc": flat[:6]})
    assert grokking([undefined, short]) == []
