"""The configuration's layers, lowest first: `evolve/configs/default.yaml` (the embedded default),
`--config FILE` (merged key by key onto the default; lists replace; a shipped config may be named
without a path: `--config smoke`), `--set a.b.0.c=v` (dotted paths with list indexes, values parsed
as YAML scalars), `--base PATH`; as plain data, validated by `evolve.config.from_dict`. The
tracking section is resolved here too (`evolve.tracking_uri`), so the commands that only open the
store need not build (or validate) the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from evolve.config_files import DEFAULT_CONFIG, config_file, load_yaml, need, read_yaml
from evolve.tracking_uri import resolve_tracking


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v) if k in base else v
        return out
    return over


def apply_set(data: dict[str, Any], assignment: str) -> None:
    """Apply one `a.b.0.c=value` override in place (value parsed as a YAML scalar)."""
    key, sep, raw = assignment.partition("=")
    need(bool(sep) and bool(key), f"--set {assignment!r}: expected key=value, e.g. population=16")
    try:
        value = load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            need(part.isdigit() and int(part) <= len(node),
                 f"--set {key}: {part!r} is not an index of a {len(node)}-item list")
            idx = int(part)
            if idx == len(node):
                node.append({})
            if last:
                node[idx] = value
            node = node[idx]
        else:
            need(isinstance(node, dict), f"--set {key}: {'.'.join(parts[:i])} is not a mapping")
            if last:
                node[part] = value
            else:
                if not isinstance(node.get(part), (dict, list)):
                    node[part] = {}
                node = node[part]


def layered(path: str | Path | None = None, sets: list[str] | tuple[str, ...] = (),
            base: str | None = None) -> tuple[dict[str, Any], str | None]:
    """The config as plain data, not yet validated: default YAML < `path` < `--set` overrides <
    `base`; and the tracking URI when the file or a `--set` gives it explicitly (else None)."""
    data = read_yaml(DEFAULT_CONFIG) or {}
    explicit_uri = None
    if path is not None:
        user = read_yaml(config_file(path)) or {}
        need(isinstance(user, dict), f"{path}: the top level must be a mapping of config keys")
        explicit_uri = (user.get("tracking") or {}).get("uri")
        data = _merge(data, user)
    for s in sets:
        apply_set(data, s)
        if s.partition("=")[0].strip() == "tracking.uri":
            explicit_uri = data["tracking"]["uri"]
    if base is not None:
        data["base"] = base
    tracking = data.get("tracking") or {}
    need(isinstance(tracking, dict), f"config key tracking must be a mapping, got {tracking!r}")
    data["tracking"] = tracking
    return data, explicit_uri


def tracking_section(data: dict[str, Any], explicit_uri: str | None) -> dict[str, Any]:
    """The layered tracking section with uri, experiment and artifact_location resolved."""
    return {**data["tracking"], **resolve_tracking(explicit_uri, data["tracking"])}


def tracking_settings(path: str | Path | None = None,
                      sets: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The tracking section `load_config(path, sets)` would resolve — {uri, experiment,
    artifact_location, model_name, draw_plots} — without building (or validating) the rest, for
    the commands that only open the store (`evolve ui`, `evolve lineage`, `evolve replay`, the
    experiments). Same precedence: `--set tracking.*` > the file's `tracking:` >
    $MLFLOW_TRACKING_URI > mlflow.yaml (working directory, else the repository's) > defaults."""
    data, explicit_uri = layered(path, sets)
    return tracking_section(data, explicit_uri)
