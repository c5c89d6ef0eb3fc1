"""Loading a tied-embedding base on several threads at once (the local backend's groups)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def tied_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from learners.base import save_base
    from learners.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                         tie_word_embeddings=True, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    return save_base(LlamaForCausalLM(config), tok, tmp_path_factory.mktemp("tied"))


def test_concurrent_loads_of_a_tied_model_leave_nothing_on_meta(tied_base: Path) -> None:
    from learners.base import load_base

    def meta(_: int) -> list[str]:
        model, _tok = load_base(tied_base)
        assert model.lm_head.weight is model.model.embed_tokens.weight
        return [n for n, p in model.named_parameters(remove_duplicate=False) if p.is_meta]

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(meta, range(8))) == [[]] * 8
