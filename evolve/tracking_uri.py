"""Where runs are recorded: the MLflow tracking URI, experiment and artifact root, by precedence
(an explicit URI > `$MLFLOW_TRACKING_URI` > `mlflow.yaml` in the working directory, else the
repository's > `sqlite:///mlflow.db`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from evolve.config_files import read_yaml

REPO = Path(__file__).resolve().parents[1]


def resolve_tracking(uri: str | None = None, given: dict[str, Any] | None = None,
                     cwd: Path | None = None) -> dict[str, Any]:
    """Tracking settings: explicit `uri` > $MLFLOW_TRACKING_URI > mlflow.yaml (cwd, else repo).

    `given` holds explicit experiment / artifact_location values that win over mlflow.yaml.
    """
    cwd = cwd or Path.cwd()
    file = cwd / "mlflow.yaml" if (cwd / "mlflow.yaml").is_file() else REPO / "mlflow.yaml"
    settings = (read_yaml(file) or {}) if file.is_file() else {}
    given = given or {}
    art = given.get("artifact_location") or settings.get("artifact_location")
    if art and "://" not in art and not Path(art).is_absolute():
        art = str((cwd / art).resolve())
    return {
        "uri": uri or os.environ.get("MLFLOW_TRACKING_URI") or settings.get("tracking_uri")
        or "sqlite:///mlflow.db",
        "experiment": given.get("experiment") or settings.get("experiment") or "evolve",
        "artifact_location": art,
    }
