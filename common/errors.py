"""The one exception type the CLI turns into a one-line error and a non-zero exit."""

from __future__ import annotations


class EvolveError(Exception):
    """Bad input or an unrecoverable condition. `str()` is one line naming the problem and the fix."""
