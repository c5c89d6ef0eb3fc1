"""`tracking.draw_plots`: the evolution's plots are drawn after the last generation (`end`, the
default) or after every generation (`every`), on a real tiny evolution and SQLite store."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.parametrize(("mode", "drawn_after"), [("end", [1]), ("every", [0, 1])])
def test_plots_are_drawn_when_draw_plots_says(mode: str, drawn_after: list[int], make_cfg: Any,
                                              run_evo: Any) -> None:
    cfg = make_cfg(**{"tracking.draw_plots": mode})
    assert cfg.generations == 2
    summary, tracker = run_evo(cfg)
    history = tracker.client.get_metric_history(summary.run_id, "plots_s")
    assert sorted(m.step for m in history) == drawn_after       # one drawing per step listed
    assert all(m.value > 0 for m in history)
    names = {a.path for a in tracker.client.list_artifacts(summary.run_id, "plots")}
    assert {"plots/fitness.png", "plots/lineage.html", "plots/family_tree.png"} <= names
    # the metrics every generation logs are there for both generations either way
    assert [m.step for m in tracker.client.get_metric_history(summary.run_id,
                                                              "mean_fitness")] == [0, 1]


def test_draw_plots_default_and_bad_value(make_cfg: Any) -> None:
    from common.errors import EvolveError
    from evolve.config import load_config

    assert load_config().tracking.draw_plots == "end"
    with pytest.raises(EvolveError, match=r"tracking.draw_plots = 'always' is unknown; set it to "
                                          r"end or every"):
        make_cfg(**{"tracking.draw_plots": "always"})
