"""The family-tree page as a person sees it: rendered by a real headless Chromium, offline."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest_server import summary_of, synthetic_generations

from evolve.tracking import Tracker

# No network at all: the page must render from itself (env notes: these flags stop Chromium's own
# background traffic too).
OFFLINE = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
           "--disable-default-apps", "--disable-extensions"]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed: `apt-get install -y chromium` (make test does it)")
    return exe


def dump_dom(page: Path, profile: Path) -> str:
    out = subprocess.run([chromium(), *OFFLINE, f"--user-data-dir={profile}",
                          "--virtual-time-budget=3000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.browser
def test_every_learner_of_the_run_appears_in_the_rendered_page(tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "browser", str(tmp_path / "art"))
    run_id = tracker.start_evolution({"seed": 1})
    for g, recs in enumerate(synthetic_generations()):
        tracker.log_generation(g, recs, summary_of(recs))
    # the page exactly as the store holds it (what MLflow's artifact viewer shows)
    page = Path(tracker.client.download_artifacts(run_id, "plots/lineage.html", str(tmp_path)))
    dom = dump_dom(page, tmp_path / "profile")
    learners = [e.child for e in tracker.lineage(run_id)]
    assert len(learners) == 12
    # the script ran: it built one table row per learner from the embedded data
    assert 'data-rendered="12"' in dom
    rows = re.findall(r'<tr class="[^"]*" data-learner="([^"]+)">', dom)
    assert rows == learners
    svg_nodes = re.findall(r'<g class="node[^"]*" data-learner="([^"]+)">', dom)
    assert sorted(svg_nodes) == sorted(learners)
    assert re.search(r'<tr class="failed" data-learner="g1-l3"><td>g1-l3</td>', dom)
