"""Session-wide test set-up: one torch thread (spin-waiting OpenMP threads collapse on a busy 2-core
box), a private MLflow/Ray/tmp area, and a tiny real base model built in seconds."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved Llama-style causal LM of a few thousand parameters with the char tokenizer.

    Untrained apart from a few steps: good for equivalence and plumbing tests, not for accuracy.
    """
    import torch

    torch.set_num_threads(1)
    from learners.base import BaseConfig, build_base, save_base
    from learners.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    cfg = BaseConfig(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_len=64)
    model = build_base(cfg, tok, seed=0)
    out = tmp_path_factory.mktemp("tiny_base")
    save_base(model, tok, out)
    return out
