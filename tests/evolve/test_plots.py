"""The pictures and the HTML family tree, drawn from a synthetic three-generation evolution."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
from conftest_server import synthetic_generations

from evolve import lineage_html, plots
from evolve.records import LearnerRecord


def _records() -> list[LearnerRecord]:
    return [r for g in synthetic_generations() for r in g]


def test_draw_all_writes_three_nonblank_pngs(tmp_path: Path) -> None:
    paths = plots.draw_all(_records(), tmp_path / "plots")
    assert [p.name for p in paths] == ["fitness.png", "champion_signals.png", "family_tree.png"]
    for p in paths:
        img = mpimg.imread(p)
        assert img.shape[0] >= 300 and img.shape[1] >= 500, p.name
        # not a blank canvas: a real figure has many distinct colours
        assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 50, p.name


def test_champions_skip_failed_learners(tmp_path: Path) -> None:
    recs = _records()
    best = plots.champions(recs)
    assert {g: r.learner_id for g, r in best.items()} == {0: "g0-l2", 1: "g1-l2", 2: "g2-l1"}
    only_failed = [LearnerRecord("g0-l0", 0, {}, fitness=9.0, failed=True)]
    assert plots.champions(only_failed) == {}
    assert len(plots.draw_all(only_failed, tmp_path)) == 3   # a generation of failures still draws


def test_tree_layout_puts_children_under_their_parents() -> None:
    pos = lineage_html.tree_layout(_records())
    assert {lid: g for lid, (_, g) in pos.items()} == {r.learner_id: r.generation for r in _records()}
    for g in (0, 1, 2):   # one column per learner in each generation
        assert sorted(c for c, gg in pos.values() if gg == g) == [0.0, 1.0, 2.0, 3.0]
    # the clone of g0-l2 sits in a column next to g0-l2's, not at the far end
    assert abs(pos["g1-l0"][0] - pos["g0-l2"][0]) <= 1



def test_tree_layout_keeps_learner_order_past_ten_learners() -> None:
    # generation 0 and parentless learners tie on their parents' column: learner order decides,
    # by number (g0-l9 before g0-l10), not as text
    recs = [LearnerRecord(f"g0-l{i}", 0, {}, fitness=0.5) for i in (10, 2, 9, 0, 1)]
    pos = lineage_html.tree_layout(recs)
    assert sorted(pos, key=lambda lid: pos[lid][0]) == ["g0-l0", "g0-l1", "g0-l2", "g0-l9", "g0-l10"]


def test_fitness_colour_runs_dark_to_bright() -> None:
    def lum(hex_: str) -> float:
        r, g, b = (int(hex_[i:i + 2], 16) for i in (1, 3, 5))
        return 0.299 * r + 0.587 * g + 0.114 * b

    cols = [lineage_html.fitness_color(x, 0.0, 1.0) for x in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert cols[0] == "#440154" and cols[-1] == "#fde725"   # viridis ends
    assert all(lum(a) < lum(b) for a, b in zip(cols, cols[1:], strict=False))
    assert lineage_html.fitness_color(None, 0, 1) == lineage_html.fitness_color(math.nan, 0, 1)


def test_html_page_is_self_contained_and_names_every_learner(tmp_path: Path) -> None:
    recs = _records()
    page = lineage_html.write(recs, tmp_path / "lineage.html", title="t").read_text()
    for r in recs:
        assert f'data-learner="{r.learner_id}"' in page
    # no network: no external scripts, styles, images or fonts; the only URL is the SVG namespace
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls == {"http://www.w3.org/2000/svg"}
    assert "<script src" not in page and "<link" not in page
    # operator on each edge, failed learner marked, hover text carries genome and fitness
    assert page.count('class="op"') == sum(len(r.parents) for r in recs)
    assert 'class="node failed" data-learner="g1-l3"' in page
    assert "<title>g2-l1  fitness 1.4\nlr=0.0025" in page
    data = json.loads(re.search(r'id="lineage-data">(.*?)</script>', page, re.S).group(1))
    assert [d["id"] for d in data] == [r.learner_id for r in recs]
    assert data[7]["fitness"] is None   # -inf is not JSON: the failed learner's fitness is null
