"""The frozen base model: build a small Llama-style causal LM, pretrain it, save it, load any base.

`load_base` accepts ANY local transformers causal-LM directory (`config.json` + weights + a
tokenizer), not only the embedded default that `evolve.basemodel` builds with `build_base` and
`pretrain`. Everything is float32 with eager attention: CPU sdpa has no batching rule and eager was
faster at these 10-40-token lengths (NOTES.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from evolve.errors import EvolveError
from learners.encoding import as_codec, encode_pairs


@dataclass(frozen=True)
class BaseConfig:
    """Shape of the embedded Llama-style base (defaults: about 1.08 M parameters, vocab 102)."""

    hidden_size: int = 128        # model width
    num_layers: int = 4           # decoder blocks
    num_heads: int = 4            # attention heads (head dim = hidden_size / num_heads)
    intermediate_size: int = 512  # SwiGLU MLP width
    max_len: int = 64             # max_position_embeddings: longest prompt + answer + 2, in tokens

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"BaseConfig.{name}={value!r}: must be a positive integer")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"BaseConfig.hidden_size={self.hidden_size} is not divisible by "
                             f"num_heads={self.num_heads}; pick a multiple")
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError(f"BaseConfig head dim {self.hidden_size // self.num_heads} is odd; rotary "
                             "embeddings need an even hidden_size / num_heads")


def build_base(cfg: BaseConfig, tokenizer: PreTrainedTokenizerBase, seed: int) -> PreTrainedModel:
    """A freshly initialised `LlamaForCausalLM` sized by `cfg`; the same weights for the same seed.

    The global torch RNG is left as it was (the init runs inside `fork_rng`).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_len, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False, attn_implementation="eager")  # type: ignore[call-arg]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model.eval()


@contextmanager
def _quiet_io() -> Iterator[None]:
    """No transformers progress bars for a sub-second save/load (they clutter the CLI's output)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def save_base(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path) -> Path:
    """`save_pretrained` the model and the tokenizer into `path` (created); returns the path."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    with _quiet_io():
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    return out


def _check_causal(path: Path) -> None:
    """Raise a one-line EvolveError unless `path` holds a causal-LM config."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    fix = "pass a transformers causal-LM directory (config.json + weights + tokenizer)"
    if not path.exists():
        raise EvolveError(f"--base {path}: no such directory; {fix}")
    if not (path / "config.json").is_file():
        raise EvolveError(f"--base {path}: no config.json; {fix}")
    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as e:  # noqa: BLE001 (any parse failure is the user's file)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EvolveError(f"--base {path}: unreadable config.json ({first}); {fix}") from None
    kind, archs = config.model_type, list(getattr(config, "architectures", None) or [])
    if archs:
        causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    else:  # a bare config: encoder models (BERT...) also list an LM head but only as decoders
        causal = kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and (
            kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES or bool(getattr(config, "is_decoder", False)))
    if not causal or getattr(config, "is_encoder_decoder", False):
        what = ", ".join(archs) or f"model_type {kind!r}"
        raise EvolveError(f"--base {path}: {what} is not a causal LM; {fix}")


def load_base(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a local causal LM and its tokenizer (float32, eager attention, eval mode).

    Raises EvolveError (one line naming the path and the fix) for a missing path, a directory
    without config.json, a config that is not a causal LM, or missing weights / tokenizer.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path).expanduser()
    _check_causal(p)
    try:
        with _quiet_io():
            model = AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32,
                                                         attn_implementation="eager")
    except Exception as e:  # noqa: BLE001
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise EvolveError(f"--base {p}: cannot load the model weights ({first}); save them with "
                          "model.save_pretrained into that directory") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(p)
    except Exception as e:  # noqa: BLE001
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise EvolveError(f"--base {p}: cannot load a tokenizer ({first}); save one with "
                          "tokenizer.save_pretrained into that directory") from None
    if tokenizer.eos_token_id is None:
        raise EvolveError(f"--base {p}: the tokenizer has no eos token; set eos_token in "
                          "tokenizer_config.json (answers end with eos)")
    return model.eval(), tokenizer


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 10% of `lr` at the last step."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def pretrain(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[tuple[str, str]],
             steps: int, batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
             progress: bool = True, weight_decay: float = 0.01, warmup: int = 100) -> list[float]:
    """Train every weight of `model` on `pairs` (loss on answer tokens + eos); returns the loss curve.

    AdamW, linear warm-up then cosine decay, gradient norm clipped at 1. Batches of `batch_size`
    pairs are drawn with replacement by a generator seeded with `seed`, each padded to its longest
    sequence; so the result is a function of (model, pairs, steps, batch_size, lr, seed).
    """
    from tqdm.auto import tqdm

    if not pairs:
        raise ValueError("pretrain got no (prompt, answer) pairs; pass a non-empty list")
    if steps < 0 or batch_size < 1:
        raise ValueError(f"pretrain steps={steps}, batch_size={batch_size}: need steps >= 0, batch >= 1")
    codec = as_codec(tokenizer)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    warm = min(warmup, max(1, steps // 10))
    device = next(model.parameters()).device
    curve: list[float] = []
    model.train()
    bar = tqdm(range(steps), desc="pretraining base", unit="step", disable=not progress,
               mininterval=1.0)
    for step in bar:
        idx = torch.randint(len(pairs), (batch_size,), generator=g).tolist()
        b = encode_pairs(codec, [pairs[i] for i in idx], device)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warm)
        loss = model(input_ids=b.input_ids, attention_mask=b.attention_mask, labels=b.labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        curve.append(float(loss.detach()))
        if step % 50 == 0:
            bar.set_postfix(loss=f"{sum(curve[-50:]) / len(curve[-50:]):.3f}")
    model.eval()
    return curve
