"""How evolve's data is written into MLflow's strings: dotted param paths, JSON param values,
batches within MLflow's limits, millisecond timestamps, infinities MLflow clamps, one-line errors,
artifact locations; and the seconds-long health check of a tracking server (plain HTTP). No mlflow
import: `evolve.tracking` does the MLflow I/O."""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from common.errors import EvolveError

TAG_MAX, PARAM_MAX = 8000, 500   # MLflow caps tags at 8000 chars; params "where short"
BATCH_METRICS, BATCH_TAGS = 1000, 100   # MLflow's log_batch limits per call


def now_ms() -> int:
    return int(time.time() * 1000)


def unclamp(x: float) -> float:
    """MLflow stores +-inf as +-max float; give the infinity back (a failed learner's -inf)."""
    return math.copysign(math.inf, x) if abs(x) >= sys.float_info.max else x


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists -> {"a.b.0.c": value}, the same dotted paths `--set` takes."""
    if isinstance(d, dict):
        items: Iterable[tuple[Any, Any]] = d.items()
    elif isinstance(d, (list, tuple)) and d and any(isinstance(v, (dict, list)) for v in d):
        items = enumerate(d)
    else:
        return {prefix: d} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def param_value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def chunks(seq: list[Any], n: int) -> Iterable[list[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def resolve_artifact_location(loc: str | None, remote: bool) -> str | None:
    """Local paths become absolute. A server keeps its own artifact store for local paths (the
    client's filesystem is not the server's)."""
    if not loc:
        return None
    if "://" in loc or loc.startswith("mlflow-artifacts:"):
        return loc
    return None if remote else str(Path(loc).expanduser().resolve())


def check_server(uri: str) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when no server answers."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10) as resp:
            resp.read()
    except (urllib.error.URLError, OSError) as exc:
        raise EvolveError(
            f"no MLflow server answers at {uri} ({one_line(exc)}); start one with `evolve ui` or "
            "`mlflow server`, or set tracking.uri to a SQLite store (sqlite:///mlflow.db)"
        ) from None
