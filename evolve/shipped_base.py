"""The embedded default base, shipped built: its weights and tokenizer live in the package
(`evolve/embedded_base/`, 4.3 MB), so a fresh machine needs no 5-minute pretraining build.

`manifest.json` there names the cache key (`evolve.basemodel.cache_key` of the recipe the weights
were built from), each file's sha256, and the machine that built them. `evolve.basemodel.default_base`
copies the shipped files into the cache when their key is the one asked for; a changed recipe has
another key, so stale weights are never used (the next build makes the new ones). `evolve base
build` rebuilds them from the recipe and says whether the rebuild is bitwise the shipped bits.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

SHIPPED_DIR = Path(__file__).resolve().parent / "embedded_base"
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
# what `save_base` writes, plus the build's report; all of it is copied and checksummed
FILES = ("config.json", "generation_config.json", WEIGHTS, "tokenizer.json",
         "tokenizer_config.json", "report.json")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def manifest(directory: Path = SHIPPED_DIR) -> dict[str, Any] | None:
    """The shipped manifest, or None when the package holds no shipped base."""
    path = Path(directory) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def machine() -> dict[str, str]:
    """What may change float rounding between builds: CPU model and flags, torch and its BLAS."""
    import torch

    cpu, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine()):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                have = set(line.split(":", 1)[1].split())
                flags = " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
                                 if f in have)
    except OSError:
        pass
    return {"cpu": cpu, "cpu_flags": flags, "machine": platform.machine(),
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkl": str(torch.backends.mkl.is_available())}


def write_manifest(directory: Path, key: str) -> dict[str, Any]:
    """Checksum the base in `directory` and write its manifest (what `evolve base build --ship`
    leaves in the package)."""
    directory = Path(directory)
    doc = {"key": key, "files": {f: sha256(directory / f) for f in FILES},
           "built_on": machine()}
    (directory / MANIFEST).write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def install(final: Path, key: str, source: Path = SHIPPED_DIR) -> bool:
    """Copy the shipped base into the cache directory `final` when it was built for `key`.

    Returns False (nothing written) when no base is shipped, it is for another key, or a file is
    missing or does not match its checksum (a damaged checkout builds rather than trusts it). The
    copy goes to a temporary sibling renamed into place, like a build.
    """
    doc = manifest(source)
    if doc is None or doc.get("key") != key:
        return False
    files: dict[str, str] = doc.get("files", {})
    if set(files) != set(FILES) or any(not (source / f).is_file() or sha256(source / f) != h
                                       for f, h in files.items()):
        return False
    tmp = Path(tempfile.mkdtemp(prefix=f".installing-{final.name}-{os.getpid()}-",
                                dir=final.parent))
    try:
        for f in (*FILES, MANIFEST):
            shutil.copyfile(source / f, tmp / f)
        try:
            tmp.rename(final)
        except OSError:  # another process put it there first
            if not (final / "report.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def compare(built: Path, shipped: Path = SHIPPED_DIR) -> dict[str, Any]:
    """Bitwise comparison of a rebuilt base with the shipped one: per tensor, equal or the largest
    absolute difference; the weights file's sha256 on both sides."""
    from safetensors.numpy import load_file

    a, b = load_file(str(Path(built) / WEIGHTS)), load_file(str(Path(shipped) / WEIGHTS))
    diffs = {k: float(abs(a[k].astype("float64") - b[k].astype("float64")).max())
             for k in sorted(set(a) & set(b)) if a[k].tobytes() != b[k].tobytes()}
    return {"identical": sha256(Path(built) / WEIGHTS) == sha256(Path(shipped) / WEIGHTS),
            "built_sha256": sha256(Path(built) / WEIGHTS),
            "shipped_sha256": sha256(Path(shipped) / WEIGHTS),
            "tensors": len(a), "tensors_differing": len(diffs),
            "missing": sorted(set(a) ^ set(b)),
            "max_abs_diff": max(diffs.values(), default=0.0)}
