"""No source file of the project over 500 lines (the style guide's limit: split along a seam)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 500


def test_no_source_file_over_500_lines() -> None:
    files = [f for pkg in ("common", "curricula", "learners", "fitness", "evolve", "bench")
             for f in (ROOT / pkg).rglob("*.py")]
    assert len(files) > 50                       # the packages were found
    long = {str(f.relative_to(ROOT)): n for f in files
            if (n := len(f.read_text().splitlines())) > LIMIT}
    assert not long, f"over {LIMIT} lines, split along a seam: {long}"
