"""The optimizers a stage can train with: AdamW (BLIP-2's and the paper's) or Muon.

Muon (torch.optim.Muon) orthogonalises the momentum of each weight matrix before the step, so
every direction of a matrix moves at the same rate however unevenly the gradient spreads over
them. It is defined for matrices only: a stage trained with Muon updates its 2-d weights with
it and everything else (biases, norms, query tokens) with AdamW, both under one schedule.
Its learning rate is scaled to match AdamW's update size (`adjust_lr_fn="match_rms_adamw"`),
so an LR means about the same to both.
"""

from __future__ import annotations

import torch

from ..errors import VPGTransError
from .config import OPTIMIZERS

BETAS = (0.9, 0.999)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases, norms and other 1-d parameters (BLIP-2's rule)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        plain = param.ndim < 2 or "bias" in name or "norm" in name
        (no_decay if plain else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon on the groups' 2-d parameters, AdamW on the rest, seen as one optimizer.

    `param_groups` is the two inner optimizers' groups, so an LR scheduler drives both;
    `state_dict` holds both states, so a checkpointed stage resumes exactly.
    """

    def __init__(self, groups: list[dict], lr: float):
        def split(matrices: bool) -> list[dict]:
            parts = [dict(g, params=[p for p in g["params"] if (p.ndim == 2) == matrices]) for g in groups]
            return [g for g in parts if g["params"]]

        super().__init__([p for g in groups for p in g["params"]], {"lr": lr})
        rest = split(False)
        self.muon = torch.optim.Muon(split(True), lr=lr, adjust_lr_fn="match_rms_adamw")
        self.adamw = torch.optim.AdamW(rest, lr=lr, betas=BETAS) if rest else None
        self.inner = [o for o in (self.muon, self.adamw) if o is not None]
        self.param_groups = [g for o in self.inner for g in o.param_groups]

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.inner:
            optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.inner:
            optimizer.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        return {"inner": [o.state_dict() for o in self.inner]}

    def load_state_dict(self, state_dict: dict) -> None:
        for optimizer, state in zip(self.inner, state_dict["inner"], strict=True):
            optimizer.load_state_dict(state)
        self.param_groups = [g for o in self.inner for g in o.param_groups]  # loading made new group dicts


def make_optimizer(name: str, model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The stage's optimizer over the model's trainable parameters."""
    groups = parameter_groups(model, weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=BETAS)
    if name == "muon":
        if not any(p.ndim == 2 for g in groups for p in g["params"]):
            raise VPGTransError("optimizer 'muon' needs a trainable weight matrix; this stage trains none")
        return MuonWithAdamW(groups, lr)
    raise VPGTransError(f"optimizer {name!r} is not one of {', '.join(OPTIMIZERS)}")
