"""The training settings shared by both stages (no torch: the CLI builds its flags from them)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import option, validate

PRECISIONS = ("fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "muon")  # the paper's AdamW; Muon on weight matrices (optim.py)
# What a stage may train, by name -> parameter-name prefix of Blip2ForConditionalGeneration.
TRAINABLE_PARTS = {
    "qformer": "qformer",
    "query_tokens": "query_tokens",
    "ln_vision": "vision_model.post_layernorm",
    "projection": "language_projection",
}


@dataclass
class TrainingConfig:
    """Settings shared by both stages; a recipe's keys and the training flags are these fields."""

    stage1_steps: int | None = option(None, "warm-up optimizer steps (default: --stage1-epochs epochs)", minimum=1)
    stage1_epochs: float = option(
        1.0, "warm-up length in epochs of DATA when no step count is given (paper: 1)", minimum=1e-9
    )
    stage2_steps: int | None = option(None, "fine-tuning optimizer steps (default: --stage2-epochs epochs)", minimum=1)
    stage2_epochs: float = option(5.0, "fine-tuning length in epochs of DATA when no step count is given", minimum=1e-9)
    stage1_optimizer: str = option(
        "adamw", "warm-up optimizer (adamw: the paper's; muon: Muon on the projector matrix)", choices=OPTIMIZERS
    )
    stage2_optimizer: str = option(
        "adamw", "fine-tuning optimizer (muon: Muon on weight matrices, AdamW on the rest)", choices=OPTIMIZERS
    )
    stage3_steps: int | None = option(
        None, "instruction-tuning optimizer steps (default: --stage3-epochs epochs of the conversations)", minimum=1
    )
    stage3_epochs: float = option(3.0, "instruction-tuning length in epochs of the conversations", minimum=1e-9)
    stage3_lr: float = option(1e-5, "instruction-tuning peak LR, cosine to a tenth (VL-Vicuna)", minimum=1e-12)
    stage3_warmup_steps: int = option(200, "instruction-tuning linear learning-rate warm-up steps", minimum=0)
    stage3_optimizer: str = option("adamw", "instruction-tuning optimizer", choices=OPTIMIZERS)
    stage3_train: tuple[str, ...] = option(
        ("qformer", "query_tokens", "ln_vision", "projection"),
        "what instruction tuning trains (stage 2's set by default)",
        choices=tuple(TRAINABLE_PARTS),
    )
    max_chat_tokens: int = option(
        256, "conversation tokens in stage 3, image tokens included (longer ones are cut at the end)", minimum=8
    )
    batch_size: int = option(64, "per-device micro-batch", minimum=1)
    grad_accum: int = option(1, "micro-batches per optimizer step", minimum=1)
    lr: float = option(1e-4, "base learning rate of fine-tuning; the warm-up uses lr x warmup-lr-mult", minimum=1e-12)
    warmup_lr_mult: float = option(5.0, "warm-up learning-rate multiplier (paper: 5)", minimum=1e-12)
    weight_decay: float = option(0.05, "AdamW weight decay (none on biases, norms and 1-d parameters)", minimum=0)
    seed: int = option(0, "seed of data order, dropout and initialisation", minimum=0)
    precision: str = option(
        "fp32", "dtype of the frozen ViT and LLM, and autocast; trainable parts stay fp32", choices=PRECISIONS
    )
    random_crop: bool = option(False, "RandomResizedCrop (scale 0.5-1.0, bicubic), as the paper trains stages 1-2")
    horizontal_flip: bool = option(
        False, "random horizontal flip, as the paper trains (leave off when captions speak of left and right)"
    )
    max_text_tokens: int = option(32, "caption tokens, BOS/EOS included", minimum=2)
    checkpoint_every: int = option(200, "optimizer steps between checkpoints", minimum=1)
    num_workers: int = option(0, "data-loader worker processes", minimum=0)

    def __post_init__(self):
        validate(self, "training settings")


# Stage 3's own settings: the commands and comparisons that do not instruction-tune leave them out.
INSTRUCTION_FIELDS = (
    "stage3_steps",
    "stage3_epochs",
    "stage3_lr",
    "stage3_warmup_steps",
    "stage3_optimizer",
    "stage3_train",
    "max_chat_tokens",
)
