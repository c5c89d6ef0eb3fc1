"""`evolve compare RUN RUN`: config differences, fitness and outcome per generation, champions
(real SQLite store)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest_server import summary_of, synthetic_generations

from evolve.cli import main as cli_main
from evolve.tracking import Tracker


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("compare")
    uri = f"sqlite:///{root / 'm.db'}"
    tracker = Tracker(uri, "cmp", str(root / "art"))
    ids = []
    for seed, pop in ((1, 4), (2, 6)):
        ids.append(tracker.start_evolution({"seed": seed, "population": pop, "generations": 3}))
        for g, recs in enumerate(synthetic_generations()):
            tracker.log_generation(g, recs, {**summary_of(recs), "assess_auc_mean": seed * 0.1 + g},
                                   plots=False)
        tracker.finish()
    return {"uri": uri, "a": ids[0], "b": ids[1], "root": str(root)}


def _sets(d: dict[str, str]) -> list[str]:
    return ["--set", f"tracking.uri={d['uri']}", "--set", "tracking.experiment=cmp"]


def test_compare_prints_differences_generations_and_champions_and_draws_a_plot(
        two: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "c.png"
    assert cli_main(["compare", two["a"], two["b"], "--plot", str(png), *_sets(two)]) == 0
    out = capsys.readouterr().out
    diffs = out.split("config differences:")[1].split("per generation")[0]
    assert "population  4    6" in diffs and "seed        1    2" in diffs
    assert "generations" not in diffs          # the same in both: not a difference
    rows = [ln.split() for ln in out.split("per generation")[1].splitlines() if ln[:1].isdigit()]
    # gen, then per run: champion, champion fitness, mean fitness, assess_auc
    assert rows[2][:5] == ["2", "g2-l1", "1.400", "0.950", "2.100"]
    assert rows[2][5:] == ["g2-l1", "1.400", "0.950", "2.200"]
    assert "champions (last generation):" in out
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_compare_json_and_bad_input(two: dict[str, str], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["compare", two["a"], two["b"], "--json", "--plot", "", *_sets(two)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config_differences"]["population"] == ["4", "6"]
    assert doc["per_generation"][0]["[1] champion"] == "g0-l2"
    assert cli_main(["compare", two["a"], *_sets(two)]) == 2
    assert "two or more RUN ids" in capsys.readouterr().err
    assert cli_main(["compare", two["a"], "g2-l1", *_sets(two)]) == 2
    assert "'g2-l1' is not a run id" in capsys.readouterr().err
