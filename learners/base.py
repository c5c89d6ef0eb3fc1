"""The frozen base model: build a small Llama-style causal LM, pretrain it, save it, load any base.

`load_base` accepts ANY local transformers causal-LM directory (`config.json` + weights + a
tokenizer), not only the embedded default that `evolve.basemodel` builds with `build_base` and
`pretrain`. Everything is float32 with eager attention: CPU sdpa has no batching rule and eager was
faster at these 10-40-token lengths (docs/measurements.md).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from common.errors import EvolveError
from learners.encoding import IGNORE, as_codec


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


# transformers 5 loads into meta tensors and ties embeddings afterwards; two loads on two threads
# at once left a tied lm_head on the meta device ("Cannot copy out of meta tensor" later): one
# load at a time per process (the local backend starts its groups' loads side by side)
_LOAD_LOCK = threading.Lock()
_QUIET_LOCK = threading.Lock()
_QUIET = {"depth": 0, "was": False}  # nesting across threads: the bars' switch is process-global


@contextmanager
def _quiet_io() -> Iterator[None]:
    """No transformers progress bars for a sub-second save/load (they clutter the CLI's output).

    The switch is global, and the local backend loads a base on several threads at once: the first
    thread in turns the bars off, the last one out restores them (a plain save/restore let a
    second thread load with the bars back on and print "Loading weights" lines).
    """
    from transformers.utils import logging as hf_logging

    with _QUIET_LOCK:
        if _QUIET["depth"] == 0:
            _QUIET["was"] = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
        _QUIET["depth"] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _QUIET["depth"] -= 1
            if _QUIET["depth"] == 0 and _QUIET["was"]:
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
        import transformers

        kind = _model_type(path)
        if kind is not None and "does not recognize this architecture" in str(e):
            raise EvolveError(f"--base {path}: model_type {kind!r} is an architecture transformers "
                              f"{transformers.__version__} cannot load; upgrade it (pip install -U "
                              "transformers) or convert the model to a supported architecture"
                              ) from None
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


def _model_type(path: Path) -> str | None:
    """config.json's model_type, or None if it cannot be read."""
    import json

    try:
        kind = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


# files one of which a saved tokenizer has (fast, sentencepiece, GPT-2 BPE, WordPiece)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json",
                   "vocab.txt", "spiece.model")



def load_base(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a local causal LM and its tokenizer (float32, eager attention, eval mode).

    Raises EvolveError (one line naming the path and the fix) for a missing path, a directory
    without config.json, a config that is not a causal LM, or missing weights / tokenizer.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path).expanduser()
    _check_causal(p)
    if not any((p / f).is_file() for f in TOKENIZER_FILES):
        raise EvolveError(f"--base {p}: no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save "
                          f"the model's tokenizer there with tokenizer.save_pretrained('{p}')")
    try:
        with _quiet_io(), _LOAD_LOCK:
            model = AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32,
                                                         attn_implementation="eager")
    except Exception as e:  # noqa: BLE001
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise EvolveError(f"--base {p}: cannot load the model weights ({first}); save them with "
                          "model.save_pretrained into that directory") from None
    meta = [n for n, t in model.named_parameters() if t.is_meta]
    if meta:
        raise EvolveError(f"--base {p}: weights {meta[:3]} were not in the checkpoint nor tied to "
                          "one; save the whole model with model.save_pretrained into that directory")
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


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """One torch intra-op thread inside the block (the previous count is restored after).

    Spin-waiting OpenMP threads collapse 65x on a busy 2-core box (docs/measurements.md), and a kernel's
    float result may depend on how many threads split it: one thread keeps a build bitwise the same
    whatever the machine's core count. Python threads started inside the block inherit the count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


SHARES = 2        # a batch is split into 2 shares, one per Python thread: FIXED, not the core count,
                  # so the sum order and thus the weights are the same on a 1-core or a 16-core box
ROW_TOKENS = 64   # packed row length; at batch 64 of the default mix 64 beat 32 and 128 (156 vs
                  # 162 / 170 ms a step on one thread) and wastes ~10% of the tokens vs ~37% padded


@dataclass
class Packed:
    """(prompt, answer) sequences packed end to end into rows, without padding between them.

    input_ids:      `[R, T]` long, `<bos> prompt answer <eos>` of several sequences per row, then
                    id 0 to the row's end (never attended by a real token, never scored).
    position_ids:   `[R, T]` long, restarting at 0 for every sequence (so rotary positions are those
                    of the sequence alone).
    attention_mask: `[R, 1, T, T]` float, 0 where a query may attend (same sequence, not later),
                    float32 min elsewhere: the additive mask eager attention adds to its scores.
    labels:         `[R, T]` long, input_ids on answer tokens and eos, -100 elsewhere (unshifted).
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor


def pack(seqs: Sequence[tuple[list[int], int]], row_tokens: int = ROW_TOKENS) -> Packed:
    """Pack `seqs` (token ids, number of unscored leading tokens) first-fit by decreasing length into
    rows of `row_tokens` (or of the longest sequence, if longer); T = the fullest row."""
    cap = max(row_tokens, max(len(ids) for ids, _ in seqs))
    rows: list[list[int]] = []       # sequence indices per row
    fill: list[int] = []
    for i in sorted(range(len(seqs)), key=lambda i: -len(seqs[i][0])):  # stable: ties keep order
        n = len(seqs[i][0])
        r = next((r for r, f in enumerate(fill) if f + n <= cap), len(rows))
        if r == len(rows):
            rows.append([])
            fill.append(0)
        rows[r].append(i)
        fill[r] += n
    T = max(fill)
    ids: list[list[int]] = []
    pos: list[list[int]] = []
    seg: list[list[int]] = []
    lab: list[list[int]] = []
    for members, f in zip(rows, fill, strict=True):
        r_ids: list[int] = []
        r_pos: list[int] = []
        r_seg: list[int] = []
        r_lab: list[int] = []
        for k, i in enumerate(members):
            x, head = seqs[i]
            r_ids += x
            r_pos += range(len(x))
            r_seg += [k] * len(x)
            r_lab += [IGNORE] * head + x[head:]
        pad = T - f
        ids.append(r_ids + [0] * pad)
        pos.append(r_pos + [0] * pad)
        seg.append(r_seg + [-1] * pad)   # padding is one more "sequence": no query row is all masked
        lab.append(r_lab + [IGNORE] * pad)
    segs = torch.tensor(seg)
    allow = (segs[:, :, None] == segs[:, None, :]) & torch.ones(T, T, dtype=torch.bool).tril()
    mask = torch.zeros(len(rows), 1, T, T).masked_fill_(~allow[:, None], torch.finfo(torch.float32).min)
    return Packed(torch.tensor(ids), torch.tensor(pos), mask, torch.tensor(lab))


def split_shares(seqs: Sequence[tuple[list[int], int]], shares: int = SHARES) -> list[list[int]]:
    """Indices of `seqs` in `shares` groups of about equal token count (longest first, each to the
    lightest group; ties to the lower group): a function of the lengths only."""
    groups: list[list[int]] = [[] for _ in range(shares)]
    load = [0] * shares
    for i in sorted(range(len(seqs)), key=lambda i: -len(seqs[i][0])):
        g = load.index(min(load))
        groups[g].append(i)
        load[g] += len(seqs[i][0])
    return groups


def packed_loss_grads(model: PreTrainedModel, params: Sequence[torch.nn.Parameter], packed: Packed,
                      denom: int) -> tuple[float, list[torch.Tensor]]:
    """Sum of the answer-token cross-entropies of `packed`, divided by `denom`, and its gradient for
    `params` (zeros for an unused one); `.grad` is not touched, so threads may run it side by side."""
    logits = model(input_ids=packed.input_ids, attention_mask=packed.attention_mask,
                   position_ids=packed.position_ids).logits                     # [R, T, V]
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), packed.labels[:, 1:].flatten(),
                           ignore_index=IGNORE, reduction="sum") / denom
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return float(loss.detach()), [torch.zeros_like(p) if g is None else g
                                  for p, g in zip(params, grads, strict=True)]


def pretrain(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[tuple[str, str]],
             steps: int, batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
             progress: bool = True, weight_decay: float = 0.01, warmup: int = 100) -> list[float]:
    """Train every weight of `model` on `pairs` (loss on answer tokens + eos); returns the loss curve.

    AdamW, linear warm-up then cosine decay, gradient norm clipped at 1. Batches of `batch_size`
    pairs are drawn with replacement by a generator seeded with `seed`; so the result is a function
    of (model, pairs, steps, batch_size, lr, seed), bitwise, whatever the machine's core count.

    A step's loss is the mean cross-entropy over the batch's answer tokens, as for one padded batch,
    but computed without padding: the batch is split into `SHARES` (2) shares of equal token count,
    each `pack`ed into rows with a block-diagonal causal mask and per-sequence positions, and the two
    shares' gradients are computed side by side in two Python threads of one torch thread each
    (torch releases the GIL in its kernels), then summed in a fixed order. The model must take a 4D
    additive `attention_mask` and `position_ids`, as Llama-style transformers models do
    (`build_base`'s does). The default base's step, measured on a 2-core AMD EPYC: 223 ms padded on
    one thread, 156 ms packed on one thread, 94 ms packed on two threads with both cores free (175
    ms pinned to one core).
    """
    from tqdm.auto import tqdm

    if not pairs:
        raise ValueError("pretrain got no (prompt, answer) pairs; pass a non-empty list")
    if steps < 0 or batch_size < 1:
        raise ValueError(f"pretrain steps={steps}, batch_size={batch_size}: need steps >= 0, batch >= 1")
    codec = as_codec(tokenizer)
    if codec.eos_token_id is None:
        raise ValueError("pretrain needs a tokenizer with an eos token (answers end with eos)")
    head = [] if codec.bos_token_id is None else [codec.bos_token_id]
    eos = codec.eos_token_id
    g = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    # fused AdamW: 1.6 vs 6.8 ms a step for the default base's 1.08 M parameters on one thread
    fused = device.type in ("cpu", "cuda")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98), fused=fused)
    warm = min(warmup, max(1, steps // 10))
    curve: list[float] = []
    model.train()
    bar = tqdm(range(steps), desc="pretraining base", unit="step", disable=not progress,
               mininterval=1.0)
    def draw() -> tuple[int, list[Packed]]:
        """The next batch from `g` (called strictly in step order): denominator and packed shares."""
        seqs = []
        for i in torch.randint(len(pairs), (batch_size,), generator=g).tolist():
            prompt, answer = pairs[i]
            x = head + codec.encode(prompt)
            seqs.append((x + codec.encode(answer) + [eos], len(x)))
        denom = sum(len(x) - n for x, n in seqs)   # answer tokens + eos of the whole batch
        return denom, [_to(pack([seqs[i] for i in share]), device)
                       for share in split_shares(seqs) if share]

    def helper(denom: int, packs: list[Packed], last: bool
               ) -> tuple[list[tuple[float, list[torch.Tensor]]], tuple[int, list[Packed]] | None]:
        """The other thread's part of a step: shares 1.., then drawing the next batch, which
        overlaps the optimizer step on the main thread (~3 of ~95 ms a step)."""
        return ([packed_loss_grads(model, params, p, denom) for p in packs],
                None if last else draw())

    with one_torch_thread(), ThreadPoolExecutor(1, thread_name_prefix="pretrain") as pool:
        batch = draw() if steps else None
        for step in bar:
            assert batch is not None
            denom, packs = batch
            fut = pool.submit(helper, denom, packs[1:], step == steps - 1)
            loss, grads = packed_loss_grads(model, params, packs[0], denom)  # share 0 on this thread
            rest, batch = fut.result()
            for more_loss, more in rest:    # shares summed in index order: the same on any machine
                loss += more_loss
                for a, b in zip(grads, more, strict=True):
                    a.add_(b)
            for p, gr in zip(params, grads, strict=True):
                p.grad = gr
            for group in opt.param_groups:
                group["lr"] = lr_at(step, steps, lr, warm)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            curve.append(loss)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{sum(curve[-50:]) / len(curve[-50:]):.3f}")
    model.eval()
    return curve


def _to(p: Packed, device: torch.device) -> Packed:
    return p if device.type == "cpu" else Packed(*(t.to(device) for t in (
        p.input_ids, p.position_ids, p.attention_mask, p.labels)))
