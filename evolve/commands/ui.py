"""`evolve ui`: start the MLflow UI on the configured tracking store (127.0.0.1 by default).

Its `--config FILE` / `--set tracking.KEY=V` flags are `evolve.tracking_flags.tracking_args`, resolved by
`evolve.tracking_flags.tracking_of_args` exactly as `evolve run` resolves them.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from evolve.tracking_flags import tracking_args, tracking_of_args

HELP = "start the MLflow UI on the configured tracking store (lineage pages, plots, runs)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=5000, help="TCP port to listen on (default 5000)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 = everyone)")
    tracking_args(p)


def command(settings: dict[str, Any], host: str, port: int) -> list[str]:
    """The `mlflow ui` command line for a store. Experiments `evolve` made carry their own artifact
    location; `--artifacts-destination` only places artifacts of experiments made in the UI."""
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", settings["uri"],
           "--host", host, "--port", str(port), "--workers", "1"]
    if settings.get("artifact_location"):
        cmd += ["--artifacts-destination", str(settings["artifact_location"])]
    return cmd


def landing_url(settings: dict[str, Any], host: str, port: int) -> str:
    """The experiment's runs table with evolve's columns (its shared view state), or the UI's
    front page when the store has no such experiment yet."""
    from common.errors import EvolveError
    from evolve.tracking import Tracker
    from evolve.tracking_view import SHARE_TAG, TRAINING, experiment_url

    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    try:
        tracker = Tracker(settings["uri"], settings["experiment"], create=False)
    except EvolveError:
        return base
    exp = tracker.experiment_id
    if SHARE_TAG not in tracker.client.get_experiment(exp).tags:
        # an experiment no `evolve run` of this version opened yet: no saved view to apply
        return f"{base}/#/experiments/{exp}/runs?{TRAINING}"
    return experiment_url(base, exp)


def main(args: argparse.Namespace) -> int:
    from common.errors import EvolveError

    settings = tracking_of_args(args)
    uri = settings["uri"]
    if uri.startswith(("http://", "https://")):
        print(f"the tracking store is already a server: open {uri} in a browser")
        return 0
    if not 0 < args.port < 65536:
        raise EvolveError(f"--port {args.port} is not a TCP port; pass 1-65535 (default 5000)")
    print(f"MLflow UI for {uri} (experiment {settings['experiment']!r}) at "
          f"{landing_url(settings, args.host, args.port)}  (Ctrl-C stops it)", flush=True)
    # exec, not a child: Ctrl-C and a signal to this process group reach the server's workers
    # too (a child in its own group would outlive a killed `evolve ui`)
    cmd = command(settings, args.host, args.port)
    # MLflow's GenAI job runner (8 more processes, ~400 MB, twice the start-up time) serves no
    # page `evolve` makes; MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true in the environment keeps it
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execv(cmd[0], cmd)
    return 0  # not reached
