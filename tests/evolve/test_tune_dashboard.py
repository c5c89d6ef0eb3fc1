"""An `evolve tune` study opens in optuna-dashboard (the `dashboard` extra) as docs/tune.md says:
a real study in SQLite, a real dashboard server, a real headless Chromium. Screenshots go to
tests/output/<test>/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from browser import Browser
from conftest_server import free_port, stop_group, wait_http
from test_tune import SIGNALS, no_plots, store, tune  # noqa: F401  (module fixtures reused)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.server
@pytest.mark.browser
def test_a_tune_study_opens_in_optuna_dashboard(store: dict[str, Any],  # noqa: F811
                                                tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    exe = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent)) or \
        shutil.which("optuna-dashboard")
    if exe is None:
        pytest.fail("optuna-dashboard is not installed: pip install -e '.[dashboard]' (dev has it)")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert tune(store, tmp_path / "w.yaml", "--trials", "12", "--signals", SIGNALS, "--study", "dash-check",
                storage=storage) == 0
    port = free_port()
    # the command docs/tune.md and `evolve tune`'s last line give
    proc = subprocess.Popen([exe, storage, "--host", "127.0.0.1", "--port", str(port)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    shots = Path(os.environ.get("EVOLVE_TEST_OUTPUT", REPO / "tests" / "output")) / \
        request.node.name
    shots.mkdir(parents=True, exist_ok=True)
    b = None
    try:
        wait_http(f"http://127.0.0.1:{port}/api/studies", proc)
        b = Browser(tmp_path / "profile")
        b.goto(f"http://127.0.0.1:{port}/dashboard/")
        b.wait_for("dash-check")
        b.screenshot(shots / "1_studies.png")
        b.goto(f"http://127.0.0.1:{port}/dashboard/studies/1")   # the storage's only study
        b.wait_for("dash-check (id=1)", timeout=60)
        text = b.wait_for("Best Trial", timeout=60)
        b.screenshot(shots / "2_study.png")
        assert "History" in text
        # the study's own user attributes are there: what `evolve tune` recorded about it
        assert "Study User Attributes" in text
    finally:
        if b is not None:
            b.close()
        stop_group(proc)
