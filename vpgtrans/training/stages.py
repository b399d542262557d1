"""The VPGTrans training stages (warm-up, fine-tuning, and VL-Vicuna's instruction tuning), declared as
data in one place.

A `StageSpec` says what a stage trains, which modules run in train mode (dropout), how its
learning rate is scaled and scheduled, and which `TrainingConfig` fields set its length and
optimizer. `stage_config()` turns a spec and the run's settings into the `StageConfig` the
trainer runs. `FP32_MASTERS` are the modules kept in fp32 whatever the run's precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers import Blip2ForConditionalGeneration

from ..method.graft import TRAINABLE_VPG
from .config import TRAINABLE_PARTS, TrainingConfig
from .trainer import StageConfig

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
FP32_MASTERS = TRAINABLE_VPG


@dataclass(frozen=True)
class StageSpec:
    """What a stage is, independent of any run."""

    name: str
    index: int  # reads stage{index}_steps / _epochs / _optimizer of TrainingConfig
    trainable: tuple[str, ...]  # parameter-name prefixes
    schedule: str  # "constant" or "cosine" (to lr * min_lr_ratio)
    lr_field: str = "lr"  # TrainingConfig field holding the base LR
    lr_mult_field: str | None = None  # TrainingConfig field multiplying the base LR
    min_lr_ratio: float = 1.0
    train_mode: tuple[str, ...] = ()  # modules in train mode (dropout on); everything else eval
    seed_offset: int = 0
    warmup_steps_field: str | None = None  # TrainingConfig field: linear LR warm-up steps
    trainable_field: str | None = None  # TrainingConfig field naming TRAINABLE_PARTS, instead of `trainable`
    data: str = "captions"  # what it trains on: "captions" or "conversations"


WARMUP = StageSpec("warmup", 1, trainable=("language_projection",), schedule="constant", lr_mult_field="warmup_lr_mult")
FINETUNE = StageSpec(
    "finetune", 2, trainable=FP32_MASTERS, schedule="cosine", min_lr_ratio=0.5, train_mode=("qformer",), seed_offset=1
)
# VL-Vicuna's stage 3: conversations, LR 1e-5 cosine to 1e-6 after a linear warm-up, loss on the answers.
INSTRUCT = StageSpec(
    "instruct",
    3,
    trainable=FP32_MASTERS,
    schedule="cosine",
    lr_field="stage3_lr",
    min_lr_ratio=0.1,
    train_mode=("qformer",),
    seed_offset=2,
    warmup_steps_field="stage3_warmup_steps",
    trainable_field="stage3_train",
    data="conversations",
)
STAGES = {spec.name: spec for spec in (WARMUP, FINETUNE, INSTRUCT)}


def steps_per_epoch(samples: int, training: TrainingConfig, processes: int = 1) -> int:
    """Optimizer steps in one pass over `samples` (last partial batch dropped)."""
    return max(1, samples // (training.batch_size * processes) // training.grad_accum)


def stage_config(spec: StageSpec, training: TrainingConfig, samples: int, processes: int = 1) -> StageConfig:
    """The trainer's settings for `spec` on `samples` examples: its explicit step count, else
    its epochs (a partial epoch rounds up)."""
    steps = getattr(training, f"stage{spec.index}_steps")
    epochs = getattr(training, f"stage{spec.index}_epochs")
    mult = getattr(training, spec.lr_mult_field) if spec.lr_mult_field else 1.0
    trainable = spec.trainable
    if spec.trainable_field:
        trainable = tuple(TRAINABLE_PARTS[part] for part in getattr(training, spec.trainable_field))
    return StageConfig(
        name=spec.name,
        trainable=trainable,
        steps=steps or math.ceil(epochs * steps_per_epoch(samples, training, processes)),
        lr=getattr(training, spec.lr_field) * mult,
        warmup_steps=getattr(training, spec.warmup_steps_field) if spec.warmup_steps_field else 0,
        schedule=spec.schedule,
        min_lr_ratio=spec.min_lr_ratio,
        weight_decay=training.weight_decay,
        optimizer=getattr(training, f"stage{spec.index}_optimizer"),
        batch_size=training.batch_size,
        grad_accum=training.grad_accum,
        seed=training.seed + spec.seed_offset,
        checkpoint_every=training.checkpoint_every,
        dropout_in=tuple(m for m in spec.train_mode if any(t == m or t.startswith(m + ".") for t in trainable)),
        num_workers=training.num_workers,
    )


def set_precision(model: Blip2ForConditionalGeneration, precision: str) -> Blip2ForConditionalGeneration:
    """Frozen ViT and LLM in the run's precision; `FP32_MASTERS` in fp32. Only the frozen parts are
    cast, so a trainable tensor never makes a round trip through half precision."""
    dtype = DTYPES[precision]
    model.language_model.to(dtype)
    for name, child in model.vision_model.named_children():
        if f"vision_model.{name}" not in FP32_MASTERS:
            child.to(dtype)
    for name in FP32_MASTERS:
        if isinstance(getattr(model, name, None), torch.nn.Parameter):
            getattr(model, name).data = getattr(model, name).data.float()
        else:
            model.get_submodule(name).float()
    return model
