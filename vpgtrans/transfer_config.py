"""What `vpgtrans transfer` and the single-stage commands take (no torch: the CLI builds its flags from these)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import DST_HELP, SRC_HELP, option, validate
from .convert_config import LavisSource
from .errors import VPGTransError
from .method.config import CONVERTER_METHODS
from .training.config import TrainingConfig


@dataclass
class TransferConfig:
    """Everything `vpgtrans transfer` needs; recorded verbatim in run.json."""

    src: str = option(help=SRC_HELP)
    dst: str = option(help=DST_HELP)
    data: str = option(help="image-caption JSONL or imagefolder")
    out: str = option(help="run folder (default: runs/SRC-to-DST)")
    training: TrainingConfig = field(default_factory=TrainingConfig)
    src_llm: str | None = option(None, "a LAVIS --src (.pth): the language model it was trained on")
    src_vit: str | None = option(None, "a LAVIS --src (.pth): its EVA ViT file (eva_vit_g.pth)")
    src_vit_heads: int = option(16, "a LAVIS --src (.pth): ViT attention heads (EVA ViT-g: 16)", minimum=1)
    src_qformer_heads: int = option(12, "a LAVIS --src (.pth): Q-Former attention heads (BERT-base: 12)", minimum=1)
    src_trust_pickle: bool = option(False, "a LAVIS --src (.pth): unpickle more than tensors (only a trusted file)")
    converter: str = option(
        "ridge", "converter fit: closed-form ridge, or the paper's cosine/SGD recipe", choices=CONVERTER_METHODS
    )
    prompt_scale: bool = option(
        False,
        "rescale the fused projector to the source's soft-prompt / word-embedding ratio "
        "(docs/results.md#the-prompt-scale-option)",
    )
    chat: str | None = option(
        None,
        "conversations to instruction-tune on after fine-tuning (stage 3, VL-Vicuna): our JSONL, LLaVA JSON or "
        "MiniGPT-4's cc_sbu_align folder",
    )
    skip_bad_samples: bool = option(False, "skip and count unreadable records instead of failing")
    eval: str | None = option(None, "held-out miniature-world folder to score the result and the source on")
    eval_limit: int | None = option(None, "score at most this many captions and questions", minimum=1)

    @staticmethod
    def default_out(src: str, dst: str) -> str:
        return f"runs/{src.replace('/', '_')}-to-{dst.replace('/', '_')}"

    def lavis_source(self) -> LavisSource | None:
        """The LAVIS files when --src is a LAVIS / VPGTrans checkpoint, else None."""
        if not self.src.endswith((".pth", ".pt")):
            return None
        if not self.src_llm:
            raise VPGTransError(f"--src {self.src} is a LAVIS checkpoint: give --src-llm, the LLM it was trained on")
        return LavisSource(
            checkpoint=self.src,
            llm=self.src_llm,
            vit=self.src_vit,
            vit_heads=self.src_vit_heads,
            qformer_heads=self.src_qformer_heads,
            trust_pickle=self.src_trust_pickle,
        )

    def __post_init__(self):
        validate(self, "transfer settings")


@dataclass
class StageRunConfig:
    """`vpgtrans warmup` / `finetune` / `instruct`: one stage on a BLIP-2 folder."""

    model: str = option(help="BLIP-2 folder (from init, warmup or finetune)")
    data: str = option(
        help="captions (warmup, finetune: JSONL or imagefolder) or conversations (instruct: JSONL, LLaVA JSON or "
        "cc_sbu_align folder)"
    )
    out: str = option(help="run folder; the model goes to OUT/model")
    training: TrainingConfig = field(default_factory=TrainingConfig)
    skip_bad_samples: bool = option(False, "skip and count unreadable records instead of failing")

    def __post_init__(self):
        validate(self, "stage settings")
