"""Exploratory probe (not part of the library): train one compare arm's starting point through
a sequence of stages and print caption accuracy on the held-out world after every epoch.

    python docs/benchmarks/probes/stage_probe.py DST ARM BATCH STAGE...

ARM is a `vpgtrans compare` arm (its initialisation only: fused/random projector, inherited or
fresh VPG); each STAGE is KIND:LR:EPOCHS with KIND `w` (projector only, constant LR), `f`
(stage-2 modules, cosine to half LR) or `F` (stage-2 modules, constant LR). Environment: SRC
(source, default toy-blip2-opt-s), CONV (converter, default ridge), ANCHOR (`position`,
`position-stop` or `mean`: replace the arm's projector by a ridge fit of the query outputs to
the destination's embeddings of the training captions' tokens, see `anchor_projector`). Run
from the repository root after `vpgtrans world` has written runs/world-n2000-seed21 and
runs/world-n100-seed12345.
"""

import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from vpgtrans.compare import ARMS, CompareConfig, arm_model, evaluate_point
from vpgtrans.converter import ConverterFitConfig, fit_converter, fit_ridge
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


dst, arm, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = "runs/world-n2000-seed21/captions.jsonl"
config = CompareConfig(src=os.environ.get("SRC", "toy-blip2-opt-s"), dst=dst, data=data,
                       eval="runs/world-n100-seed12345", out="runs/probe",
                       training=TrainingConfig(batch_size=batch, lr=1e-3, checkpoint_every=10**9))
converter = None
if ARMS[arm].projector == "fused":
    fit = ConverterFitConfig(method=os.environ.get("CONV", "ridge"))
    converter = fit_converter(config.src, dst, load_caption_data(data).captions(), fit)
model, processor = arm_model(config, ARMS[arm], 0, converter)
if os.environ.get("ANCHOR"):
    anchor_projector(model, processor, load_caption_data(data).records, os.environ["ANCHOR"])
dataset = CaptionDataset(load_caption_data(data).records)
collate = collator_for(processor, model, config.training)
per_epoch = steps_per_epoch(len(dataset), config.training)
scores = [round(evaluate_point(model, processor, config.eval, 100)["caption"], 3)]
started = time.time()
for k, spec in enumerate(sys.argv[4:]):
    kind, lr, epochs = spec.split(":")
    training = replace(config.training, lr=float(lr), warmup_lr_mult=1.0, seed=k)
    stage = warmup_stage(training, len(dataset)) if kind == "w" else finetune_stage(training, len(dataset))
    stage = replace(stage, steps=int(epochs) * per_epoch, schedule="constant" if kind in "wF" else stage.schedule)
    workdir = Path(f"runs/probe/stage-{k}")
    shutil.rmtree(workdir, ignore_errors=True)
    train_stage(make_accelerator(), model, dataset, collate, stage, workdir, on_step=lambda r: r.steps % per_epoch or
                scores.append(round(evaluate_point(model, processor, config.eval, 100)["caption"], 3)))
print("RESULT", dst, arm, batch, sys.argv[4:], scores, f"{time.time() - started:.0f} s", flush=True)
