"""Stage optimizers: AdamW (the paper's) or Muon on weight matrices with AdamW on the rest."""

from __future__ import annotations

import copy

import pytest
import torch

from vpgtrans.errors import VPGTransError
from vpgtrans.training.optim import MuonWithAdamW, make_optimizer
from vpgtrans.training.stages import FINETUNE, WARMUP, TrainingConfig, stage_config


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(6, 4)
        self.norm = torch.nn.LayerNorm(4)
        self.queries = torch.nn.Parameter(torch.randn(1, 3, 6))


def _grads(model: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=generator)


def test_muon_takes_the_matrices_and_adamw_the_rest():
    model = Tiny()
    optimizer = make_optimizer("muon", model, lr=1e-2, weight_decay=0.05)
    assert isinstance(optimizer, MuonWithAdamW)
    in_muon = {id(p) for g in optimizer.muon.param_groups for p in g["params"]}
    in_adamw = {id(p) for g in optimizer.adamw.param_groups for p in g["params"]}
    assert in_muon == {id(model.proj.weight)}
    assert in_adamw == {id(p) for p in (model.proj.bias, model.norm.weight, model.norm.bias, model.queries)}
    assert [g["weight_decay"] for g in optimizer.muon.param_groups] == [0.05]  # no decay stays off the rest
    before = [p.detach().clone() for p in model.parameters()]
    _grads(model)
    optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_muon_moves_every_direction_of_a_matrix_alike():
    """Why it is there: a gradient whose singular values span 100x gives a Muon step whose
    singular values are about equal, where AdamW's step stays uneven."""

    def step_singular_values(name: str) -> torch.Tensor:
        torch.manual_seed(0)
        layer = torch.nn.Linear(16, 32, bias=False)
        u, _, v = torch.linalg.svd(torch.randn(32, 16), full_matrices=False)
        before = layer.weight.detach().clone()
        layer.weight.grad = u @ torch.diag(torch.logspace(0, -2, 16)) @ v
        make_optimizer(name, layer, lr=1e-2, weight_decay=0.0).step()
        return torch.linalg.svdvals(layer.weight.detach() - before)

    muon, adamw = step_singular_values("muon"), step_singular_values("adamw")
    assert muon.max() / muon.min() < 2.0
    assert adamw.max() / adamw.min() > 5.0


def test_one_schedule_drives_both_parts():
    model = Tiny()
    optimizer = make_optimizer("muon", model, lr=1e-2, weight_decay=0.0)
    torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.0)  # LR 0 from the first step
    before = [p.detach().clone() for p in model.parameters()]
    _grads(model)
    optimizer.step()
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert {g["lr"] for o in (optimizer.muon, optimizer.adamw) for g in o.param_groups} == {0.0}


def test_muon_state_round_trips():
    """A resumed stage continues with the same momentum, and its schedule still reaches both parts."""
    model, other = Tiny(), Tiny()
    first, second = (make_optimizer("muon", m, lr=1e-2, weight_decay=0.05) for m in (model, other))
    _grads(model, 1)
    first.step()
    other.load_state_dict(model.state_dict())
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    for m in (model, other):
        _grads(m, 2)
    first.step()
    second.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), other.parameters()))
    for group in second.param_groups:
        group["lr"] = 0.0
    assert {g["lr"] for o in (second.muon, second.adamw) for g in o.param_groups} == {0.0}


def test_bad_optimizer_choices_are_named():
    with pytest.raises(VPGTransError, match="'sgd' is not one of adamw, muon"):
        make_optimizer("sgd", Tiny(), lr=1e-3, weight_decay=0.0)
    with pytest.raises(VPGTransError, match="needs a trainable weight matrix"):
        make_optimizer("muon", torch.nn.LayerNorm(4), lr=1e-3, weight_decay=0.0)
    with pytest.raises(VPGTransError, match="stage2_optimizer 'lion'"):
        TrainingConfig(stage2_optimizer="lion")


def test_each_stage_gets_its_optimizer():
    training = TrainingConfig(batch_size=16, stage1_optimizer="muon")
    assert stage_config(WARMUP, training, 48).optimizer == "muon"
    assert stage_config(FINETUNE, training, 48).optimizer == "adamw"
    assert TrainingConfig().stage1_optimizer == TrainingConfig().stage2_optimizer == "adamw"  # the paper's
