"""The population: P LoRA learners on one frozen base, trained with one forward and one backward pass.

Learner p's batch is the p-th block of rows of one stacked batch `[P*B, T]`; every adapted linear
layer is a `StackedLoRALinear` (learners/lora.py) and every learner has its own AdamW slice
(learners/optim.py), so each learner moves exactly as if it were trained alone with PEFT. A learner
whose loss or gradients become NaN/inf is frozen (never updated again) and marked `failed`.
Whole modules named in `modules_to_save` (embeddings, head, norms: learners/parts.py) are trained
per learner beside the adapters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from learners import probe as probing
from learners.arch import lm_logits, shared_copy
from learners.encoding import as_codec, encode_pairs, pair_ids, predicting
from learners.fastpath import FastLlama
from learners.lora import StackedLoRALinear, inject, module_matches
from learners.optim import StackedAdamW
from learners.parts import StackedPart, inject_parts
from learners.probe import ProbeResult

Pair = tuple[str, str]


@dataclass
class LearnerSpec:
    """One learner's hyperparameters (from its genome)."""

    lr: float
    weight_decay: float
    rank: int
    alpha: float
    dropout: float
    seed: int                                   # adapter init (and nothing else)
    target_modules: tuple[str, ...] | None = None   # None: the population's `target_modules`
    max_grad_norm: float | None = 1.0           # per-learner gradient clipping; None = off
    init_scale: float = 0.0   # 0: PEFT's init (B = 0); > 0: B random too, A and B x init_scale


@dataclass
class LearnerState:
    """Everything a learner carries to its child: adapter, AdamW moments, spec and step count.

    Tensors are on the CPU and cut to the learner's rank: `lora[name] = (A [rank, in], B [out, rank])`
    for each module it adapts (the layout of `evolve.merge.LoraFactors.layers`); `exp_avg` and
    `exp_avg_sq` have the same shapes (missing or None = fresh moments). `parts` holds the
    learner's copies of the population's `modules_to_save` (learners/parts.py), by
    `<module path>.<parameter>`, with their moments in `parts_exp_avg` / `parts_exp_avg_sq`
    (None: none, or fresh).
    """

    spec: LearnerSpec
    step: int
    lora: dict[str, tuple[torch.Tensor, torch.Tensor]]
    exp_avg: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
    exp_avg_sq: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
    failed: bool = False
    parts: dict[str, torch.Tensor] | None = None
    parts_exp_avg: dict[str, torch.Tensor] | None = None
    parts_exp_avg_sq: dict[str, torch.Tensor] | None = None


def dropout_seed(seed: int) -> int:
    """Learner seed -> its dropout generator's seed (not the adapter init's stream)."""
    return (seed * 1_000_003 + 0x5EED) % (2**63)


class Population:
    """P stacked LoRA learners on one frozen `model`, shared: the population's model is a copy of
    the module tree over the caller's weights (learners/arch.shared_copy), never a copy of the
    weights, and the caller's model is not modified.

    `target_modules` (and each spec's): module names by PEFT's suffix rule, where q_proj, k_proj
    and v_proj also name a fused q/k/v module (GPT-2's c_attn, GPT-NeoX's query_key_value, Phi-3's
    qkv_proj; learners/arch.py). A name that matches nothing raises ValueError listing the
    model's linear module names.

    `modules_to_save`: whole modules each learner trains its own copy of (learners/parts.py:
    `embed`, `head`, `norm` or module names); these run the transformers forward, not the fused
    one."""

    def __init__(self, model: nn.Module, tokenizer: object, specs: Sequence[LearnerSpec],
                 target_modules: Sequence[str] = ("q_proj", "v_proj"), device: str = "cpu",
                 r_max: int | None = None, probe_chunk: int = 1 << 18,
                 group_size: int | None = None, fused: bool = True,
                 group_tokens: int = 2048, betas: tuple[float, float] = (0.9, 0.999),
                 modules_to_save: Sequence[str] = ()) -> None:
        if not specs:
            raise ValueError("a population needs at least one LearnerSpec")
        self.specs = [replace(s) for s in specs]
        self.P = len(self.specs)
        self.default_targets = tuple(target_modules)
        union = list(self.default_targets)
        for s in self.specs:
            union += [t for t in (s.target_modules or ()) if t not in union]
        self.r_max = max([s.rank for s in self.specs] + [r_max or 0])
        self.device = torch.device(device)
        self.model: Any = shared_copy(model).to(self.device)   # a transformers causal LM
        self.tokenizer = tokenizer
        self.layers: dict[str, StackedLoRALinear] = inject(self.model, union, self.P, self.r_max)
        self.names = list(self.layers)
        self.parts, self.part_params = inject_parts(self.model, modules_to_save, self.P)
        # a trained head runs per learner block of rows: on every position, not the labelled few
        self.head_trained = isinstance(self.model.get_output_embeddings(), StackedPart)
        # max P*n*T*V logits per probe pass: 2**18 (~2.6k tokens at V=100); passes that fit in
        # cache ran 1.3x faster than one 5.6k-token pass (8 learners x 64 items)
        self.probe_chunk = probe_chunk
        # learners per forward/backward inside one step (`group_size`), or else on CPU as many as
        # make about `group_tokens` tokens, so the activations stay in cache: at P = 16 x 512
        # tokens, passes of 4 learners ran 1.25x faster than one pass of 16 and 1.4x faster than
        # passes of 1 (per-op overhead). On CUDA, all P in one pass (None below).
        self.group_size = group_size or (None if self.device.type == "cuda" else 0)
        self.group_tokens = group_tokens
        self.failed = np.zeros(self.P, dtype=bool)
        self.steps = np.zeros(self.P, dtype=np.int64)
        self.opt = StackedAdamW(self._params(), [s.lr for s in self.specs],
                                [s.weight_decay for s in self.specs],
                                [s.max_grad_norm for s in self.specs], betas=betas)
        # one dropout generator per learner, seeded from its seed (replay alone = in a group)
        self.dropout_gens = [torch.Generator(device=self.device) for _ in range(self.P)]
        for layer in self.layers.values():
            layer.generators = self.dropout_gens
        self.decoder: Any = self.model.base_model   # the transformer, no LM head
        # the fused Llama forward (learners/fastpath.py) where the base is Llama-shaped
        self.fast = (FastLlama(self.model, self.layers)
                     if fused and not self.parts and FastLlama.supports(self.model) else None)
        self._hidden: Callable[..., torch.Tensor] | None = (
            self.fast.hidden if self.fast is not None else None)
        # training passes run the rows' common leading tokens once per learner (FastLlama.hidden)
        self.share_prefix = True
        for i in range(self.P):
            self._configure(i)
            self.reset(i)

    def compile(self, **kwargs: Any) -> None:
        """Train through `torch.compile(..., dynamic=True, **kwargs)` of the fused forward (or of the
        decoder where there is none). It compiles for 50-80 s on the first step; on the fused
        forward it gave no gain on CPU (docs/learners.md), on the transformers forward docs/measurements.md
        measured 1.3-1.5x."""
        if self.fast is not None:
            self._hidden = torch.compile(self.fast.hidden, dynamic=True, **kwargs)
        else:
            self.decoder = torch.compile(self.model.base_model, dynamic=True, **kwargs)

    # --- layout -------------------------------------------------------------------------------
    def _params(self) -> list[torch.Tensor]:
        """[A_0, B_0, A_1, B_1, ...] over the adapted modules, then the trained parts' copies
        (`part_params`), each [P, ...]."""
        lora: list[torch.Tensor] = [t for n in self.names
                                    for t in (self.layers[n].lora_A, self.layers[n].lora_B)]
        return lora + list(self.part_params.values())

    def adapts(self, i: int, name: str) -> bool:
        """Whether learner i has an adapter on module `name`."""
        return module_matches(name, self.specs[i].target_modules or self.default_targets)

    def _configure(self, i: int) -> None:
        s = self.specs[i]
        if (not s.rank >= 1 or s.alpha <= 0 or not 0 <= s.dropout < 1 or s.lr < 0
                or not s.init_scale >= 0):
            raise ValueError(f"learner {i}: invalid spec {s}; need rank>=1, alpha>0, "
                             "0<=dropout<1, lr>=0, init_scale>=0")
        if not any(self.adapts(i, n) for n in self.names):
            raise ValueError(f"learner {i}: target_modules {s.target_modules} match no adapted "
                             f"module; use names from the population's {self.default_targets}")
        for name, layer in self.layers.items():
            layer.set_learner(i, s.rank, s.alpha, s.dropout, self.adapts(i, name))
        self.opt.set_hparams(i, s.lr, s.weight_decay, s.max_grad_norm)

    def reset(self, i: int) -> None:
        """Learner i starts afresh: PEFT's init from its seed, zero moments, step 0, not failed."""
        g = torch.Generator().manual_seed(self.specs[i].seed)
        for name, layer in self.layers.items():
            layer.reset_learner(i, self.specs[i].rank, g, self.adapts(i, name),
                                self.specs[i].init_scale)
        for part in self.parts.values():
            part.reset_learner(i)
        self.dropout_gens[i].manual_seed(dropout_seed(self.specs[i].seed))
        self.opt.set_slice(i, {"exp_avg": [torch.zeros_like(t[i]) for t in self.opt.exp_avg],
                               "exp_avg_sq": [torch.zeros_like(t[i]) for t in self.opt.exp_avg],
                               "step": 0.0})
        self.steps[i], self.failed[i] = 0, False

    # --- training ------------------------------------------------------------------------------
    def _stack(self, batches: Sequence[Sequence[Pair]]
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Encode learner batches into one right-padded [G*B, T] batch; rows of learner p are block p.

        Returns input_ids, attention_mask, labels [G*B, T] and B. Learners with fewer than B pairs get
        padding rows (no labels; one attended token so no row is fully masked).
        """
        B = max(len(b) for b in batches)
        flat = [pair for b in batches for pair in b]
        enc = encode_pairs(self.tokenizer, flat)
        T = enc.input_ids.shape[1]
        pad = as_codec(self.tokenizer).pad_token_id or 0
        ids = torch.full((len(batches) * B, T), pad, dtype=torch.long)
        mask = torch.zeros((len(batches) * B, T), dtype=torch.long)
        mask[:, 0] = 1
        labels = torch.full((len(batches) * B, T), -100, dtype=torch.long)
        rows = torch.tensor([p * B + j for p, b in enumerate(batches) for j in range(len(b))],
                            dtype=torch.long)
        ids[rows], mask[rows], labels[rows] = enc.input_ids, enc.attention_mask, enc.labels
        d = self.device
        return ids.to(d), mask.to(d), labels.to(d), B

    def losses(self, batches: Sequence[Sequence[Pair]], span: tuple[int, int] | None = None
               ) -> torch.Tensor:
        """[G] mean cross-entropy of learners lo..hi-1 (`span`, default all) on their own batches
        (answer tokens + eos), with graph. An empty batch gives NaN. Only labelled positions go
        through the LM head."""
        lo, hi = span or (0, self.P)
        G = hi - lo
        stacked: list[Any] = [*self.layers.values(), *self.parts.values()]
        for layer in stacked:
            layer.span = (lo, hi)
        try:
            ids, mask, labels, B = self._stack(batches[lo:hi])
            lengths = mask.sum(1).view(G, B)            # tokens per row; rows past a batch: 1
            rows = [(len(b), int(lengths[g, :len(b)].max()) if b else 0)
                    for g, b in enumerate(batches[lo:hi])]
            sel, target = predicting(labels)                     # [G*B, L]: later columns reach no label
            L = sel.shape[1]
            ids, mask = ids[:, :L], mask[:, :L]
            for layer in self.layers.values():
                layer.rows, layer._T = rows, L
            if self._hidden is not None:                         # [K, H] positions predicting a label
                h = self._hidden(ids, mask, sel, G, share=self.share_prefix)
            else:
                h = self.decoder(input_ids=ids, attention_mask=mask).last_hidden_state
                h = h if self.head_trained else h[sel]
            logits = lm_logits(self.model, h)                    # [K, V]
            logits = logits[sel] if self.head_trained else logits
        finally:
            for layer in stacked:
                layer.span = (0, self.P)
            for layer in self.layers.values():
                layer.rows = None
        ce = nn.functional.cross_entropy(logits, target[sel], reduction="none")  # [K]
        owner = (torch.arange(ids.shape[0], device=ids.device) // B)[:, None].expand_as(sel)[sel]
        total = torch.zeros(G, device=ids.device).index_add(0, owner, ce)
        count = torch.zeros(G, device=ids.device).index_add(0, owner, torch.ones_like(ce))
        return total / count                                     # 0/0 = NaN for empty batches

    def _group(self, batches: Sequence[Sequence[Pair]]) -> int:
        """Learners per forward/backward pass this step (see `group_size` in __init__)."""
        if self.group_size is None:
            return self.P
        if self.group_size > 0:
            return self.group_size
        # tokens per learner: the longest encoded sequence (chat template included; the codec
        # memoises the pairs, so `_stack` reuses the work) x the batch size
        B = max(len(b) for b in batches)
        T = self.tokens(batches)
        fit = max(1, min(self.P, self.group_tokens // max(1, B * T)))
        passes = -(-self.P // fit)
        return -(-self.P // passes)     # the same passes, evened out: 16 by 5 -> 4, 4, 4, 4

    def tokens(self, batches: Sequence[Sequence[Pair]]) -> int:
        """The longest sequence, in tokens, of the learners' batches as they are encoded (prompt as
        the model expects it, answer, end token): the T of the padded [G*B, T] batch."""
        codec = as_codec(self.tokenizer)
        return max((len(pair_ids(codec, p, a)[0]) for b in batches for p, a in b), default=0)

    def _train_mode(self, on: bool) -> None:
        """Training mode for the adapters only (their dropout is the learner's gene): the frozen
        base stays in eval mode, so its own dropout (GPT-2's resid/attn/embd_pdrop...) is off, as
        for any frozen feature extractor, and no learner's step draws from a shared RNG."""
        for layer in self.layers.values():
            layer.train(on)

    def train_step(self, batches: Sequence[Sequence[Pair]],
                   active: Sequence[bool] | None = None) -> np.ndarray:
        """One AdamW step of every learner on its own batch; returns [P] loss (NaN: failed/idle).

        `batches[i]` = learner i's (prompt, answer) pairs; an empty list or `active[i] = False` means
        learner i sits this step out (no update, its AdamW state and step count unchanged).
        """
        if len(batches) != self.P:
            raise ValueError(f"train_step got {len(batches)} batches for {self.P} learners; "
                             "pass one list of (prompt, answer) pairs per learner")
        act = np.array([len(b) > 0 for b in batches]) & ~self.failed
        if active is not None:
            act &= np.asarray(active, dtype=bool)
        out = np.full(self.P, np.nan)
        if not act.any():
            return out
        self._train_mode(True)
        self.opt.zero_grad()
        todo = [b if a else [] for b, a in zip(batches, act, strict=True)]
        size = self._group(todo)
        for lo in range(0, self.P, size):   # gradients of disjoint learners: exact
            hi = min(lo + size, self.P)
            if not act[lo:hi].any():
                continue
            loss = self.losses(todo, (lo, hi))
            finite = torch.isfinite(loss).cpu().numpy()
            self.failed[lo:hi] |= act[lo:hi] & ~finite   # NaN/inf loss: frozen from now on
            act[lo:hi] &= finite
            out[lo:hi] = loss.detach().cpu().numpy()
            keep = torch.from_numpy(act[lo:hi]).to(loss.device)
            if keep.any():
                loss[keep].sum().backward()
        if act.any():
            updated = self.opt.step(torch.from_numpy(act)).cpu().numpy()
            self.failed |= act & ~updated      # finite loss but NaN/inf gradients or weights
            self.steps += updated
        else:
            updated = act
        self.opt.zero_grad()
        self._train_mode(False)
        out[~updated] = np.nan
        return out

    # --- probes --------------------------------------------------------------------------------
    def probe(self, pairs: Sequence[Pair]) -> ProbeResult:
        """Exact-match verdicts of every learner on the same N items: one teacher-forced pass per
        chunk. ProbeResult.correct/prob/margin are [P, N]."""
        return probing.probe_teacher_forced(self.model, self.tokenizer, self.P, pairs,
                                            self.probe_chunk, self.device, self._hidden)

    def probe_generate(self, pairs: Sequence[Pair]) -> ProbeResult:
        """The same verdicts from greedy `generate()` (left padding, KV cache); slower, for checks."""
        return probing.probe_generate(self.model, self.tokenizer, self.P, pairs,
                                      self.probe_chunk, self.device)

    # --- state ---------------------------------------------------------------------------------
    def get_state(self, i: int) -> LearnerState:
        """A CPU copy of learner i: adapter, AdamW moments and step, spec, failed flag."""
        r = self.specs[i].rank
        opt = self.opt.get_slice(i)
        lora, m, v = {}, {}, {}
        for k, name in enumerate(self.names):
            if not self.adapts(i, name):
                continue
            layer = self.layers[name]
            lora[name] = (layer.lora_A[i, :r].detach().cpu().clone(),
                          layer.lora_B[i, :, :r].detach().cpu().clone())
            m[name] = (opt["exp_avg"][2 * k][:r], opt["exp_avg"][2 * k + 1][:, :r])
            v[name] = (opt["exp_avg_sq"][2 * k][:r], opt["exp_avg_sq"][2 * k + 1][:, :r])
        state = LearnerState(spec=replace(self.specs[i]), step=int(opt["step"]), lora=lora,
                             exp_avg=m, exp_avg_sq=v, failed=bool(self.failed[i]))
        if self.part_params:
            first = 2 * len(self.names)
            keys = list(self.part_params)
            state.parts = {key: t[i].detach().cpu().clone() for key, t in self.part_params.items()}
            state.parts_exp_avg = dict(zip(keys, opt["exp_avg"][first:], strict=True))
            state.parts_exp_avg_sq = dict(zip(keys, opt["exp_avg_sq"][first:], strict=True))
        return state

    def set_state(self, i: int, state: LearnerState) -> None:
        """Make learner i a copy of `state` (inheritance): spec, adapter, AdamW state, step, failed.

        Modules of the spec that the state lacks start fresh (PEFT init from the spec's seed), and
        trained parts it lacks start as the base's weights.
        """
        s = state.spec
        if s.rank > self.r_max:
            raise ValueError(f"state has rank {s.rank} > the population's r_max {self.r_max}; "
                             "build the Population with r_max >= the largest rank")
        unknown = set(state.lora) - set(self.names)
        if unknown:
            raise ValueError(f"state adapts modules {sorted(unknown)} this population lacks; "
                             f"add them to target_modules (has {self.names})")
        untrained = set(state.parts or ()) - set(self.part_params)
        if untrained:
            raise ValueError(f"state trains {sorted(untrained)}, which this population does not; "
                             "build it with those modules_to_save (training.modules_to_save)")
        self.specs[i] = replace(s)
        self._configure(i)
        self.reset(i)
        slc = self.opt.get_slice(i)
        with torch.no_grad():
            for k, name in enumerate(self.names):
                if name not in state.lora or not self.adapts(i, name):
                    continue
                a, b = state.lora[name]
                if a.shape[0] != s.rank or b.shape[1] != s.rank:
                    raise ValueError(f"state of {name} has rank {a.shape[0]} but its spec says "
                                     f"{s.rank}; re-factorise the adapter or fix spec.rank")
                layer = self.layers[name]
                layer.lora_A[i].zero_()
                layer.lora_B[i].zero_()
                layer.lora_A[i, :s.rank] = a.to(layer.lora_A.device, layer.lora_A.dtype)
                layer.lora_B[i, :, :s.rank] = b.to(layer.lora_B.device, layer.lora_B.dtype)
                for moments, src in ((slc["exp_avg"], state.exp_avg),
                                     (slc["exp_avg_sq"], state.exp_avg_sq)):
                    if src and name in src:
                        moments[2 * k][:s.rank] = src[name][0]
                        moments[2 * k + 1][:, :s.rank] = src[name][1]
            parts = state.parts or {}
            for j, (key, t) in enumerate(self.part_params.items()):
                if key not in parts:
                    continue
                t[i] = parts[key].to(t.device, t.dtype)
                for moments, psrc in ((slc["exp_avg"], state.parts_exp_avg),
                                      (slc["exp_avg_sq"], state.parts_exp_avg_sq)):
                    if psrc and key in psrc:
                        moments[2 * len(self.names) + j] = psrc[key]
        has_moments = bool(state.exp_avg) and bool(state.exp_avg_sq)
        slc["step"] = float(state.step) if has_moments else 0.0
        self.opt.set_slice(i, slc)
        self.steps[i] = int(state.step)
        self.failed[i] = bool(state.failed)

    # --- weights -------------------------------------------------------------------------------
    def lora_delta(self, i: int) -> dict[str, torch.Tensor]:
        """Module name -> learner i's update (alpha/r) B @ A  [out, in], on the CPU."""
        return {n: self.layers[n].delta(i).cpu() for n in self.names if self.adapts(i, n)}

    def merged_weights(self, i: int) -> dict[str, torch.Tensor]:
        """Module name -> W + delta [out, in] for every module learner i adapts, on the CPU."""
        return {n: (self.layers[n].base_weight() + self.layers[n].delta(i)).cpu()
                for n in self.names if self.adapts(i, n)}
