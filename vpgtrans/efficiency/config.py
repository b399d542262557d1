"""What `vpgtrans compare` compares, on what, for how long (no torch: the CLI builds its flags from it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import DST_HELP, SRC_HELP, option, validate
from ..errors import VPGTransError
from ..evaluation.config import Benchmark
from ..method.config import CONVERTER_METHODS
from ..training.config import INSTRUCTION_FIELDS, TrainingConfig

DEFAULT_BUDGET_EPOCHS = 10
# Training settings a compare does not use: it sets the seed per arm, checkpoints nothing (arms are
# resumed from their saved curves), replaces the fine-tuning length by its budget and does not
# instruction-tune.
IGNORED_TRAINING = ("seed", "checkpoint_every", "stage2_steps", "stage2_epochs", *INSTRUCTION_FIELDS)


@dataclass(frozen=True)
class Arm:
    """One way to obtain a VPG for the destination LLM."""

    projector: str  # "fused" (converter after source projector) or "random"
    vpg: str  # "inherit" (source Q-Former + queries) or "scratch"
    warmup_lr_mult: float | None  # None: no warm-up stage
    converter: str | None = None  # None: the compare's converter (CompareConfig.converter)
    prompt_scale: bool = False  # fused projector sized to the source's soft-prompt scale
    warmup_epochs: float | None = None  # None: the recipe's (TrainingConfig.stage1_epochs)


ARMS = {
    "tfs": Arm("random", "scratch", None),
    "vpgtrans": Arm("fused", "inherit", 5.0),
    "inherit-no-warmup": Arm("random", "inherit", None),
    "fused-no-warmup": Arm("fused", "inherit", None),
    "warmup-1x": Arm("fused", "inherit", 1.0),
    "warmup-10x": Arm("fused", "inherit", 10.0),
    "random-warmup": Arm("random", "inherit", 5.0),
    "paper-converter": Arm("fused", "inherit", 5.0, converter="paper"),
    "prompt-scale": Arm("fused", "inherit", 5.0, prompt_scale=True),
    "warmup-1-epoch": Arm("fused", "inherit", 5.0, warmup_epochs=1),
    "warmup-2-epochs": Arm("fused", "inherit", 5.0, warmup_epochs=2),
    "warmup-3-epochs": Arm("fused", "inherit", 5.0, warmup_epochs=3),
}
REFERENCE_ARMS = ("tfs", "vpgtrans")


@dataclass
class CompareConfig:
    """What to compare, on what, for how long."""

    src: str = option(help=SRC_HELP)
    dst: str = option(help=DST_HELP)
    data: str = option(help="training image-caption pairs (JSONL or imagefolder)")
    eval: str | None = option(None, "held-out miniature-world folder every arm is scored on (caption, cider, vqa)")
    out: str = option("runs/compare", "output folder")
    arms: tuple[str, ...] = option(REFERENCE_ARMS, "comma list of arms", choices=tuple(ARMS))
    seeds: int = option(3, "seeds per arm", minimum=1)
    budget_epochs: int | None = option(
        None,
        f"epochs of DATA per arm, warm-up included ({DEFAULT_BUDGET_EPOCHS} unless --budget-steps is given)",
        minimum=1,
    )
    budget_steps: int | None = option(None, "optimizer steps per arm, warm-up included (instead of epochs)", minimum=1)
    evals_per_epoch: int = option(
        1, "evenly spaced evaluations per epoch (the end of the budget is always scored)", minimum=1
    )
    converter: str = option(
        "ridge", "converter of the fused arms (the paper-converter arm always uses paper)", choices=CONVERTER_METHODS
    )
    training: TrainingConfig = field(default_factory=TrainingConfig)
    tfs_lrs: tuple[float, ...] = option((), "comma list of learning rates swept for TFS on seed 0 (best is used)")
    eval_limit: int | None = option(100, "captions and questions of --eval scored per evaluation", minimum=1)
    benchmarks: tuple[Benchmark, ...] = ()  # each scored as one metric named by its task

    @staticmethod
    def default_out(src: str, dst: str) -> str:
        return CompareConfig.out

    def __post_init__(self):
        validate(self, "compare settings")
        if self.budget_epochs is not None and self.budget_steps is not None:
            raise VPGTransError("give --budget-epochs or --budget-steps, not both")
        if self.budget_steps is None and self.budget_epochs is None:
            self.budget_epochs = DEFAULT_BUDGET_EPOCHS
        if "tfs" not in self.arms or "vpgtrans" not in self.arms:
            raise VPGTransError("--arms must include tfs and vpgtrans (the speed-up compares them)")
        if not (self.eval or self.benchmarks):
            raise VPGTransError("nothing to score the arms on: give a miniature-world folder (--eval) or --benchmark")
        tasks = [b.task for b in self.benchmarks]
        twice = sorted({t for t in tasks if tasks.count(t) > 1})
        if twice:
            raise VPGTransError(
                f"--benchmark {', '.join(twice)} given twice: each benchmark's score is the metric named by its task"
            )
