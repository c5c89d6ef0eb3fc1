"""Where `evolve` caches what it builds once per machine (the embedded base, compiled kernels)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(cache_dir: Path | None = None) -> Path:
    """`cache_dir`, else `$EVOLVE_CACHE`, else `~/.cache/evolve`."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("EVOLVE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "evolve"
