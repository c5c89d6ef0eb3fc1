"""Adapter-merge crossover against PEFT's own `LoraModel.add_weighted_adapter`.

Tolerance: merged deltas agree with PEFT's to 1e-5 of the layer's largest entry (float32; measured
about 1e-6). Where the semantics differ: our `ties` is PEFT's `ties_svd` (TIES on the full deltas,
then SVD); our `linear` is the weighted sum of deltas, which PEFT's `cat` gives exactly — PEFT's
`linear` instead combines A and B separately (needs equal ranks) and so adds cross terms B_i A_j.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from common.errors import EvolveError
from evolve.merge import LoraFactors, add_noise, max_delta_error, merge_adapters, resize

TOL = 1e-5
LAYERS = ("q", "v")


class Tiny(nn.Module):
    """Two linear layers of different shapes, as attention projections [out, in]."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(12, 10, bias=False)
        self.v = nn.Linear(12, 14, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(x) + self.v(x).sum()


@pytest.fixture(scope="module")
def peft_model() -> nn.Module:
    """A PEFT LoRA model with three adapters of different ranks and scales, random A and B."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    cfg = {"target_modules": list(LAYERS), "init_lora_weights": False}
    m = get_peft_model(Tiny(), LoraConfig(r=4, lora_alpha=8, **cfg), adapter_name="p1")
    m.add_adapter("p2", LoraConfig(r=4, lora_alpha=16, **cfg))
    m.add_adapter("p3", LoraConfig(r=2, lora_alpha=4, **cfg))
    return m.base_model


def factors(lm: nn.Module, name: str) -> LoraFactors:
    layers = {ln: (getattr(lm.model, ln).lora_A[name].weight.detach().clone(),
                   getattr(lm.model, ln).lora_B[name].weight.detach().clone()) for ln in LAYERS}
    return LoraFactors(layers, lm.model.q.scaling[name])


def peft_delta(lm: nn.Module, name: str) -> dict[str, torch.Tensor]:
    return {ln: getattr(lm.model, ln).get_delta_weight(name).detach() for ln in LAYERS}


@pytest.mark.parametrize("ours, theirs", [("svd", "svd"), ("ties", "ties_svd"), ("linear", "cat")])
@pytest.mark.parametrize("adapters, weights", [(("p1", "p2"), (0.6, 0.4)), (("p1", "p3"), (0.5, 0.5)),
                                               (("p1", "p2", "p3"), (0.5, 0.3, 0.2))])
def test_merged_delta_matches_peft(peft_model: nn.Module, ours: str, theirs: str,
                                   adapters: tuple[str, ...], weights: tuple[float, ...]) -> None:
    parents = [factors(peft_model, a) for a in adapters]
    rank = sum(p.rank for p in parents) if theirs == "cat" else 3
    name = f"{theirs}_{'_'.join(adapters)}"
    peft_model.add_weighted_adapter(list(adapters), list(weights), name, combination_type=theirs,
                                    svd_rank=None if theirs == "cat" else rank,
                                    density=0.5 if theirs == "ties_svd" else None)
    child = merge_adapters(parents, weights, ours, rank=rank, alpha=2.0 * rank, density=0.5)
    assert child.rank == rank and child.scale == 2.0
    assert all(a.shape == (rank, 12) and b.shape[1] == rank for a, b in child.layers.values())
    assert max_delta_error(child.delta(), peft_delta(peft_model, name)) < TOL


def test_svd_is_the_exact_weighted_sum_when_it_fits(peft_model: nn.Module) -> None:
    p1, p3 = factors(peft_model, "p1"), factors(peft_model, "p3")
    want = {n: 0.7 * p1.delta()[n] - 0.3 * p3.delta()[n] for n in LAYERS}
    for method in ("svd", "linear"):
        child = merge_adapters([p1, p3], [0.7, -0.3], method, rank=6)
        assert max_delta_error(child.delta(), want) < TOL


def test_linear_beyond_the_rank_is_the_best_rank_r_approximation(peft_model: nn.Module) -> None:
    ps = [factors(peft_model, a) for a in ("p1", "p2")]
    lin = merge_adapters(ps, [0.5, 0.5], "linear", rank=3)
    svd = merge_adapters(ps, [0.5, 0.5], "svd", rank=3)
    assert max_delta_error(lin.delta(), svd.delta()) < TOL


def test_peft_linear_is_not_the_weighted_sum(peft_model: nn.Module) -> None:
    """Why our `linear` does not follow PEFT's: its A and B sums add cross terms."""
    peft_model.add_weighted_adapter(["p1", "p2"], [0.5, 0.5], "peft_linear", combination_type="linear")
    ours = merge_adapters([factors(peft_model, a) for a in ("p1", "p2")], [0.5, 0.5], "linear", rank=8)
    assert max_delta_error(ours.delta(), peft_delta(peft_model, "peft_linear")) > 0.1


def test_resize_grows_exactly_and_new_slots_can_learn(peft_model: nn.Module) -> None:
    p3 = factors(peft_model, "p3")
    big = resize(p3, rank=8, alpha=16.0)
    assert max_delta_error(big.delta(), p3.delta()) < TOL
    for a, b in big.layers.values():      # like a fresh LoRA slot: B column 0, A row not 0
        assert torch.all(b[:, 2:] == 0) and torch.all(a[2:].norm(dim=1) > 0)
    small = resize(factors(peft_model, "p1"), rank=2)
    assert small.rank == 2


def test_rank_deficient_svd_slots_stay_trainable(peft_model: nn.Module) -> None:
    p3 = factors(peft_model, "p3")                                  # rank 2 into rank 4
    child = merge_adapters([p3, p3], [0.5, 0.5], "svd", rank=4)
    assert max_delta_error(child.delta(), p3.delta()) < TOL
    for a, _ in child.layers.values():
        assert torch.all(a.norm(dim=1) > 0)


def test_noise_is_seeded_and_relative(peft_model: nn.Module) -> None:
    p1 = factors(peft_model, "p1")
    n1, n2 = add_noise(p1, 0.01, seed=3), add_noise(p1, 0.01, seed=3)
    for name in LAYERS:
        for x, y, orig in zip(n1.layers[name], n2.layers[name], p1.layers[name], strict=True):
            assert torch.equal(x, y)
            rel = float((x - orig).pow(2).mean().sqrt() / orig.pow(2).mean().sqrt())
            assert 0.003 < rel < 0.03
    assert not torch.equal(add_noise(p1, 0.01, seed=4).layers["q"][0], n1.layers["q"][0])


def test_bad_merge_requests_are_one_line_errors(peft_model: nn.Module) -> None:
    p1 = factors(peft_model, "p1")
    with pytest.raises(EvolveError, match="unknown merge method 'dare'; valid: linear, svd, ties"):
        merge_adapters([p1, p1], method="dare")
    with pytest.raises(EvolveError, match="1 merge weights for 2 parents"):
        merge_adapters([p1, p1], [1.0])
    with pytest.raises(EvolveError, match="no parent adapter has layer 'k'"):
        merge_adapters([p1], layers=["k"])
