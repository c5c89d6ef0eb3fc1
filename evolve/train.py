"""The group-training job: one group of learners trained side by side for one generation.

`train_group(job) -> GroupResult` is a pure function of plain picklable data, so the local backend
runs it in-process and a Ray backend runs the very same function on workers. It builds a
`Population` on the frozen base, restores inherited states, probes everything before training
(the baseline, which the adversarial curriculum also orders by), trains window by window (a window =
`checkpoint_every` new items), probes all items and the holdout after every window, then runs the
spectral analysis and the learning-speed assessment on forks that are thrown away.

A probe (`probe_items`) judges each item the way its family does: exact items by the teacher-forced
pass (greedy decoding's verdict without a sampling loop), key-term items (`Item.exact` False, e.g.
JSONL question sets) by batched greedy generation read by the key-term judge.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from common.seeds import derive_seed
from evolve.steps import Pair, pairs, probe_items, train_steps

if TYPE_CHECKING:
    import torch

    from curricula.items import Item
    from evolve.genome import Genome
    from evolve.operators.decisions import MergePlan
    from learners.population import LearnerSpec, LearnerState, Population

Progress = Callable[[str, int], None]   # ("total", n) once per job, then ("step", 1) per step


@dataclass
class LearnerPlan:
    """One learner's part of a job: what it is, where it starts, how its stream is made."""

    learner_id: str
    spec: LearnerSpec                  # mutated values included
    state: LearnerState | None = None  # inherited (adapter + AdamW + step) or None
    curriculum: str = "random"         # curricula.STRATEGIES name
    curriculum_params: dict[str, Any] = field(default_factory=dict)
    stream_seed: int = 0
    rehearsal_ratio: float = 0.0       # extra earlier-generation items per window, per new item
    steps_per_item: int = 1            # optimiser steps on each batch


@dataclass
class GroupJob:
    """Everything one group needs; plain data (Items, specs, tensors), picklable for Ray."""

    base: str
    generation: int
    learners: list[LearnerPlan]
    items: list[Item]                  # this generation's fresh training items
    holdout: list[Item]                # the fixed holdout, probed at every checkpoint
    rehearsal_pool: list[Item] = field(default_factory=list)  # earlier generations' items
    batch_size: int = 4
    checkpoint_every: int = 8
    epochs: int = 1                    # passes over `items` (each re-ordered, cut into windows)
    probe_passes: int = 1              # > 1: one probe every this many passes (windows merged)
    max_grad_norm: float | None = 1.0
    adam_beta2: float = 0.999          # AdamW's second-moment decay
    init_scale: float = 0.0            # fresh adapters' init (LearnerSpec.init_scale)
    modules_to_save: tuple[str, ...] = ()   # whole modules each learner trains (learners/parts.py)
    spectral: bool = True
    assess_items: list[Item] = field(default_factory=list)    # fixed never-trained probe items
    assess_steps: int = 0              # 0 = no assessment this generation
    assess_checkpoints: int = 4
    max_new_tokens: int = 32           # greedy generation budget of key-term items, in tokens
    device: str = "cpu"                # cpu, cuda or auto: `auto` is resolved where the job runs
    seed: int = 0
    group: int = 0


@dataclass
class GroupResult:
    """What came out of one group; arrays are numpy, index p follows `job.learners`."""

    group: int
    learner_ids: list[str]
    steps: list[int]                   # [K] checkpoint steps, counted in new training items
    item_ids: list[str]                # trained items (n) then holdout (H)
    n_train: int
    correct: np.ndarray                # [K+1, P, n+H] bool; index 0 = before training
    prob: np.ndarray                   # [K+1, P, n+H] probability of the whole answer
    windows: list[dict[str, int]]      # per learner: item id -> checkpoint index (0..K-1)
    losses: np.ndarray                 # [K, P] mean training loss per window (nan if none/failed)
    final_states: list[LearnerState]
    failures: dict[str, str]           # learner id -> one-line reason
    spectral: list[dict[str, Any] | None]
    assess: list[dict[str, float | None]]            # assess_* signals per learner ({} = skipped)
    assess_curves: list[list[tuple[int, float]]]     # probe accuracy over assessment training items
    timings: dict[str, float]
    device: str = "cpu"                # the device the group trained on (`auto` resolved there)
    self_prob: np.ndarray | None = None   # [K+1, P, n+H] probability of the learner's own answer

    def per_learner(self) -> list[LearnerResult]:
        """The result sliced once into one `LearnerResult` per learner, in job order."""
        return [LearnerResult(
            learner_id=lid, steps=list(self.steps), item_ids=list(self.item_ids),
            n_train=self.n_train, correct=self.correct[:, p], prob=self.prob[:, p],
            self_prob=None if self.self_prob is None else self.self_prob[:, p],
            window=dict(self.windows[p]), losses=self.losses[:, p],
            final_state=self.final_states[p], failure=self.failures.get(lid, ""),
            spectral=self.spectral[p], assess=dict(self.assess[p]),
            assess_curve=list(self.assess_curves[p]))
            for p, lid in enumerate(self.learner_ids)]


@dataclass
class LearnerResult:
    """One learner's part of a `GroupResult`: what every phase after training reads."""

    learner_id: str
    steps: list[int]                   # [K] checkpoint steps, counted in new training items
    item_ids: list[str]                # trained items (n) then holdout (H)
    n_train: int
    correct: np.ndarray                # [K+1, n+H] bool; index 0 = before training
    prob: np.ndarray                   # [K+1, n+H] probability of the whole answer
    self_prob: np.ndarray | None       # [K+1, n+H] probability of its own answer (None: unprobed)
    window: dict[str, int]             # item id -> checkpoint index (0..K-1) that trained it
    losses: np.ndarray                 # [K] mean training loss per window (nan if none/failed)
    final_state: LearnerState          # after the generation
    failure: str                       # "" = trained fine, else the one-line reason
    spectral: dict[str, Any] | None
    assess: dict[str, float | None]    # assess_* signals ({} = skipped)
    assess_curve: list[tuple[int, float]]   # probe accuracy over assessment training items


def build_stream(plan: LearnerPlan, items: Sequence[Item], pool: Sequence[Item], batch_size: int,
                 checkpoint_every: int, probe: dict[str, tuple[bool, float]] | None,
                 epochs: int = 1, probe_passes: int = 1,
                 ) -> tuple[list[list[list[Pair]]], dict[str, int]]:
    """The learner's stream as windows of optimiser-step batches, and item id -> window index.

    Window k holds the curriculum's new items k*checkpoint_every .. (k+1)*checkpoint_every - 1 (by
    first occurrence; repeats a rehearsing strategy inserts stay where it put them), plus
    round(rehearsal_ratio * new) items drawn from earlier generations at seeded positions. Each batch
    of `batch_size` is trained `steps_per_item` times in a row. `epochs` > 1 appends further passes,
    each ordered afresh by the curriculum (its own seed) and cut into windows the same way; an
    item's window stays the one of its first pass. `probe_passes` m > 1 merges the windows of
    every m passes (the last group may be shorter) into one, probed once at its end: long
    grokking runs probe every m passes instead of every window, and every item's window is 0.
    """
    import curricula

    strategy = curricula.STRATEGIES.get(plan.curriculum)(**plan.curriculum_params)
    windows: list[list[Item]] = []
    window_of: dict[str, int] = {}
    new_in: list[int] = []                       # per window: its pass's items new in it
    pass_of: list[int] = []                      # per window: its pass
    for e in range(epochs):
        seed = plan.stream_seed if e == 0 else derive_seed(plan.stream_seed, "epoch", e)
        cut, first = _cut(strategy.order(list(items), seed=seed, probe=probe), checkpoint_every)
        window_of = window_of or first
        new_in += [sum(1 for it in w if first[it.id] == k) for k, w in enumerate(cut)]
        pass_of += [e] * len(cut)
        windows += cut
    rng = random.Random(derive_seed(plan.stream_seed, "rehearsal"))
    out: list[list[list[Pair]]] = []
    for k, win in enumerate(windows):
        win = list(win)
        for _ in range(round(plan.rehearsal_ratio * new_in[k]) if pool else 0):
            win.insert(rng.randrange(len(win) + 1), rng.choice(pool))
        batches = [pairs(win[i:i + batch_size]) for i in range(0, len(win), batch_size)]
        out.append([b for b in batches for _ in range(plan.steps_per_item)])
    if probe_passes > 1:
        merged: list[list[list[Pair]]] = [[] for _ in range(math.ceil(epochs / probe_passes))]
        for k, w in enumerate(out):
            merged[pass_of[k] // probe_passes] += w
        out, window_of = merged, dict.fromkeys(window_of, 0)
    return out, window_of


def _cut(order: Sequence[Item], checkpoint_every: int) -> tuple[list[list[Item]], dict[str, int]]:
    """One pass cut into windows of `checkpoint_every` new items (by first occurrence), and item
    id -> its window index within the pass."""
    windows: list[list[Item]] = [[]]
    window_of: dict[str, int] = {}
    for it in order:
        if it.id not in window_of:
            if len(window_of) and len(window_of) % checkpoint_every == 0 and \
                    len(window_of) // checkpoint_every == len(windows):
                windows.append([])
            window_of[it.id] = len(windows) - 1
        windows[-1].append(it)
    return windows, window_of


def checkpoint_steps(n: int, checkpoint_every: int, K: int, probe_passes: int = 1,
                     epochs: int = 1) -> list[int]:
    """The step, in training items of the generation, of each of the K checkpoints: windows of
    `checkpoint_every` items, ceil(n / checkpoint_every) per pass over the n items; with
    `probe_passes` m > 1, one checkpoint at the end of every m-th pass (and of the last)."""
    if probe_passes > 1:
        return [min((k + 1) * probe_passes, epochs) * n for k in range(K)]
    per_pass = max(1, math.ceil(n / checkpoint_every))
    return [(k // per_pass) * n + min((k % per_pass + 1) * checkpoint_every, n) for k in range(K)]


def _population(job: GroupJob) -> Population:
    import torch

    from learners.base import load_base
    from learners.population import Population
    from learners.resolve import base_dtype

    torch.manual_seed(job.seed)
    model, tok = load_base(job.base)
    model = model.to(base_dtype(job.device))   # bfloat16 on a CUDA GPU that has it, else float32
    specs = [dataclasses.replace(p.spec, max_grad_norm=job.max_grad_norm, init_scale=job.init_scale)
             for p in job.learners]
    targets: list[str] = []
    for s in specs:
        targets += [t for t in (s.target_modules or ()) if t not in targets]
    pop = Population(model, tok, specs, target_modules=tuple(targets or ("q_proj", "v_proj")),
                     device=job.device, betas=(0.9, job.adam_beta2),
                     modules_to_save=job.modules_to_save)
    for i, plan in enumerate(job.learners):
        if plan.state is not None:
            pop.set_state(i, dataclasses.replace(plan.state, spec=specs[i]))
    return pop


def resolve_device(device: str) -> str:
    """`auto` -> cuda when this process sees a GPU, else cpu; anything else unchanged. Called
    where the job runs (a CPU driver in front of GPU workers must not decide for them)."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def train_group(job: GroupJob, progress: Progress | None = None) -> GroupResult:
    """Train, probe and assess one group of learners for one generation (see the module doc)."""
    from evolve import assess

    t0 = time.perf_counter()
    job = dataclasses.replace(job, device=resolve_device(job.device))
    pop = _population(job)
    P, ids = len(job.learners), [p.learner_id for p in job.learners]
    probe_set = list(job.items) + list(job.holdout)
    c0, p0, s0 = probe_items(pop, probe_set, job.max_new_tokens)
    item_ids = [it.id for it in job.items]
    streams, windows = [], []
    for i, plan in enumerate(job.learners):
        base_probe = {iid: (bool(c0[i, j]), float(p0[i, j])) for j, iid in enumerate(item_ids)}
        s, w = build_stream(plan, job.items, job.rehearsal_pool, job.batch_size,
                            job.checkpoint_every, base_probe, job.epochs, job.probe_passes)
        streams.append(s)
        windows.append(w)
    K = max(len(s) for s in streams)
    if progress is not None:   # lockstep: a window takes as many steps as its longest stream
        progress("total", sum(max(len(s[k]) if k < len(s) else 0 for s in streams)
                              for k in range(K)))
    correct, prob, self_prob, losses = [c0], [p0], [s0], np.full((K, P), np.nan)
    failures: dict[str, str] = {}
    deltas: list[list[dict[str, torch.Tensor]]] = [[] for _ in range(P)]
    steps_done = [0] * P
    t_probe = 0.0
    for k in range(K):
        window = [s[k] if k < len(s) else [] for s in streams]
        losses[k], failed_at = train_steps(pop, window, (lambda: progress("step", 1))
                                           if progress is not None else None)
        for p in range(P):
            at = failed_at[p]
            if at is not None and ids[p] not in failures:
                failures[ids[p]] = (f"loss became non-finite at optimiser step "
                                    f"{steps_done[p] + at + 1} of generation {job.generation}")
            steps_done[p] += len(window[p])
        tp = time.perf_counter()
        c, pr, sp = probe_items(pop, probe_set, job.max_new_tokens)
        t_probe += time.perf_counter() - tp
        correct.append(c)
        prob.append(pr)
        self_prob.append(sp)
        if job.spectral:
            for p in range(P):
                deltas[p].append({n: d.detach().clone() for n, d in pop.lora_delta(p).items()})
    for p in range(P):  # the population's own flag catches NaN gradients with a finite loss too
        if bool(np.asarray(pop.failed)[p]) and ids[p] not in failures:
            failures[ids[p]] = f"non-finite loss or gradients in generation {job.generation}"
    final_states = [pop.get_state(p) for p in range(P)]
    t_train = time.perf_counter() - t0
    t1 = time.perf_counter()
    spectral = [_spectral(pop, p, deltas[p]) if job.spectral and ids[p] not in failures else None
                for p in range(P)]
    t_spectral = time.perf_counter() - t1
    t2 = time.perf_counter()
    assessed, assess_curves = assess.assess_population(
        pop, job.assess_items, job.assess_steps, job.batch_size, job.assess_checkpoints,
        derive_seed(job.seed, "assess"), max_new_tokens=job.max_new_tokens)
    steps = checkpoint_steps(len(job.items), job.checkpoint_every, K, job.probe_passes, job.epochs)
    return GroupResult(
        group=job.group, learner_ids=ids, steps=steps, item_ids=item_ids + [h.id for h in job.holdout],
        n_train=len(job.items), correct=np.stack(correct), prob=np.stack(prob), windows=windows,
        losses=losses, final_states=final_states, failures=failures, spectral=spectral,
        assess=assessed, assess_curves=assess_curves,
        timings={"train_s": t_train - t_probe, "probe_s": t_probe, "spectral_s": t_spectral,
                 "assess_s": time.perf_counter() - t2}, device=job.device,
        self_prob=np.stack(self_prob))


def _spectral(pop: Population, p: int, deltas: list[dict[str, torch.Tensor]]) -> dict[str, Any] | None:
    """weightwatcher on learner p's merged weights (base + delta) at the last checkpoint."""
    from fitness.spectral import spectral

    return spectral(pop.merged_weights(p), deltas or None)


def child_state(genome: Genome, parents: Sequence[str], merge: MergePlan | None,
                noise: tuple[float, int] | None, parent_states: Mapping[str, LearnerState],
                refactorise: bool = False) -> LearnerState | None:
    """A Lamarckian child's starting `LearnerState` (None when it has no parent state).

    No merge: the first parent's adapter AND AdamW moments and step, with the child's spec (its
    mutated hyperparameters). A rank change pads or truncates the inherited factors and their
    moments (`learners.rank_change.change_rank`: growing keeps the update exactly, shrinking keeps
    its largest components; the optimiser state of every kept component stays; `refactorise` =
    the earlier rule: the same update re-factorised by SVD, fresh moments). A merge (`MergePlan`)
    gives the parents' merged update at the child's rank and alpha with fresh moments. Modules
    outside the child's target set are dropped; `noise` = (relative std, seed) perturbs the adapter.
    Trained whole modules (`LearnerState.parts`) come from the first parent with their moments
    when the adapter's moments carry over; a merge averages the parents' copies with the merge
    weights, normalised (a model soup), with fresh moments; noise leaves them as they are.
    """
    import torch

    from evolve.merge import LoraFactors, add_noise, merge_adapters, resize
    from learners.lora import module_matches
    from learners.population import LearnerState
    from learners.rank_change import change_rank

    first = parent_states.get(parents[0]) if parents else None
    if first is None:
        return None
    spec = genome.to_spec()

    def factors(st: LearnerState) -> LoraFactors:
        return LoraFactors(dict(st.lora), st.spec.alpha / st.spec.rank)

    if merge is not None:
        merged = merge_adapters([factors(parent_states[p]) for p in merge.parents], merge.weights,
                                merge.method, rank=spec.rank, alpha=spec.alpha,
                                density=merge.density, seed=genome.seed)
        state = LearnerState(spec=spec, step=0, lora=merged.layers)
    elif first.spec.rank != spec.rank and refactorise:   # the earlier rule: SVD, fresh moments
        resized = resize(factors(first), spec.rank, alpha=spec.alpha, seed=genome.seed)
        state = LearnerState(spec=spec, step=0, lora=resized.layers)
    elif first.spec.rank != spec.rank:   # pad / truncate: the update and the moments carry over
        lora, (m, v) = change_rank(first.lora, spec.rank, first.spec.alpha / first.spec.rank,
                                   spec.alpha / spec.rank, genome.seed,
                                   (first.exp_avg, first.exp_avg_sq))
        state = LearnerState(spec=spec, step=first.step if m and v else 0, lora=lora,
                             exp_avg=m, exp_avg_sq=v)
    else:
        state = LearnerState(spec=spec, step=first.step, lora=dict(first.lora),
                             exp_avg=first.exp_avg, exp_avg_sq=first.exp_avg_sq)
    keep = [n for n in state.lora if module_matches(n, genome.target_modules)]  # = spec's
    state.lora = {n: state.lora[n] for n in keep}
    for moments in ("exp_avg", "exp_avg_sq"):
        if getattr(state, moments):
            setattr(state, moments, {n: getattr(state, moments)[n] for n in keep
                                     if n in getattr(state, moments)})
    if noise is not None:
        state.lora = add_noise(factors(state), noise[0], noise[1]).layers
    if merge is not None and first.parts:
        total = sum(merge.weights)
        state.parts = {key: torch.stack([w * (parent_states[p].parts or first.parts)[key]
                                         for p, w in zip(merge.parents, merge.weights, strict=True)]
                                        ).sum(0) / total
                       for key in first.parts}
    elif first.parts:
        state.parts = dict(first.parts)
        if state.step:   # the adapter's moments carried over: the parts' too
            state.parts_exp_avg, state.parts_exp_avg_sq = first.parts_exp_avg, first.parts_exp_avg_sq
    return state


def export_adapter(base: str, state: LearnerState, out_dir: str | Path) -> Path:
    """Write `state` as a standard PEFT adapter directory (what `PeftModel.from_pretrained` loads)."""
    from learners.base import load_base
    from learners.peft_io import export_peft
    from learners.population import Population

    model, tok = load_base(base)
    pop = Population(model, tok, [state.spec],
                     target_modules=tuple(state.spec.target_modules or ("q_proj", "v_proj")),
                     modules_to_save=[key.rpartition(".")[0] for key in state.parts or ()])
    pop.set_state(0, state)
    return export_peft(pop, 0, out_dir, base)
