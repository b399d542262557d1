"""The VPGTrans pipeline: fit converter -> graft with fused projector -> warm-up -> fine-tune.

`run_transfer` is exactly the four separate commands in order; each step is also a
function here so the CLI's `fit-converter`, `init`, `warmup` and `finetune` share it.
Everything is validated before OUT is touched, and OUT/model appears only when complete.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from .checkpointing import atomic_dir, differing_keys, write_text_atomic
from .converter import ConverterFitConfig, WordConverter, fit_converter
from .costs import cost_record, stage_flops
from .data import CaptionCollator, CaptionData, CaptionDataset, CaptionRecord, load_caption_data
from .errors import VPGTransError
from .graft import GraftReport, check_blip2_ref, check_causal_lm_ref, graft, load_blip2, load_causal_lm
from .optim import OPTIMIZERS
from .prompt_scale import match_prompt_scale
from .train import (
    FINETUNE_TRAINABLE,
    HALF_DTYPES,
    WARMUP_TRAINABLE,
    JsonlLog,
    StageConfig,
    StageResult,
    make_accelerator,
    train_stage,
)

FP32_MODULES = ("qformer", "query_tokens", "vision_model.post_layernorm", "language_projection")


@dataclass
class TrainingConfig:
    """Settings shared by both stages."""

    batch_size: int = 64
    grad_accum: int = 1
    lr: float = 1e-4
    warmup_lr_mult: float = 5.0
    stage1_steps: int | None = None  # None: stage1_epochs epochs
    stage1_epochs: float = 1.0  # the paper warms up for one epoch
    stage2_steps: int | None = None  # None: stage2_epochs epochs
    stage2_epochs: float = 5.0
    stage1_optimizer: str = "adamw"  # the paper's; "muon" trains the projector matrix with Muon (optim.py)
    stage2_optimizer: str = "adamw"
    seed: int = 0
    precision: str = "fp32"
    max_text_tokens: int = 32
    checkpoint_every: int = 200
    weight_decay: float = 0.05
    num_workers: int = 0

    def __post_init__(self):
        for name in ("stage1_optimizer", "stage2_optimizer"):
            if getattr(self, name) not in OPTIMIZERS:
                raise VPGTransError(f"{name} {getattr(self, name)!r} is not one of {', '.join(OPTIMIZERS)}")


@dataclass
class TransferConfig:
    """Everything `vpgtrans transfer` needs; recorded verbatim in run.json."""

    src: str
    dst: str
    data: str
    out: str
    training: TrainingConfig = field(default_factory=TrainingConfig)
    converter: str = "ridge"
    prompt_scale: bool = False  # size the fused prompt to the source's scale (prompt_scale.py)
    skip_bad_samples: bool = False
    eval: str | None = None  # held-out miniature-world folder scored after training
    eval_limit: int | None = None  # at most this many captions and questions


def steps_per_epoch(samples: int, training: TrainingConfig, processes: int = 1) -> int:
    """Optimizer steps in one pass over `samples` (last partial batch dropped)."""
    return max(1, samples // (training.batch_size * processes) // training.grad_accum)


def _stage_steps(steps: int | None, epochs: float, samples: int, training: TrainingConfig, processes: int) -> int:
    """A stage's length: its explicit step count, else its epochs (a partial epoch rounds up)."""
    return steps or math.ceil(epochs * steps_per_epoch(samples, training, processes))


def warmup_stage(training: TrainingConfig, samples: int, processes: int = 1) -> StageConfig:
    """Stage 1: projector only, base LR x warmup_lr_mult, constant, one epoch by default (AdamW, as in the paper,
    unless stage1_optimizer says otherwise)."""
    return StageConfig(
        name="warmup",
        trainable=WARMUP_TRAINABLE,
        steps=_stage_steps(training.stage1_steps, training.stage1_epochs, samples, training, processes),
        lr=training.lr * training.warmup_lr_mult,
        schedule="constant",
        weight_decay=training.weight_decay,
        optimizer=training.stage1_optimizer,
        batch_size=training.batch_size,
        grad_accum=training.grad_accum,
        seed=training.seed,
        checkpoint_every=training.checkpoint_every,
        num_workers=training.num_workers,
    )


def finetune_stage(training: TrainingConfig, samples: int, processes: int = 1) -> StageConfig:
    """Stage 2: Q-Former, queries, ln_vision, projector; cosine from base LR to half."""
    return StageConfig(
        name="finetune",
        trainable=FINETUNE_TRAINABLE,
        steps=_stage_steps(training.stage2_steps, training.stage2_epochs, samples, training, processes),
        lr=training.lr,
        schedule="cosine",
        min_lr_ratio=0.5,
        weight_decay=training.weight_decay,
        optimizer=training.stage2_optimizer,
        batch_size=training.batch_size,
        grad_accum=training.grad_accum,
        seed=training.seed + 1,
        checkpoint_every=training.checkpoint_every,
        dropout_in=("qformer",),
        num_workers=training.num_workers,
    )


def set_precision(model: Blip2ForConditionalGeneration, precision: str) -> Blip2ForConditionalGeneration:
    """Frozen ViT and LLM in the run's precision; trainable parts stay fp32 masters."""
    model.to(HALF_DTYPES[precision])
    for name, module in model.named_children():
        if name in FP32_MODULES:
            module.float()
    model.vision_model.post_layernorm.float()
    model.query_tokens.data = model.query_tokens.data.float()
    return model


def library_versions() -> dict[str, str]:
    import accelerate
    import datasets
    import transformers

    from . import __version__

    return {
        "vpgtrans": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
        "accelerate": accelerate.__version__, "datasets": datasets.__version__, "python": platform.python_version(),
    }


def save_model(model: Blip2ForConditionalGeneration, processor: Blip2Processor, folder: Path) -> None:
    """A `save_pretrained` folder that loads with transformers alone, written atomically."""
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)


def collator_for(processor: Blip2Processor, model: Blip2ForConditionalGeneration, training: TrainingConfig) -> CaptionCollator:
    return CaptionCollator(
        tokenizer=processor.tokenizer,
        image_processor=processor.image_processor,
        num_query_tokens=model.config.num_query_tokens,
        image_token_id=model.config.image_token_index,
        max_text_tokens=training.max_text_tokens,
    )


class RunFolder:
    """OUT: refuses to mix two different runs; holds run.json, log.jsonl and checkpoints."""

    def __init__(self, out: str | Path, settings: dict, resume: bool, overwrite: bool):
        self.path = Path(out)
        self.settings = settings
        run_json = self.path / "run.json"
        if self.path.exists() and any(self.path.iterdir()):
            if overwrite:
                shutil.rmtree(self.path)
            elif not run_json.exists():
                raise VPGTransError(f"{self.path}: OUT is not empty and holds no run.json; choose another OUT or pass --overwrite")
            else:
                previous = json.loads(run_json.read_text()).get("config")
                if previous != settings:
                    changed = differing_keys(previous or {}, settings)
                    raise VPGTransError(
                        f"{run_json}: OUT holds a different run (differs in {', '.join(changed)}); "
                        "choose another OUT or pass --overwrite"
                    )
                if not resume:
                    raise VPGTransError(f"{run_json}: OUT already holds this run; pass --resume to continue it or --overwrite")
        self.path.mkdir(parents=True, exist_ok=True)
        self.record: dict = {"config": settings, "versions": library_versions(), "stages": {}, "status": "running"}
        if run_json.exists() and resume:
            self.record["stages"] = json.loads(run_json.read_text()).get("stages", {})
        self.log = JsonlLog(self.path / "log.jsonl")
        self.save()

    def checkpoints(self, stage: str) -> Path:
        return self.path / "checkpoints" / stage

    def save(self, **fields) -> None:
        self.record.update(fields)
        write_text_atomic(self.path / "run.json", json.dumps(self.record, indent=2, default=str))


def run_stage(
    model: Blip2ForConditionalGeneration,
    processor: Blip2Processor,
    data: CaptionData,
    stage: StageConfig,
    training: TrainingConfig,
    run: RunFolder,
    accelerator,
) -> StageResult:
    """Train one stage on DATA and record it in run.json."""
    result = train_stage(
        accelerator, model, CaptionDataset(data.records), collator_for(processor, model, training), stage,
        run.checkpoints(stage.name), run.log,
    )
    flops = stage_flops(model.config, result, qformer_trained="qformer" in stage.trainable)
    run.record["stages"][stage.name] = {"config": asdict(stage), "result": asdict(result),
                                        "cost": cost_record(flops, result.device)}
    run.save()
    return result


def initialise(
    src: str, dst: str, converter: WordConverter | None, precision: str = "fp32", seed: int = 0,
    prompt_scale_records: list[CaptionRecord] | None = None,
) -> tuple[Blip2ForConditionalGeneration, Blip2Processor, GraftReport]:
    """Load source BLIP-2 and destination LLM, graft them with the fused projector (sized to
    the source's soft-prompt scale on `prompt_scale_records` when given)."""
    dtype = HALF_DTYPES[precision]
    source, source_processor = load_blip2(src, dtype)
    lm, tokenizer = load_causal_lm(dst, dtype)
    model, processor, report = graft(source, source_processor, lm, tokenizer, converter, seed)
    if prompt_scale_records:
        report.prompt_scale = match_prompt_scale(model, processor, source, source_processor.tokenizer, prompt_scale_records)
    return set_precision(model, precision), processor, report


def run_transfer(config: TransferConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """`vpgtrans transfer`: the four steps in order; returns OUT/model."""
    started = time.perf_counter()
    training = config.training
    data = load_caption_data(config.data, config.skip_bad_samples)
    check_blip2_ref(config.src)  # fail on bad references before OUT is created
    check_causal_lm_ref(config.dst)
    accelerator = make_accelerator(training.precision, training.grad_accum)
    settings = json.loads(json.dumps(asdict(config)))
    run = RunFolder(config.out, settings, resume, overwrite)

    converter_path = run.path / "converter.safetensors"
    if converter_path.exists():
        converter = WordConverter.load(converter_path)
    else:
        converter = fit_converter(
            config.src, config.dst, data.captions(), ConverterFitConfig(method=config.converter, seed=training.seed)
        )
        converter.save(converter_path)
    model, processor, graft_report = initialise(config.src, config.dst, converter, training.precision, training.seed,
                                                data.records if config.prompt_scale else None)
    run.save(converter=asdict(converter.report) if converter.report else None, graft=asdict(graft_report),
             data={"path": str(data.path), "samples": len(data.records), "skipped": data.skipped})

    n = len(data.records)
    procs = accelerator.num_processes
    run_stage(model, processor, data, warmup_stage(training, n, procs), training, run, accelerator)
    run_stage(model, processor, data, finetune_stage(training, n, procs), training, run, accelerator)
    model_dir = run.path / "model"
    if accelerator.is_main_process:
        save_model(model, processor, model_dir)
    run.save(model=str(model_dir), wall_seconds=time.perf_counter() - started)
    if config.eval and accelerator.is_main_process:
        run.save(evaluation=evaluate_against_source(model, processor, config.src, config.eval, training.precision,
                                                             config.eval_limit))
    run.save(status="done")
    if accelerator.is_main_process:
        from .report import write_report

        write_report([run.path], run.path / "report")
    return model_dir


def evaluate_against_source(model, processor, src: str, folder: str, precision: str, limit: int | None = None) -> dict:
    """World caption and VQA accuracy of the transferred model and of the source, side by side."""
    from .evaluate import world_caption_accuracy, world_vqa_accuracy

    source, source_processor = load_blip2(src, HALF_DTYPES[precision])
    scores = {}
    for name, (m, p) in {"transferred": (model, processor), "source": (source, source_processor)}.items():
        m.eval()
        scores[name] = {"caption_attribute_accuracy": world_caption_accuracy(m, p, folder, limit).score,
                        "vqa_accuracy": world_vqa_accuracy(m, p, folder, limit).score}
    scores["caption_ratio"] = scores["transferred"]["caption_attribute_accuracy"] / max(scores["source"]["caption_attribute_accuracy"], 1e-9)
    print(json.dumps(scores, indent=2))
    return scores
