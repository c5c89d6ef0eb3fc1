"""The registry of fitness signals."""

from __future__ import annotations

from typing import Any

from evolve.registry import Registry

SIGNALS: Registry[Any] = Registry("signal")
