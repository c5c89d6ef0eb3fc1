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


def _bpe_tokenizer():  # noqa: ANN202 (a transformers tokenizer)
    """A byte-level BPE tokenizer (300 ids) trained in-process on arithmetic and short sentences,
    with <pad>/<s>/</s> specials: a real sub-word tokenizer for the architecture tests."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    text = [f"{a}+{b}={a + b}" for a in range(0, 100, 7) for b in range(0, 100, 11)]
    text += ["What is the capital of France? Paris", "The largest planet is Jupiter."] * 20
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(text, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", padding_side="right")


ARCHITECTURES = ("llama", "qwen2", "gemma", "gpt2", "phi3", "gpt_neox")


@pytest.fixture(scope="session")
def arch_bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random causal LMs of six architectures, saved with a tokenizer: {model_type: dir}.

    llama: tied embeddings, grouped-query attention (4 heads, 2 KV heads), the fused fast path;
    qwen2: biases on q/k/v, multi-query attention (1 KV head), tied embeddings;
    gemma: embeddings scaled by sqrt(hidden), multi-query, explicit head_dim;
    gpt2: Conv1D `c_attn` (fused q/k/v, weights [in, out]), learned positions, a BPE tokenizer;
    phi3: one fused `qkv_proj` Linear and a fused gate_up_proj;
    gpt_neox: fused `query_key_value`, partial rotary, parallel residual.
    A few hundred to a few thousand parameters each, built in about a second in all.
    """
    import torch
    import transformers as tf

    from learners.base import save_base
    from learners.tokenizer import build_char_tokenizer

    torch.set_num_threads(1)
    char, bpe = build_char_tokenizer(), _bpe_tokenizer()
    small = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                 max_position_embeddings=96)
    configs = {
        "llama": (tf.LlamaConfig, char, dict(num_attention_heads=4, num_key_value_heads=2,
                                             tie_word_embeddings=True, **small)),
        "qwen2": (tf.Qwen2Config, char, dict(num_attention_heads=4, num_key_value_heads=1,
                                             tie_word_embeddings=True, **small)),
        "gemma": (tf.GemmaConfig, char, dict(num_attention_heads=2, num_key_value_heads=1,
                                             head_dim=8, **small)),
        "gpt2": (tf.GPT2Config, bpe, dict(n_embd=16, n_layer=2, n_head=2, n_positions=96)),
        "phi3": (tf.Phi3Config, char, dict(num_attention_heads=4, num_key_value_heads=2,
                                           original_max_position_embeddings=96, **small)),
        "gpt_neox": (tf.GPTNeoXConfig, char, dict(num_attention_heads=2, rotary_pct=0.5, **small)),
    }
    out: dict[str, Path] = {}
    for k, (cls, tok, kw) in enumerate(configs.values()):
        cfg = cls(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                  eos_token_id=tok.eos_token_id, **kw)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(k)
            model = tf.AutoModelForCausalLM.from_config(cfg)
            for name, p in model.named_parameters():   # transformers initialises biases to 0
                if name.endswith("bias"):
                    p.data.normal_(0.0, 0.1)
        model.generation_config.pad_token_id = tok.pad_token_id
        model.generation_config.eos_token_id = tok.eos_token_id
        out[cfg.model_type] = save_base(model, tok, tmp_path_factory.mktemp(cfg.model_type))
    assert tuple(out) == ARCHITECTURES
    return out
