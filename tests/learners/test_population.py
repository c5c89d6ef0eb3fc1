"""The batched population against PEFT, the reference: outputs, gradients, training, isolation, state."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from learners.population import LearnerSpec, Population

PAIRS = [("12+30=", "42"), ("7+8=", "15"), ("1+1=", "2"), ("33+44=", "77"), ("9+90=", "99"),
         ("5+5=", "10"), ("61+2=", "63"), ("0+0=", "0")]


@pytest.fixture(scope="module")
def base(tiny_base):
    from learners.base import load_base

    model, tok = load_base(tiny_base)
    return model.float().eval(), tok


def mixed_specs() -> list[LearnerSpec]:
    """Mixed lr, weight decay, rank, alpha, targets and clipping (one learner clipped hard)."""
    return [
        LearnerSpec(lr=2e-2, weight_decay=0.0, rank=2, alpha=4.0, dropout=0.0, seed=1),
        LearnerSpec(lr=5e-3, weight_decay=0.5, rank=4, alpha=8.0, dropout=0.0, seed=2,
                    target_modules=("q_proj",), max_grad_norm=0.05),
        LearnerSpec(lr=1e-2, weight_decay=0.1, rank=3, alpha=3.0, dropout=0.0, seed=3,
                    target_modules=("v_proj", "o_proj"), max_grad_norm=None),
    ]


def peft_twin(model, pop: Population, i: int):
    """A PEFT LoraModel on a copy of the base holding learner i's current adapter."""
    from peft import LoraConfig, get_peft_model

    spec = pop.specs[i]
    cfg = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=0.0,
                     target_modules=list(spec.target_modules or pop.default_targets))
    pm = get_peft_model(copy.deepcopy(model), cfg)
    state = pop.get_state(i)
    seen = set()
    for name, mod in pm.base_model.model.named_modules():
        if hasattr(mod, "lora_A") and "default" in mod.lora_A:
            a, b = state.lora[name]
            mod.lora_A["default"].weight.data.copy_(a)
            mod.lora_B["default"].weight.data.copy_(b)
            seen.add(name)
    assert seen == set(state.lora)  # the population adapts exactly PEFT's modules
    return pm


def randomise_B(pop: Population, seed: int) -> None:
    """Give every learner a non-zero B (a fresh LoRA has B = 0 and so zero gradients for A)."""
    g = torch.Generator().manual_seed(seed)
    for i in range(pop.P):
        st = pop.get_state(i)
        st.lora = {n: (a, torch.randn(b.shape, generator=g) * 0.3) for n, (a, b) in st.lora.items()}
        pop.set_state(i, st)


def encode(tok, pairs):
    from learners.encoding import encode_pairs

    return encode_pairs(tok, pairs)


def assert_forward_and_gradients_equal_peft(pop: Population, twin, batch) -> None:
    """Every learner's loss, logits and adapter gradients on `batch` equal those of `twin(i)`, a
    PEFT model holding learner i's adapter; masked ranks and unadapted modules get no gradient."""
    tok = pop.tokenizer
    loss = pop.losses([batch] * pop.P)
    loss.sum().backward()
    enc = encode(tok, batch)
    with torch.no_grad():
        stacked = pop.model(input_ids=enc.input_ids.repeat(pop.P, 1),
                            attention_mask=enc.attention_mask.repeat(pop.P, 1)).logits
    n = len(batch)
    for i in range(pop.P):
        pm = twin(i)
        out = pm(input_ids=enc.input_ids, attention_mask=enc.attention_mask, labels=enc.labels)
        out.loss.backward()
        assert_close(loss[i], out.loss, atol=1e-6, rtol=1e-6)
        assert_close(stacked[i * n:(i + 1) * n], out.logits, atol=1e-5, rtol=1e-5)
        r = pop.specs[i].rank
        for name, mod in pm.base_model.model.named_modules():
            if hasattr(mod, "lora_A") and "default" in mod.lora_A:
                layer = pop.layers[name]
                assert_close(layer.lora_A.grad[i, :r], mod.lora_A["default"].weight.grad,
                             atol=1e-6, rtol=1e-5)
                assert_close(layer.lora_B.grad[i, :, :r], mod.lora_B["default"].weight.grad,
                             atol=1e-6, rtol=1e-5)
                # masked ranks get no gradient: the slice stays an exact rank-r adapter
                assert not layer.lora_A.grad[i, r:].any()
        for name in set(pop.names) - set(pop.lora_delta(i)):  # modules it does not adapt
            assert pop.layers[name].lora_B.grad[i].abs().max() == 0


def test_forward_and_gradients_equal_peft(base) -> None:
    model, tok = base
    pop = Population(model, tok, mixed_specs())
    randomise_B(pop, 0)
    assert_forward_and_gradients_equal_peft(pop, lambda i: peft_twin(model, pop, i), PAIRS[:4])


def train_alone(model, pop0: Population, i: int, stream: list[list[tuple[str, str]]], tok):
    """Learner i of `pop0` (untrained) trained alone with PEFT + torch AdamW + clip_grad_norm_."""
    spec = pop0.specs[i]
    pm = peft_twin(model, pop0, i)
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    for batch in stream:
        enc = encode(tok, batch)
        loss = pm(input_ids=enc.input_ids, attention_mask=enc.attention_mask, labels=enc.labels).loss
        opt.zero_grad()
        loss.backward()
        if spec.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, spec.max_grad_norm)
        opt.step()
    return {name: (mod.lora_A["default"].weight.detach(), mod.lora_B["default"].weight.detach())
            for name, mod in pm.base_model.model.named_modules()
            if hasattr(mod, "lora_A") and "default" in mod.lora_A}


def streams_for(P: int, steps: int) -> list[list[list[tuple[str, str]]]]:
    """A different stream per learner, batch sizes 1..3 so the stacked batch needs padding rows."""
    return [[[PAIRS[(p * 3 + t + j) % len(PAIRS)] for j in range(1 + (p + t) % 3)]
             for t in range(steps)] for p in range(P)]


@pytest.mark.parametrize("group_size", [None, 2])  # all learners in one pass; groups of 2
def test_training_equals_each_learner_trained_alone_with_peft(base, group_size) -> None:
    model, tok = base
    pop = Population(model, tok, mixed_specs(), group_size=group_size)
    before = copy.deepcopy(pop)
    streams = streams_for(pop.P, 5)
    for t in range(5):
        losses = pop.train_step([s[t] for s in streams])
        assert np.isfinite(losses).all()
    for i in range(pop.P):
        alone = train_alone(model, before, i, streams[i], tok)
        ours = pop.get_state(i)
        assert set(alone) == set(ours.lora)
        for name, (a, b) in alone.items():
            assert_close(ours.lora[name][0], a, atol=2e-6, rtol=1e-5)
            assert_close(ours.lora[name][1], b, atol=2e-6, rtol=1e-5)
        assert ours.step == 5


def test_training_changes_adapters_not_base(base) -> None:
    model, tok = base
    base_before = {k: v.clone() for k, v in model.state_dict().items()}
    pop = Population(model, tok, mixed_specs())
    start = [pop.get_state(i).lora for i in range(pop.P)]
    streams = streams_for(pop.P, 3)
    for t in range(3):
        pop.train_step([s[t] for s in streams])
    for i in range(pop.P):
        for name, (a, b) in pop.get_state(i).lora.items():
            assert not torch.equal(b, start[i][name][1]), f"learner {i} {name}: B did not move"
            assert not torch.equal(a, start[i][name][0]), f"learner {i} {name}: A did not move"
    frozen = {k.replace(".base.", "."): v for k, v in pop.model.state_dict().items()
              if "lora_" not in k and not k.endswith((".gain", ".drop"))}
    assert set(frozen) == set(base_before)
    for k, v in base_before.items():
        assert torch.equal(frozen[k], v), f"base weight {k} changed"
        assert torch.equal(model.state_dict()[k], v), f"caller's model {k} changed"


def test_nan_learner_is_frozen_and_others_unaffected(base) -> None:
    model, tok = base
    good = mixed_specs()
    poisoned = replace(good[0], lr=1e30, weight_decay=1e10, seed=9)  # weights overflow
    pop3 = Population(model, tok, [good[0], poisoned, good[2]])
    pop2 = Population(model, tok, [good[0], good[2]])
    streams = streams_for(3, 4)
    frozen_at = None
    for t in range(4):
        l3 = pop3.train_step([s[t] for s in streams])
        l2 = pop2.train_step([streams[0][t], streams[2][t]])
        assert_close(l3[[0, 2]], l2, atol=1e-6, rtol=1e-6)
        if pop3.failed[1] and frozen_at is None:
            frozen_at, snapshot = t, pop3.get_state(1)
            assert np.isnan(l3[1])
    assert list(pop3.failed) == [False, True, False] and frozen_at is not None
    after = pop3.get_state(1)
    assert after.failed and after.step == snapshot.step
    for name, (a, b) in after.lora.items():  # frozen: no update after the failing step
        assert torch.equal(a, snapshot.lora[name][0]) and torch.equal(b, snapshot.lora[name][1])
    for i3, i2 in ((0, 0), (2, 1)):
        for name, (a, b) in pop3.get_state(i3).lora.items():
            assert_close(a, pop2.get_state(i2).lora[name][0], atol=1e-6, rtol=1e-5)
            assert_close(b, pop2.get_state(i2).lora[name][1], atol=1e-6, rtol=1e-5)


def test_inf_in_one_adapter_fails_only_that_learner(base) -> None:
    model, tok = base
    pop = Population(model, tok, mixed_specs())
    with torch.no_grad():
        pop.layers[pop.names[0]].lora_A[0, 0, 0] = float("inf")
    losses = pop.train_step([PAIRS[:2]] * pop.P)
    assert np.isnan(losses[0]) and np.isfinite(losses[1:]).all()
    assert list(pop.failed) == [True, False, False]
    assert list(pop.steps) == [0, 1, 1]
    assert np.isnan(pop.train_step([PAIRS[:2]] * pop.P)[0])  # stays frozen


def test_state_round_trip_keeps_adam_state_and_spec(base) -> None:
    model, tok = base
    specs = mixed_specs()
    a = Population(model, tok, specs)
    streams = streams_for(3, 5)
    for t in range(3):
        a.train_step([s[t] for s in streams])
    state = a.get_state(1)
    other = [replace(s, lr=1e-4, rank=4, seed=s.seed + 10) for s in specs]
    b = Population(model, tok, other[:2])
    b.set_state(0, state)
    assert b.specs[0] == specs[1] and b.steps[0] == 3
    copied = b.get_state(0)
    for key in ("lora", "exp_avg", "exp_avg_sq"):
        for name, pair in getattr(state, key).items():
            for x, y in zip(pair, getattr(copied, key)[name], strict=True):
                assert torch.equal(x, y), f"{key} of {name} lost in set_state/get_state"
    for t in range(3, 5):  # both continue identically: moments, step count and lr were all copied
        a.train_step([s[t] for s in streams])
        b.train_step([streams[1][t], streams[0][t]])
    for name, (x, y) in a.get_state(1).lora.items():
        assert_close(b.get_state(0).lora[name][0], x, atol=1e-6, rtol=1e-5)
        assert_close(b.get_state(0).lora[name][1], y, atol=1e-6, rtol=1e-5)
    # fresh moments (a child without optimiser state) would move differently
    c = Population(model, tok, other[:1])
    c.set_state(0, replace(state, exp_avg=None, exp_avg_sq=None))
    c.train_step([streams[1][3]])
    b2 = Population(model, tok, other[:1])
    b2.set_state(0, state)
    b2.train_step([streams[1][3]])
    name = next(iter(state.lora))
    assert not torch.allclose(c.get_state(0).lora[name][1], b2.get_state(0).lora[name][1])


def test_bad_inputs_are_one_line_errors(base) -> None:
    model, tok = base
    pop = Population(model, tok, mixed_specs()[:1])
    with pytest.raises(ValueError, match="r_max"):
        pop.set_state(0, replace(pop.get_state(0), spec=replace(pop.specs[0], rank=9)))
    with pytest.raises(ValueError, match="batches for 1 learners"):
        pop.train_step([PAIRS[:1], PAIRS[:1]])
    with pytest.raises(ValueError, match="target_modules"):
        Population(model, tok, mixed_specs()[:1], target_modules=("no_such_layer",))


def test_dropout_is_per_learner(base) -> None:
    """A learner's dropout masks come from its own generator and cover its own rows: trained in a
    group (other learners, longer batches, either position) it equals itself trained alone."""
    model, tok = base
    s = mixed_specs()[0]
    drop = replace(s, dropout=0.5, seed=9)
    both = Population(model, tok, [s, drop])
    flipped = Population(model, tok, [drop, replace(s, dropout=0.3)])
    alone = Population(model, tok, [drop])
    for t in range(3):
        both.train_step([PAIRS[t:t + 4], PAIRS[t:t + 2]])        # the other learner: 4 longer pairs
        flipped.train_step([PAIRS[t:t + 2], PAIRS[4:8]])
        alone.train_step([PAIRS[t:t + 2]])
    name = both.names[0]
    for grouped in (both.get_state(1), flipped.get_state(0)):
        for k in (0, 1):
            # float-equal, not bit-equal: batched matmuls of other shapes round differently
            assert_close(grouped.lora[name][k], alone.get_state(0).lora[name][k], atol=1e-6, rtol=1e-5)
    undropped = Population(model, tok, [replace(drop, dropout=0.0)])
    for t in range(3):
        undropped.train_step([PAIRS[t:t + 2]])
    assert not torch.allclose(undropped.get_state(0).lora[name][1], alone.get_state(0).lora[name][1])


def test_init_scale_starts_a_random_update_that_grows_as_its_square(base) -> None:
    """init_scale 0 is PEFT's start (B = 0: the model is the base); > 0 draws B too and scales
    A and B, so the same seed at twice the scale starts with exactly four times the update."""
    model, tok = base
    spec = mixed_specs()[0]
    pop = Population(model, tok, [replace(spec, init_scale=s) for s in (0.0, 1.0, 2.0)])
    d0, d1, d2 = (pop.lora_delta(i) for i in range(3))
    assert all(not bool(d.any()) for d in d0.values())
    assert all(bool(d.abs().sum() > 0) for d in d1.values())
    for name in d1:
        assert torch.equal(d2[name], 4 * d1[name])
    base_loss, large_loss = pop.losses([PAIRS[:4]] * 3).detach()[[0, 2]].tolist()
    assert large_loss != base_loss    # the random update changes the model from step 0
    pop.train_step([PAIRS[:4]] * 3)
    pop.reset(2)                      # a fresh start from the seed is the same large update
    assert all(torch.equal(pop.lora_delta(2)[n], d2[n]) for n in d2)
    with pytest.raises(ValueError, match="init_scale>=0"):
        Population(model, tok, [replace(spec, init_scale=-1.0)])
