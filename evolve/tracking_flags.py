"""The tracking flags every command that only opens the store shares with `evolve run`
(`evolve ui`, `evolve lineage`, `evolve report`, `evolve compare`, the experiments): `--config FILE`
and `--set tracking.KEY=V`, resolved by `evolve.config_layers.tracking_settings` exactly as `evolve run`
resolves them."""

from __future__ import annotations

import argparse
from typing import Any

from evolve.config_layers import tracking_settings


def tracking_args(p: argparse.ArgumentParser) -> None:
    """--config / --set, read the same way as `evolve run` (only the tracking.* keys matter): the
    flags every command that only opens the store shares (`evolve ui`, `evolve lineage`, the
    experiments)."""
    p.add_argument("--config", metavar="FILE", help="run config YAML whose tracking: section to use")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override, e.g. tracking.uri=sqlite:///mlflow.db or tracking.experiment=x")


def tracking_of_args(args: argparse.Namespace) -> dict[str, Any]:
    """`tracking_settings` of the parsed `tracking_args` flags (`--config` / `--set`)."""
    return tracking_settings(getattr(args, "config", None), getattr(args, "sets", None) or [])
