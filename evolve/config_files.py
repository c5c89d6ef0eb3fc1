"""The configuration's files: YAML read the way every config of this project is read, the shipped
configs (`evolve/configs/`, `configs/` in a checkout links to it) and `evolve tune`'s weights files.
Every error is one line naming the file and the fix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from common.errors import EvolveError


def need(ok: bool, msg: str) -> None:
    """Raise `EvolveError(msg)` unless `ok`: the config modules' one-line checks."""
    if not ok:
        raise EvolveError(msg)


class _Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where `3e-4` (no dot) is a string; people write learning rates
    that way, so every YAML this project reads resolves it as a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+][0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """`yaml.safe_load`, except that `1e-3` is a float (see `_Loader`)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


# inside the package, so a wheel (not only an editable checkout) ships them: package-data in
# pyproject.toml; the checkout's top-level `configs/` is a link to this directory
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; a syntax error becomes one line `FILE:LINE: ...`."""
    if not path.is_file():
        raise EvolveError(f"{path}: no such file; pass an existing YAML file")
    try:
        return load_yaml(path.read_text())
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise EvolveError(f"{path}:{line}: invalid YAML ({exc.problem}); fix the file") from None
    except yaml.YAMLError as exc:
        raise EvolveError(f"{path}: invalid YAML ({exc}); fix the file") from None


def shipped_configs() -> list[str]:
    """Names of the configs shipped in the package (`default`, `smoke`, `tune`)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def config_file(path: str | Path) -> Path:
    """`path` when it is a file, else the shipped config of that name (`smoke` or `smoke.yaml`);
    neither is one line naming both ways."""
    p = Path(path)
    if p.is_file():
        return p
    shipped = CONFIG_DIR / (p.name if p.suffix == ".yaml" else f"{p.name}.yaml")
    if p.parent == Path(".") and shipped.is_file():
        return shipped
    raise EvolveError(f"{path}: no such file; pass an existing YAML file or a shipped config "
                      f"({', '.join(shipped_configs())})")


def load_weights_file(path: str | Path) -> dict[str, float]:
    """Read fitness weights from YAML: `{weights: {signal: w}}` (as `evolve tune` writes) or `{signal: w}`."""
    data = read_yaml(Path(path))
    if isinstance(data, dict) and isinstance(data.get("weights"), dict):
        data = data["weights"]
    need(isinstance(data, dict) and all(isinstance(v, (int, float)) for v in data.values()),
         f"{path}: expected {{weights: {{signal: number}}}}; write it with `evolve tune --out`")
    return {str(k): float(v) for k, v in data.items()}
