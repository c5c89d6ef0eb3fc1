"""Seed derivation: every per-generation / per-learner seed comes from the run seed through here."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, *keys: object) -> int:
    """A 31-bit seed derived from `seed` and `keys` (stable across processes, unlike `hash`)."""
    text = repr((int(seed),) + tuple(keys)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little") & 0x7FFFFFFF
