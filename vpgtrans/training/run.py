"""A run folder (OUT): its one `run.json` schema, its log and checkpoints, and one stage run in it.

Every command that trains (`transfer`, `warmup`, `finetune`) writes the same `RunRecord`
through `RunFolder.save`, so reports and resumption read one format.
"""

from __future__ import annotations

import json
import platform
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from ..errors import VPGTransError
from ..io.atomic import differing_keys, write_text_atomic
from ..reports.costs import cost_record, stage_flops
from .data import CaptionCollator, CaptionData, CaptionDataset
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


class RunFolder:
    """OUT: refuses to mix two different runs; holds run.json, log.jsonl and checkpoints."""

    def __init__(self, out: str | Path, command: str, config: dict, resume: bool, overwrite: bool):
        self.path = Path(out)
        run_json = self.path / "run.json"
        previous = None
        if self.path.exists() and any(self.path.iterdir()):
            if overwrite:
                shutil.rmtree(self.path)
            elif not run_json.exists():
                raise VPGTransError(
                    f"{self.path}: OUT is not empty and holds no run.json; choose another OUT or pass --overwrite"
                )
            else:
                previous = json.loads(run_json.read_text())
                saved = {"command": previous.get("command"), **previous.get("config", {})}
                if saved != {"command": command, **config}:
                    changed = differing_keys(saved, {"command": command, **config})
                    raise VPGTransError(
                        f"{run_json}: OUT holds a different run (differs in {', '.join(changed)}); "
                        "choose another OUT or pass --overwrite"
                    )
                if not resume:
                    raise VPGTransError(
                        f"{run_json}: OUT already holds this run; pass --resume to continue it or --overwrite"
                    )
        self.path.mkdir(parents=True, exist_ok=True)
        self.record = RunRecord(command, config, library_versions(), stages=(previous or {}).get("stages", {}))
        self.log = JsonlLog(self.path / "log.jsonl")
        self.save()

    def checkpoints(self, stage: str) -> Path:
        return self.path / "checkpoints" / stage

    def save(self, **updates: Any) -> None:
        known = {f.name for f in fields(RunRecord)}
        unknown = set(updates) - known
        if unknown:
            raise TypeError(f"run.json has no field(s) {sorted(unknown)}")
        for key, value in updates.items():
            setattr(self.record, key, value)
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
    )


def run_stage(
    model: Blip2ForConditionalGeneration,
    processor: Blip2Processor,
    data: CaptionData,
    spec: StageSpec,
    training: TrainingConfig,
    run: RunFolder,
    accelerator: Accelerator,
) -> StageResult:
    """Train one stage on DATA and record it, with its cost, in run.json."""
    stage = stage_config(spec, training, len(data.records), accelerator.num_processes)
    result = train_stage(
        accelerator,
        model,
        CaptionDataset(data.records),
        collator_for(processor, model, training),
        stage,
        run.checkpoints(stage.name),
        run.log,
    )
    flops = stage_flops(model.config, result, qformer_trained="qformer" in stage.trainable)
    run.record.stages[stage.name] = {
        "config": asdict(stage),
        "result": asdict(result),
        "cost": cost_record(flops, result.device),
    }
    run.save()
    return result
