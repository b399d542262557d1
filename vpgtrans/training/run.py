"""A run folder (OUT): its one `run.json` schema, its log and checkpoints, and one stage run in it.

Every command that trains (`transfer`, `warmup`, `finetune`, `instruct`) writes the same `RunRecord`
through `RunFolder.save`, so reports and resumption read one format.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from ..costs import cost_record, stage_flops
from ..errors import VPGTransError
from ..io.atomic import differing_keys, write_text_atomic
from ..io.outdir import LOCK_NAME, OutLock, check_out, check_run_control, remove_leftovers, remove_outputs
from .augment import Augmentation
from .conversations import ConversationCollator, ConversationData, ConversationDataset, load_conversations
from .data import CaptionCollator, CaptionData, CaptionDataset, load_caption_data
from .stages import StageSpec, TrainingConfig, stage_config
from .trainer import JsonlLog, StageResult, train_stage


@dataclass
class RunRecord:
    """The schema of run.json: the command and its config, then what the run did."""

    command: str
    config: dict[str, Any]
    versions: dict[str, str]
    status: str = "running"  # "running" or "done"
    stages: dict[str, dict] = field(default_factory=dict)  # name -> {"config", "result", "cost"}
    data: dict[str, Any] | None = None  # path, samples, skipped
    chat_data: dict[str, Any] | None = None  # stage 3's conversations: path, samples, skipped
    converter: dict[str, Any] | None = None  # the converter's fit report
    graft: dict[str, Any] | None = None  # the graft's report
    model: str | None = None  # the exported model folder
    wall_seconds: float | None = None
    evaluation: dict[str, Any] | None = None  # transferred model against the source


def library_versions() -> dict[str, str]:
    import accelerate
    import datasets
    import transformers

    from .. import __version__

    return {
        "vpgtrans": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "datasets": datasets.__version__,
        "python": platform.python_version(),
    }


RUN_OUTPUTS = ("run.json", "log.jsonl", "checkpoints", "converter.safetensors", "model", "report")


class RunFolder:
    """OUT: refuses to mix two different runs, to hold an input, or to serve two runs at once; holds
    run.json, log.jsonl, checkpoints and the run's outputs, and deletes nothing else. Under several
    processes (accelerate) the main one alone locks, cleans and writes; the others wait for it."""

    def __init__(self, out: str | Path, command: str, config: dict, resume: bool, overwrite: bool,
                 inputs: Iterable[str | None] = ()):  # fmt: skip
        check_run_control(resume, overwrite)
        self.path = Path(out)
        check_out(self.path, inputs)
        run_json = self.path / "run.json"
        existed = self.path.is_dir() and any(p.name != LOCK_NAME for p in self.path.iterdir())
        if existed and not run_json.exists():
            raise VPGTransError(
                f"{self.path}: OUT is not empty and holds no run.json, so no vpgtrans run wrote it; choose another OUT"
            )
        state = PartialState()
        self.main = state.is_main_process
        self.lock = OutLock(self.path)
        if self.main:
            self.path.mkdir(parents=True, exist_ok=True)
            self.lock.acquire()
        try:
            previous = self._previous(run_json, command, config, resume, overwrite) if existed else None
        except VPGTransError:
            self.lock.release()
            raise
        if self.main:
            if overwrite:
                remove_outputs(self.path, RUN_OUTPUTS)
            for folder in (self.path, *self.path.glob("checkpoints/*")):
                remove_leftovers(folder)
        self.record = RunRecord(command, config, library_versions(), stages=(previous or {}).get("stages", {}))
        self.log = JsonlLog(self.path / "log.jsonl")
        self.save()
        state.wait_for_everyone()

    @staticmethod
    def _previous(run_json: Path, command: str, config: dict, resume: bool, overwrite: bool) -> dict | None:
        """The record of the run already in OUT, when this run may continue it."""
        if overwrite:
            return None
        previous = json.loads(run_json.read_text())
        saved, wanted = (
            {"command": previous.get("command"), **previous.get("config", {})},
            {"command": command, **config},
        )
        if saved != wanted:
            raise VPGTransError(
                f"{run_json}: OUT holds a different run (differs in {', '.join(differing_keys(saved, wanted))}); "
                "choose another OUT or pass --overwrite"
            )
        if not resume:
            raise VPGTransError(f"{run_json}: OUT already holds this run; pass --resume to continue it or --overwrite")
        return previous

    def close(self) -> None:
        self.lock.release()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def checkpoints(self, stage: str) -> Path:
        return self.path / "checkpoints" / stage

    def save(self, **updates: Any) -> None:
        known = {f.name for f in fields(RunRecord)}
        unknown = set(updates) - known
        if unknown:
            raise TypeError(f"run.json has no field(s) {sorted(unknown)}")
        for key, value in updates.items():
            setattr(self.record, key, value)
        if self.main:
            write_text_atomic(self.path / "run.json", json.dumps(asdict(self.record), indent=2, default=str))


def collator_for(
    processor: Blip2Processor, model: Blip2ForConditionalGeneration, training: TrainingConfig
) -> CaptionCollator:
    return CaptionCollator(
        tokenizer=processor.tokenizer,
        image_processor=processor.image_processor,
        num_query_tokens=model.config.num_query_tokens,
        image_token_id=model.config.image_token_index,
        max_text_tokens=training.max_text_tokens,
        encoder_decoder=not model.config.use_decoder_only_language_model,
    )


def augmentation_for(training: TrainingConfig, seed: int) -> Augmentation:
    return Augmentation(training.random_crop, training.horizontal_flip, seed)


def load_stage_data(spec: StageSpec, path: str, skip_bad_samples: bool) -> CaptionData | ConversationData:
    """What `spec` trains on, read and checked: captions, or conversations (stage 3)."""
    if spec.data == "conversations":
        return load_conversations(path, skip_bad_samples)
    return load_caption_data(path, skip_bad_samples)


def stage_inputs(
    data: CaptionData | ConversationData,
    processor: Blip2Processor,
    model: Blip2ForConditionalGeneration,
    training: TrainingConfig,
    seed: int,
) -> tuple[torch.utils.data.Dataset, Callable]:
    """The dataset and collator of a stage's data."""
    if isinstance(data, ConversationData):
        collate = ConversationCollator(
            processor, model.config.num_query_tokens, model.config.image_token_index, training.max_chat_tokens
        )
        return ConversationDataset(data.records), collate
    return CaptionDataset(data.records, augmentation_for(training, seed)), collator_for(processor, model, training)


def run_stage(
    model: Blip2ForConditionalGeneration,
    processor: Blip2Processor,
    data: CaptionData | ConversationData,
    spec: StageSpec,
    training: TrainingConfig,
    run: RunFolder,
    accelerator: Accelerator,
) -> StageResult:
    """Train one stage on its data and record it, with its cost, in run.json."""
    stage = stage_config(spec, training, len(data.records), accelerator.num_processes)
    dataset, collate = stage_inputs(data, processor, model, training, stage.seed)
    result = train_stage(accelerator, model, dataset, collate, stage, run.checkpoints(stage.name), run.log)
    flops = stage_flops(model.config, result, qformer_trained="qformer" in stage.trainable)
    run.record.stages[stage.name] = {
        "config": asdict(stage),
        "result": asdict(result),
        "cost": cost_record(flops, result.device),
    }
    run.save()
    return result
