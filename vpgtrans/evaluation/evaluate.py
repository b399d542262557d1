"""`vpgtrans eval`: zero-shot generation on a benchmark, then exactly `vpgtrans score`.

The protocol is BLIP-2's (docs/method.md): captions with no prompt, beam 5, 8 to 30 new
tokens; questions as "Question: {} Answer:" ("Question: {} Short answer:" for an
encoder-decoder LLM), beam 5, at most 10 new tokens, cut at the first newline. The
miniature world's captions are decoded as `compare` and `transfer` score them (no minimum
length: its captions are short). Every setting is per task and can be overridden.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import VPGTransError
from ..io.atomic import write_text_atomic
from ..io.images import open_rgb
from ..training.stages import DTYPES
from ..world.language import ATTRIBUTES
from .config import Benchmark, EvalConfig, GenerationSettings
from .formats import CaptionSample, VQASample
from .generation import generate
from .tasks import (
    CAPTION_TASKS,
    TASKS,
    get_task,
    load_references,
    prediction_fields,
    score,
    score_predictions,
)

VQA_PROMPT = "Question: {} Answer:"
ENCODER_DECODER_VQA_PROMPT = "Question: {} Short answer:"
BENCHMARK_CAPTION_SETTINGS = GenerationSettings(num_beams=5, min_new_tokens=8, max_new_tokens=30)
WORLD_CAPTION_SETTINGS = GenerationSettings(num_beams=5, max_new_tokens=30)  # the world's captions are short
VQA_SETTINGS = GenerationSettings(num_beams=5, max_new_tokens=10)


@dataclass(frozen=True)
class TaskConfig:
    """How a task prompts and decodes; ``{}`` in the prompt is replaced by the question."""

    prompt: str
    generation: GenerationSettings


TASK_CONFIGS: dict[str, TaskConfig] = {
    "coco-caption": TaskConfig("", BENCHMARK_CAPTION_SETTINGS),
    "nocaps": TaskConfig("", BENCHMARK_CAPTION_SETTINGS),
    "toy-caption": TaskConfig("", WORLD_CAPTION_SETTINGS),
    **{task: TaskConfig(VQA_PROMPT, VQA_SETTINGS) for task in TASKS if task not in CAPTION_TASKS},
}


def task_config(task: str, encoder_decoder: bool, config: EvalConfig | None = None) -> TaskConfig:
    """The task's protocol for this kind of LLM, with `vpgtrans eval`'s overrides applied."""
    base = TASK_CONFIGS[task]
    prompt = ENCODER_DECODER_VQA_PROMPT if encoder_decoder and base.prompt == VQA_PROMPT else base.prompt
    if config is None:
        return TaskConfig(prompt, base.generation)
    overrides = {
        k: getattr(config, k)
        for k in ("num_beams", "min_new_tokens", "max_new_tokens")
        if getattr(config, k) is not None
    }
    return TaskConfig(prompt if config.prompt is None else config.prompt, replace(base.generation, **overrides))


def load_samples(benchmark: Benchmark) -> tuple[list[CaptionSample] | list[VQASample], str]:
    """The benchmark's samples (the first `limit`), each image checked to exist, and the
    annotation file `score` checks predictions against: before any model loads or trains, a
    wrong path fails in seconds."""
    task = get_task(benchmark.task)
    if benchmark.images is None and not task.own_images:
        raise VPGTransError(
            f"--images is required for {task.name}: the folder holding the benchmark's images "
            "(images=DIR in `compare --benchmark`)"
        )
    if benchmark.annotations is None and task.answers_apart:
        raise VPGTransError(
            f"--annotations is required for {task.name}: the answers file, e.g. v2_mscoco_val2014_annotations.json "
            "(annotations=FILE in `compare --benchmark`)"
        )
    samples = task.read(benchmark.data, benchmark.images or "", benchmark.annotations, benchmark.split)[
        : benchmark.limit
    ]
    missing = next((s for s in samples if not s.image_path.is_file()), None)
    if missing is not None:
        raise VPGTransError(f"{missing.image_path}: image not found for {_sample_id(missing)}")
    return samples, benchmark.annotations if task.answers_apart else benchmark.data


def _sample_id(sample: CaptionSample | VQASample) -> str:
    if isinstance(sample, VQASample):
        return f"question_id {sample.question_id} (image_id {sample.image_id})"
    return f"image_id {sample.image_id}"


def prediction_rows(model, processor, samples: list, task: TaskConfig, batch_size: int, desc: str) -> list[dict]:
    """Batched generation: ``{"image_id", "caption"}`` or ``{"question_id", "answer"}`` per sample."""
    rows = []
    for start in tqdm(range(0, len(samples), batch_size), desc=desc):
        chunk = samples[start : start + batch_size]
        prompts = [task.prompt.format(s.question) if isinstance(s, VQASample) else task.prompt for s in chunk]
        texts = generate(
            model, processor, [open_rgb(s.image_path, _sample_id(s)) for s in chunk], prompts, task.generation
        )
        rows += [
            {"question_id": s.question_id, "answer": t}
            if isinstance(s, VQASample)
            else {"image_id": s.image_id, "caption": t}
            for s, t in zip(chunk, texts)
        ]
    return rows


@dataclass
class LoadedBenchmark:
    """A benchmark read once, to be scored at many points (`vpgtrans compare`)."""

    benchmark: Benchmark
    samples: list[CaptionSample] | list[VQASample]
    annotations: str
    references: dict


def load_benchmark(benchmark: Benchmark) -> LoadedBenchmark:
    samples, annotations = load_samples(benchmark)
    return LoadedBenchmark(
        benchmark, samples, annotations, load_references(benchmark.task, annotations, benchmark.split)
    )


def benchmark_scores(model, processor, loaded: LoadedBenchmark, batch_size: int = 16) -> dict[str, float]:
    """Score an in-memory model by the task's protocol: the headline score under the task's name
    (CIDEr-D x100 or accuracy in percent), its other numbers as ``task_name`` (NoCaps domains,
    the world's attribute accuracies)."""
    benchmark = loaded.benchmark
    task = task_config(benchmark.task, not model.config.use_decoder_only_language_model)
    rows = prediction_rows(model, processor, loaded.samples, task, batch_size, benchmark.task)
    id_key, text_key = prediction_fields(benchmark.task)
    metrics = score_predictions(
        benchmark.task,
        {str(r[id_key]): r[text_key] for r in rows},
        loaded.annotations,
        split=benchmark.split,
        source=f"{benchmark.task} predictions",
        references=loaded.references,
    )
    extras = {
        **metrics.get("domains", {}),
        **{k: v for k, v in metrics.items() if k not in ("task", "score", "n", "n_annotated") and isinstance(v, float)},
    }
    return {benchmark.task: metrics["score"], **{f"{benchmark.task}_{k}": v for k, v in extras.items()}}


def run_eval(config: EvalConfig) -> dict:
    """Generate on the task's samples, write OUT/predictions.jsonl, score it into OUT/metrics.json."""
    from ..method.graft import load_blip2

    benchmark = config.benchmark
    samples, annotations = load_samples(benchmark)
    model, processor = load_blip2(config.model, DTYPES[config.precision])
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    task = task_config(benchmark.task, not model.config.use_decoder_only_language_model, config)
    rows = prediction_rows(model, processor, samples, task, config.batch_size, benchmark.task)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "predictions.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    metrics = score(benchmark.task, out / "predictions.jsonl", annotations, split=benchmark.split)
    metrics.update(model=config.model, data=benchmark.data, prompt=task.prompt, generation=asdict(task.generation))
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


WORLD_TASKS = ("toy-caption", "toy-vqa")  # a miniature-world folder is scored as these two tasks
WORLD_METRICS = {"caption": "toy-caption_attribute_accuracy", "cider": "toy-caption", "vqa": "toy-vqa"}
WORLD_KINDS = {f"caption_{kind}": f"toy-caption_{kind}_accuracy" for kind in ATTRIBUTES}  # recorded, not ranked


def load_world(folder: str, limit: int | None = None) -> list[LoadedBenchmark]:
    """A held-out miniature-world folder as its two tasks, read once to be scored many times."""
    return [load_benchmark(Benchmark(task, folder, limit=limit)) for task in WORLD_TASKS]


def world_scores(model, processor, world: list[LoadedBenchmark]) -> dict[str, float]:
    """The miniature world's metrics, scored exactly as `vpgtrans eval --task toy-caption / toy-vqa`
    scores them: caption attribute accuracy (%), the same captions' CIDEr-D x100, VQA accuracy (%),
    and the caption accuracy of each attribute kind (`caption_colour`, ...)."""
    scores: dict[str, float] = {}
    for loaded in world:
        scores.update(benchmark_scores(model, processor, loaded))
    return {name: scores[key] for name, key in {**WORLD_METRICS, **WORLD_KINDS}.items()}
