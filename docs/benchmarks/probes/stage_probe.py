"""Exploratory probe (not part of the library): train one compare arm's starting point through
a sequence of stages and print caption accuracy and CIDEr-D on the held-out world after every epoch.

    python docs/benchmarks/probes/stage_probe.py DST ARM BATCH STAGE...

ARM is a `vpgtrans compare` arm (its initialisation only: fused/random projector, inherited or
fresh VPG); each STAGE is KIND:LR:EPOCHS with KIND `w` (projector only, constant LR), `d`
(projector only, cosine from LR to 0), `f` (stage-2 modules, cosine to half LR) or `F`
(stage-2 modules, constant LR). Environment: SRC (source, default toy-blip2-opt-s), CONV
(converter, default ridge), CONV_FILE (a saved converter to use instead, e.g. from
reading_converter.py), ANCHOR (`position`, `position-stop` or `mean`: replace the arm's
projector by a ridge fit of the query outputs to the destination's embeddings of the training
captions' tokens, see `anchor_projector`), WHITEN (EPS: train the projector on whitened query
outputs, same function at the start, see `whiten_projector`), PROJ_MULT (fine-tuning stages
train the projector at this multiple of the stage's LR, the rest at the LR), OPT (`muon`:
projector-only stages train with Muon, vpgtrans/optim.py; `muon-all`: every stage does), RAMP
(fine-tuning stages ramp their LR up linearly over this many optimizer steps), NO_DROPOUT
(fine-tuning stages without the Q-Former's dropout), DATA (training captions, default
runs/world-n2000-seed21/captions.jsonl). Run from the repository root after
`vpgtrans world` has written runs/world-n2000-seed21 and runs/world-n100-seed12345.
"""

import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

import vpgtrans.optim
import vpgtrans.train
from PIL import Image

from vpgtrans.compare import ARMS, CompareConfig, arm_model, evaluate_point
from vpgtrans.converter import ConverterFitConfig, WordConverter, fit_converter, fit_ridge
from vpgtrans.data import CaptionDataset, load_caption_data
from vpgtrans.prompt_scale import vpg_outputs
from vpgtrans.train import make_accelerator, train_stage
from vpgtrans.transfer import TrainingConfig, collator_for, finetune_stage, steps_per_epoch, warmup_stage



@torch.no_grad()
def anchor_projector(model, processor, records, mode: str) -> None:
    """Language-anchored projector: query j's soft token fitted (ridge) to the destination's
    embedding of caption token j (`position`; `position-stop`: the last query to " ."), or the
    mean soft token to the mean caption-token embedding (`mean`)."""
    q, table = model.config.num_query_tokens, model.get_input_embeddings().weight
    stop = processor.tokenizer(" .", add_special_tokens=False)["input_ids"][-1:]
    xs, ys = [], []
    for i in range(0, len(records), 200):
        chunk = records[i:i + 200]
        pixels = processor.image_processor([Image.open(r.image).convert("RGB") for r in chunk], return_tensors="pt")
        outputs = vpg_outputs(model, pixels["pixel_values"])
        for out, ids in zip(outputs, processor.tokenizer([r.caption for r in chunk], add_special_tokens=False)["input_ids"]):
            if mode == "mean":
                xs.append(out.mean(0, keepdim=True))
                ys.append(table[torch.tensor(ids)].mean(0, keepdim=True))
                continue
            padded = ids + [ids[-1]] * q
            xs.append(out)
            ys.append(table[torch.tensor(padded[:q - 1] + stop if mode == "position-stop" else padded[:q])])
    x, y = torch.cat(xs), torch.cat(ys)
    fit = fit_ridge(x, y, torch.ones(len(x)))
    print("anchor fit cosine", round(float(torch.nn.functional.cosine_similarity(fit(x), y).mean()), 3), flush=True)
    model.language_projection.weight.copy_(fit.weight)
    model.language_projection.bias.copy_(fit.bias)


class Whitening(torch.nn.Module):
    def __init__(self, mean, transform):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("transform", transform)

    def forward(self, x):
        return (x - self.mean) @ self.transform


@torch.no_grad()
def whiten_projector(model, processor, records, eps: float) -> None:
    """Reparametrise the projector on whitened query outputs (same function at the start), so
    that Adam sees an input of identity covariance: the query outputs' covariance spans four
    orders of magnitude. EPS regularises the smallest directions (times the mean variance)."""
    chunk = records[:512]
    pixels = processor.image_processor([Image.open(r.image).convert("RGB") for r in chunk], return_tensors="pt")
    x = vpg_outputs(model, pixels["pixel_values"]).flatten(0, 1)
    mean, cov = x.mean(0), torch.cov(x.T)
    vals, vecs = torch.linalg.eigh(cov + eps * cov.diagonal().mean() * torch.eye(len(cov)))
    transform, inverse = vecs @ torch.diag(vals ** -0.5) @ vecs.T, vecs @ torch.diag(vals ** 0.5) @ vecs.T
    old = model.language_projection
    new = torch.nn.Linear(old.in_features, old.out_features)
    new.weight.copy_(old.weight @ inverse)
    new.bias.copy_(old.bias + old.weight @ mean)
    model.language_projection = torch.nn.Sequential(Whitening(mean, transform), new)


STAGE_LR = {}
_groups = vpgtrans.optim.parameter_groups


def projector_lr_groups(model, weight_decay):
    """PROJ_MULT: the projector's groups at PROJ_MULT x the stage LR (fine-tuning stages)."""
    mult = STAGE_LR["mult"]
    groups = []
    for group in _groups(model, weight_decay):
        ids = {id(p) for p in model.language_projection.parameters()}
        proj = [p for p in group["params"] if id(p) in ids]
        rest = [p for p in group["params"] if id(p) not in ids]
        groups += [dict(group, params=rest), dict(group, params=proj, lr=STAGE_LR["lr"] * mult)]
    return [g for g in groups if g["params"]]


vpgtrans.optim.parameter_groups = projector_lr_groups
_factor = vpgtrans.train.lr_factor


def ramped_lr_factor(config):
    """RAMP: fine-tuning stages start with a linear LR ramp over RAMP optimizer steps."""
    ramp, factor = int(os.environ.get("RAMP", "0")), _factor(config)
    if config.name != "finetune" or not ramp:
        return factor
    return lambda step: factor(step) * min(1.0, (step + 1) / ramp)


vpgtrans.train.lr_factor = ramped_lr_factor

dst, arm, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = os.environ.get("DATA", "runs/world-n2000-seed21/captions.jsonl")
config = CompareConfig(src=os.environ.get("SRC", "toy-blip2-opt-s"), dst=dst, data=data,
                       eval="runs/world-n100-seed12345", out="runs/probe",
                       training=TrainingConfig(batch_size=batch, lr=1e-3, checkpoint_every=10**9))
converter = None
if ARMS[arm].projector == "fused":
    fit = ConverterFitConfig(method=os.environ.get("CONV", "ridge"))
    converter = (WordConverter.load(os.environ["CONV_FILE"]) if os.environ.get("CONV_FILE")
                 else fit_converter(config.src, dst, load_caption_data(data).captions(), fit))
model, processor = arm_model(config, ARMS[arm], 0, converter)
if os.environ.get("WHITEN"):
    whiten_projector(model, processor, load_caption_data(data).records, float(os.environ["WHITEN"]))
if os.environ.get("ANCHOR"):
    anchor_projector(model, processor, load_caption_data(data).records, os.environ["ANCHOR"])
dataset = CaptionDataset(load_caption_data(data).records)
collate = collator_for(processor, model, config.training)
per_epoch = steps_per_epoch(len(dataset), config.training)


def score() -> None:
    point = evaluate_point(model, processor, config.eval, 100)
    scores.append(round(point["caption"], 3))
    ciders.append(round(point["cider"]))


scores, ciders = [], []
score()
started = time.time()
for k, spec in enumerate(sys.argv[4:]):
    kind, lr, epochs = spec.split(":")
    training = replace(config.training, lr=float(lr), warmup_lr_mult=1.0, seed=k)
    stage = warmup_stage(training, len(dataset)) if kind in "wd" else finetune_stage(training, len(dataset))
    STAGE_LR.update(lr=stage.lr, mult=1.0 if kind in "wd" else float(os.environ.get("PROJ_MULT", "1")))
    stage = replace(stage, steps=int(epochs) * per_epoch, schedule="constant" if kind in "wF" else "cosine",
                    min_lr_ratio=0.0 if kind == "d" else stage.min_lr_ratio)
    if os.environ.get("NO_DROPOUT"):
        stage = replace(stage, dropout_in=())
    use_muon = os.environ.get("OPT") == "muon-all" or (os.environ.get("OPT") == "muon" and kind in "wd")
    stage = replace(stage, optimizer="muon" if use_muon else "adamw")
    workdir = Path(f"runs/probe/stage-{k}")
    shutil.rmtree(workdir, ignore_errors=True)
    train_stage(make_accelerator(), model, dataset, collate, stage, workdir, on_step=lambda r: r.steps % per_epoch or score())
print("RESULT", dst, arm, batch, sys.argv[4:], scores, "CIDEr-D", ciders, f"{time.time() - started:.0f} s", flush=True)
