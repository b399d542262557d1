"""The benchmark tasks (one registry used by every command) and the scoring of predictions.

Predictions are JSON lines: ``{"image_id", "caption"}`` for the caption tasks and
``{"question_id", "answer"}`` for the VQA tasks. Ids are matched as strings, so ``42`` and
``"42"`` are the same id; a world image's id is its path in the folder (``images/000007.png``).
Each task has one scorer, used by `vpgtrans eval`, `score`, `compare` and `transfer --eval`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import world
from ..errors import VPGTransError
from ..io.jsonl import iter_jsonl
from .formats import (
    BenchmarkFormatError,
    PathLike,
    load_coco_karpathy,
    load_gqa,
    load_nocaps,
    load_vqa,
    load_world_captions,
    load_world_vqa,
    vqa_answers,
    world_scenes,
)
from .metrics import cider_d, gqa_accuracy, okvqa_accuracy, vqa_accuracy
from .ptb import ptb_tokenize


def world_attribute_accuracy(preds: dict[str, str], folder: PathLike) -> dict[str, float]:
    """The world's caption attribute accuracy in percent against each scene's ground truth,
    overall and for each attribute kind (`colour_accuracy`, ...)."""
    scenes = world_scenes(folder)
    hits, totals = zip(*(world.caption_attribute_hits(preds[k], scenes[k]) for k in preds))
    by_kind = world.attribute_accuracy_by_kind(list(preds.values()), [scenes[k] for k in preds])
    return {
        "attribute_accuracy": 100.0 * sum(hits) / max(sum(totals), 1),
        **{f"{kind}_accuracy": 100.0 * value for kind, value in by_kind.items()},
    }


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    """A benchmark: how to read its samples, where its references live, how an answer scores."""

    name: str
    read: Callable[[PathLike, PathLike, PathLike | None, str], list]  # (data, images, answers file, split)
    answer_accuracy: Callable[[str, Any], float] | None = None  # VQA tasks; None: captioning, CIDEr-D
    answers_apart: bool = False  # VQAv2 / OK-VQA keep the answers in a file of their own
    own_images: bool = False  # a miniature-world folder holds its images
    extra_scores: Callable[[dict[str, str], PathLike], dict[str, float]] | None = None  # (predictions, annotations)

    @property
    def is_caption(self) -> bool:
        return self.answer_accuracy is None


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("coco-caption", lambda data, images, answers, split: load_coco_karpathy(data, images, split)),
        Task("nocaps", lambda data, images, answers, split: load_nocaps(data, images)),
        Task(
            "toy-caption",
            lambda data, images, answers, split: load_world_captions(data),
            own_images=True,
            extra_scores=world_attribute_accuracy,
        ),
        Task(
            "vqav2",
            lambda data, images, answers, split: load_vqa(data, answers, images),
            vqa_accuracy,
            answers_apart=True,
        ),
        Task(
            "okvqa",
            lambda data, images, answers, split: load_vqa(data, answers, images),
            okvqa_accuracy,
            answers_apart=True,
        ),
        Task("gqa", lambda data, images, answers, split: load_gqa(data, images), gqa_accuracy),
        Task("toy-vqa", lambda data, images, answers, split: load_world_vqa(data), gqa_accuracy, own_images=True),
    )
}
TASK_NAMES = tuple(TASKS)
CAPTION_TASKS = tuple(name for name, task in TASKS.items() if task.is_caption)


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise VPGTransError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name]


# --------------------------------------------------------------------------- scoring


def prediction_fields(task: str) -> tuple[str, str]:
    """The id and text fields of the task's predictions: image_id / caption or question_id / answer."""
    return ("image_id", "caption") if get_task(task).is_caption else ("question_id", "answer")


def read_predictions(path: PathLike, task: str) -> dict[str, str]:
    """Read a predictions JSONL file: ``{id (as str): caption or answer}``."""
    id_key, text_key = prediction_fields(task)
    out: dict[str, str] = {}
    try:
        for lineno, record in iter_jsonl(path):
            if id_key not in record or text_key not in record:
                raise BenchmarkFormatError(f"{path}:{lineno}: expected an object with {id_key!r} and {text_key!r}")
            key, text = str(record[id_key]), record[text_key]
            if not isinstance(text, str):
                raise BenchmarkFormatError(f"{path}:{lineno}: {text_key!r} is not a string")
            if key in out:
                raise BenchmarkFormatError(f"{path}:{lineno}: duplicate {id_key} {key}")
            out[key] = text
    except BenchmarkFormatError:
        raise
    except VPGTransError as exc:
        raise BenchmarkFormatError(str(exc)) from exc
    except FileNotFoundError as exc:
        raise BenchmarkFormatError(f"{path}: file not found") from exc
    if not out:
        raise BenchmarkFormatError(f"{path}: no predictions")
    return out


def load_references(task_name: str, annotations_path: PathLike, split: str = "test") -> dict[str, Any]:
    """``{id (as str): references}`` from a benchmark's annotation file (read once, score many times)."""
    task = get_task(task_name)
    if task.answers_apart:
        return vqa_answers(annotations_path)
    samples = task.read(annotations_path, "", None, split)
    if task.is_caption:
        return {str(s.image_id): s for s in samples}
    return {str(s.question_id): s.answers[0] for s in samples}


def score(
    task: str,
    predictions_path: PathLike,
    annotations_path: PathLike,
    *,
    split: str = "test",
    require_complete: bool = False,
    per_sample: bool = False,
) -> dict[str, Any]:
    """Score a predictions JSONL file against a benchmark's annotation file (`score_predictions`)."""
    return score_predictions(
        task,
        read_predictions(predictions_path, task),
        annotations_path,
        split=split,
        require_complete=require_complete,
        per_sample=per_sample,
        source=str(predictions_path),
    )


def score_predictions(
    task: str,
    preds: dict[str, str],
    annotations_path: PathLike,
    *,
    split: str = "test",
    require_complete: bool = False,
    per_sample: bool = False,
    source: str = "predictions",
    references: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score predictions (``{id (as str): caption or answer}``, named `source` in errors) against
    a benchmark's annotation file (`references`: its `load_references`, when already read).

    Caption tasks give CIDEr-D (x100, as papers report it; NoCaps also per domain, each
    domain scored on its own like the NoCaps server), VQA tasks the accuracy in percent
    (VQA accuracy for vqav2, lemmatised for okvqa, exact match for gqa and toy-vqa);
    toy-caption adds the world's caption attribute accuracy in percent. The predicted ids
    are scored; ``require_complete`` makes missing predictions an error. ``split`` selects
    the Karpathy split for coco-caption. Returns ``{"task", "metric", "score", "n",
    "n_annotated"}`` (+ ``"domains"``, ``"attribute_accuracy"``, + ``"per_sample"`` when asked).
    """
    spec = get_task(task)
    refs = load_references(task, annotations_path, split) if references is None else references
    for key in preds:
        if key not in refs:
            what = prediction_fields(task)[0]
            where = f" (split {split!r})" if task == "coco-caption" else ""
            raise BenchmarkFormatError(f"{source}: {what} {key} has no annotation in {annotations_path}{where}")
    if require_complete and len(preds) < len(refs):
        missing = next(k for k in refs if k not in preds)
        raise BenchmarkFormatError(
            f"{source}: {len(refs) - len(preds)} of {len(refs)} annotated ids have no prediction (e.g. {missing})"
        )
    result: dict[str, Any] = {"task": task, "n": len(preds), "n_annotated": len(refs)}
    if spec.is_caption:
        result["metric"] = "CIDEr"
        result["score"], scores = corpus_cider(preds, {k: refs[k].references for k in preds})
        domains = sorted({refs[k].domain for k in preds if refs[k].domain})
        if domains:
            result["domains"] = {
                d: corpus_cider(
                    {k: preds[k] for k in preds if refs[k].domain == d},
                    {k: refs[k].references for k in preds if refs[k].domain == d},
                )[0]
                for d in domains
            }
    else:
        scores = {k: 100.0 * spec.answer_accuracy(preds[k], refs[k]) for k in preds}
        result["metric"] = "accuracy"
        result["score"] = float(np.mean(list(scores.values())))
    if spec.extra_scores is not None:
        result.update(spec.extra_scores(preds, annotations_path))
    if per_sample:
        result["per_sample"] = scores
    return result


def corpus_cider(preds: dict[str, str], refs: dict[str, tuple[str, ...]]) -> tuple[float, dict[str, float]]:
    """CIDEr-D x100 with pycocoevalcap's tokenisation of references and candidates."""
    corpus, per_id = cider_d(ptb_tokenize(refs), ptb_tokenize({k: [preds[k]] for k in refs}))
    return 100.0 * corpus, {k: 100.0 * v for k, v in per_id.items()}
