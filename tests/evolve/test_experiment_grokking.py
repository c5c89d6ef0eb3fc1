"""`evolve experiment grokking --quick`: the report is produced, its numbers are the run's, the run
is deterministic from the seed and logged to a real SQLite MLflow store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evolve.cli import main as cli


def _run(out: Path, *flags: str) -> dict[str, Any]:
    assert cli(["experiment", "grokking", "--quick", "--out", str(out), *flags]) == 0
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Path]:
    """The quick setting, seed 0, logged to a fresh SQLite store: (out dir, report.json, tmp)."""
    tmp = tmp_path_factory.mktemp("grok")
    doc = _run(tmp / "out", "--seed", "0", "--set", f"tracking.uri=sqlite:///{tmp}/mlflow.db",
               "--set", "tracking.experiment=grok-test",
               "--set", f"tracking.artifact_location={tmp}/artifacts")
    return tmp / "out", doc, tmp


def test_quick_run_writes_report_and_plots(quick: tuple[Path, dict[str, Any], Path]) -> None:
    out, doc, _ = quick
    for name in ("report.md", "report.json", "accuracy.png", "confidence_loop.png", "alpha.png"):
        assert (out / name).stat().st_size > 1000 or name == "report.json", name
    hist = doc["history"]
    n = len(hist["step"])
    assert n >= 30 and all(len(v) == n for v in hist.values())
    assert hist["step"] == sorted(hist["step"]) and hist["step"][0] == 0
    # the quick setting memorises, then generalises long after: the phenomenon, not just a file
    s = doc["summary"]
    assert s["memorised_step"] is not None and s["val_at_memorised"] < 0.1
    assert s["val_95_step"] is not None and s["val_95_step"] > 5 * s["memorised_step"]


def test_report_numbers_are_read_from_the_history(quick: tuple[Path, dict[str, Any], Path]) -> None:
    out, doc, _ = quick
    hist, s, w = doc["history"], doc["summary"], doc["config"]["window"]
    steps, tr, va = hist["step"], hist["train_acc"], hist["val_acc"]
    mem = next(i for i, a in enumerate(tr) if a >= 1.0)
    assert s["memorised_step"] == steps[mem] and s["val_at_memorised"] == va[mem]
    assert s["last_step"] == steps[-1] and s["val_final"] == va[-1]
    assert s["val_95_step"] == steps[next(i for i, a in enumerate(va) if a >= 0.95)]
    assert hist["confidence_gap"] == pytest.approx(
        [c - a for c, a in zip(hist["val_maxprob"], va, strict=True)], abs=1e-6)
    i = s["detector_index"]
    assert i is not None and s["detector"] == "fitness.signals.generalisation.detect_grokking"
    assert s["detector_step"] == steps[i] and s["val_after"] - s["val_before"] > 0.2
    assert s["val_before"] == pytest.approx(sum(va[i - 2 * w + 1:i - w + 1]) / w)
    assert s["val_after"] == pytest.approx(sum(va[i - w + 1:i + 1]) / w)
    md = (out / "report.md").read_text()
    assert f"| training accuracy reached 100% | {steps[mem]} |" in md
    assert f"| end of the run | {steps[-1]} |" in md
    assert f"over {w} probes) | {s['detector_step']} |" in md
    assert f"`evolve experiment grokking --quick --seed 0 --out {out}`" in md


def test_same_seed_same_history_other_seed_differs(quick: tuple[Path, dict[str, Any], Path],
                                                   tmp_path: Path) -> None:
    _, doc0, _ = quick
    # 200 steps (6 probes) is enough to compare: the prefix of a run does not depend on its length
    same = _run(tmp_path / "a", "--seed", "0", "--steps", "200", "--no-mlflow")["history"]
    other = _run(tmp_path / "b", "--seed", "1", "--steps", "200", "--no-mlflow")["history"]
    keys = [k for k in same if k != "seconds"]
    k = len(same["step"])
    assert k == 6
    for key in keys:
        assert same[key] == doc0["history"][key][:k], key
    assert other["val_acc"] != same["val_acc"] and other["train_loss"] != same["train_loss"]


def test_run_is_logged_to_mlflow(quick: tuple[Path, dict[str, Any], Path]) -> None:
    from evolve.tracking import Tracker

    _, doc, tmp = quick
    tracker = Tracker(f"sqlite:///{tmp}/mlflow.db", "grok-test", create=False)
    runs = tracker.client.search_runs([tracker.experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["evolve.kind"] == "experiment.grokking"
    assert runs[0].info.status == "FINISHED"
    pts = tracker.client.get_metric_history(runs[0].info.run_id, "val_acc")
    assert [p.value for p in sorted(pts, key=lambda p: p.step)] == \
        pytest.approx(doc["history"]["val_acc"])
    assert {a.path for a in tracker.client.list_artifacts(runs[0].info.run_id, "report")} >= \
        {"report/report.md", "report/accuracy.png"}


@pytest.mark.parametrize("flags, fragment", [
    (["--train-fraction", "1.5"], "--train-fraction 1.5"),
    (["--probe-every", "0"], "--probe-every 0"),
])
def test_bad_flags_are_one_line_errors(flags: list[str], fragment: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["experiment", "grokking", "--out", str(tmp_path), "--no-mlflow", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("evolve experiment: error:") and fragment in err[0]
    assert not (tmp_path / "report.json").exists()


def test_experiment_without_a_name_says_which_exist(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["experiment"]) == 2
    assert "grokking" in capsys.readouterr().err.splitlines()[0]
