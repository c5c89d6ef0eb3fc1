"""Let `import curricula` find the package when pytest runs as `.venv/bin/pytest` (not `-m pytest`).

pytest puts `tests/` on sys.path, where this folder looks like a namespace package `curricula`;
the editable install's finder comes after the path finder, so the namespace would win. With the
repository root on sys.path the regular package wins (a regular package beats namespace portions
anywhere on the path). `python -m pytest` (what `make test` runs) has the root there already.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.append(ROOT)
if getattr(sys.modules.get("curricula"), "__file__", "") is None:   # an earlier namespace import
    del sys.modules["curricula"]
