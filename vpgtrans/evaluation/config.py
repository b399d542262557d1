"""What an evaluation reads and how it decodes (no torch: the CLI builds its flags from these)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import option, validate
from ..training.config import PRECISIONS
from .tasks import TASK_NAMES


@dataclass
class GenerationSettings:
    """Decoding settings; the defaults are BLIP-2's zero-shot captioning protocol."""

    num_beams: int = option(5, "beam width", minimum=1)
    max_new_tokens: int = option(30, "most tokens generated", minimum=1)
    min_new_tokens: int = option(0, "fewest tokens generated", minimum=0)
    do_sample: bool = option(False, "sample instead of beam search")
    temperature: float = option(1.0, "sampling temperature", minimum=1e-6)
    top_p: float = option(1.0, "nucleus sampling mass", minimum=1e-6)
    stop_at_newline: bool = option(True, "cut the text at its first line break")

    def __post_init__(self):
        validate(self, "generation settings")


@dataclass(frozen=True)
class Benchmark:
    """Which benchmark files to score on: what `vpgtrans eval` reads, and what `vpgtrans compare
    --benchmark` scores every arm on at each evaluation point."""

    task: str = option(help="benchmark task", choices=TASK_NAMES)
    data: str = option(
        help="dataset_coco.json (coco-caption), the NoCaps JSON, the questions JSON (vqav2, okvqa, "
        "gqa) or a miniature-world folder (toy-caption, toy-vqa)"
    )
    images: str | None = option(None, "the benchmark's image folder (COCO root holding val2014/, NoCaps or GQA images)")
    annotations: str | None = option(None, "VQA annotations JSON (vqav2, okvqa)")
    split: str = option("test", "Karpathy split for coco-caption")
    limit: int | None = option(None, "evaluate the first N images or questions only", minimum=1)

    def __post_init__(self):
        validate(self, f"benchmark {self.task}")


@dataclass
class EvalConfig:
    """What `vpgtrans eval` reads, writes and overrides (None: the task's setting)."""

    model: str = option(help="BLIP-2 folder, hub id or preset")
    benchmark: Benchmark
    out: str = option(help="folder for predictions.jsonl and metrics.json")
    batch_size: int = option(16, "images per generation batch", minimum=1)
    precision: str = option("fp32", "model dtype", choices=PRECISIONS)
    prompt: str | None = option(None, "override the task's prompt ('{}' takes the question)")
    num_beams: int | None = option(None, "override the task's beam count", minimum=1)
    min_new_tokens: int | None = option(None, "override the task's minimum new tokens", minimum=0)
    max_new_tokens: int | None = option(None, "override the task's maximum new tokens", minimum=1)

    def __post_init__(self):
        validate(self, "evaluation settings")
