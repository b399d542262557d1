"""Exploratory probe (not part of the zoo): continue the source BLIP-2's captioning stage.

    python docs/benchmarks/probes/source_longer.py STEPS LR OUT

Trains checkpoints/toy-blip2-opt-s's Q-Former, queries and projector STEPS more steps (cosine
to 0.1 x LR) on the scenes and batch size its captioning stage used (`source_blip2` in
recipes/toy/zoo.toml), scores caption accuracy on the zoo's held-out scenes before and after,
and saves OUT/model, a source for `SRC=OUT/model stage_probe.py ...`. Run from the repository
root.
"""

import sys
import time
import tomllib
from pathlib import Path

from vpgtrans import world
from vpgtrans.data import CaptionDataset, load_caption_data
from vpgtrans.evaluate import world_caption_accuracy
from vpgtrans.graft import load_blip2
from vpgtrans.train import FINETUNE_TRAINABLE, StageConfig, make_accelerator, train_stage
from vpgtrans.transfer import TrainingConfig, collator_for, save_model

steps, lr, out = int(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])
cfg = tomllib.loads(Path("recipes/toy/zoo.toml").read_text())
spec, wcfg = cfg["source_blip2"], world.WorldConfig(image_size=cfg["image_size"], **cfg["world"])
train, heldout = out / "train", out / "heldout"
world.write_dataset(train, spec["train_images"], cfg["seed"] + 2, wcfg)  # build_zoo.py's source scenes
world.write_dataset(heldout, cfg["evaluation"]["heldout_images"], cfg["evaluation"]["seed"], wcfg)
blip2, processor = load_blip2("checkpoints/toy-blip2-opt-s")
print(f"before: caption accuracy {world_caption_accuracy(blip2, processor, heldout).score:.3f}", flush=True)
stage = StageConfig(name="source", trainable=FINETUNE_TRAINABLE, steps=steps, lr=lr, schedule="cosine",
                    min_lr_ratio=0.1, batch_size=spec["batch_size"], seed=1, checkpoint_every=steps,
                    dropout_in=("qformer",))
started = time.time()
dataset = CaptionDataset(load_caption_data(train / "captions.jsonl").records)
train_stage(make_accelerator(), blip2, dataset, collator_for(processor, blip2, TrainingConfig()), stage, out / "ckpt")
blip2.eval()
score = world_caption_accuracy(blip2, processor, heldout).score
print(f"after {steps} steps at {lr:g}: caption accuracy {score:.3f} ({time.time() - started:.0f} s)", flush=True)
save_model(blip2, processor, out / "model")
