"""Readers for the zero-shot benchmarks' own annotation files, and scoring of predictions.

Supported files (as published by each benchmark):

* COCO Karpathy split ``dataset_coco.json`` (``images[*]`` with ``split``, ``filepath``,
  ``filename``, ``cocoid`` and ``sentences[*].raw``),
* NoCaps ``nocaps_val_4500_captions.json`` (COCO-style ``images`` + ``annotations``),
* VQAv2 / OK-VQA questions (``{"questions": [...]}``) and annotations
  (``{"annotations": [{"question_id", "answers": [{"answer"}, ...]}]}``),
* GQA questions (``{qid: {"imageId", "question", "answer"}}``, e.g. ``testdev_balanced_questions.json``),
* the miniature world's folders (``vpgtrans world``: ``scenes.jsonl`` and ``qa.jsonl``, image
  paths relative to the folder), for the ``toy-caption`` and ``toy-vqa`` tasks.

Predictions are JSON lines: ``{"image_id", "caption"}`` for the caption tasks and
``{"question_id", "answer"}`` for the VQA tasks. Ids are matched as strings, so ``42`` and
``"42"`` are the same id; a world image's id is its path in the folder (``images/000007.png``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import world
from ..errors import VPGTransError
from ..io.jsonl import iter_jsonl
from .metrics import cider_d, gqa_accuracy, okvqa_accuracy, vqa_accuracy
from .ptb import ptb_tokenize

COCO_VAL2014_IMAGE = "COCO_val2014_{image_id:012d}.jpg"

PathLike = str | Path


class BenchmarkFormatError(VPGTransError, ValueError):
    """An annotation or prediction file does not have the expected format or content."""


@dataclass(frozen=True)
class CaptionSample:
    """One image of a captioning benchmark with its reference captions."""

    image_id: int | str
    image_path: Path
    references: tuple[str, ...]
    domain: str | None = None  # NoCaps: "in-domain", "near-domain" or "out-domain"


@dataclass(frozen=True)
class VQASample:
    """One question of a VQA benchmark with its human answers (GQA: the single answer)."""

    question_id: int | str
    image_id: int | str
    image_path: Path
    question: str
    answers: tuple[str, ...]


# --------------------------------------------------------------------------- file formats


def _load_json(path: PathLike) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise BenchmarkFormatError(f"{path}: not valid JSON ({e})") from e
    except FileNotFoundError as e:
        raise BenchmarkFormatError(f"{path}: file not found") from e


def _detect_format(data: Any) -> str:
    """Which benchmark file a loaded JSON document looks like."""
    if isinstance(data, dict):
        images, anns = data.get("images"), data.get("annotations")
        if isinstance(images, list) and images and isinstance(images[0], dict):
            if "sentences" in images[0]:
                return "COCO Karpathy (dataset_coco.json)"
            if isinstance(anns, list) and anns and "caption" in anns[0]:
                return "COCO-style caption (NoCaps)"
        if isinstance(anns, list) and anns and isinstance(anns[0], dict) and "answers" in anns[0]:
            return "VQA annotations"
        if isinstance(data.get("questions"), list):
            return "VQA questions"
        first = next(iter(data.values()), None)
        if isinstance(first, dict) and {"imageId", "question"} <= first.keys():
            return "GQA questions"
    return "unknown"


def _expect_format(path: PathLike, data: Any, expected: str) -> None:
    found = _detect_format(data)
    if found != expected:
        looks = f"looks like a {found} file" if found != "unknown" else "matches none of the supported formats"
        raise BenchmarkFormatError(f"{path}: expected a {expected} file, but it {looks}")


def _field(path: PathLike, record: dict, key: str, where: str) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise BenchmarkFormatError(f"{path}: {where} has no {key!r}")
    return record[key]


# --------------------------------------------------------------------------- readers


def load_coco_karpathy(annotation_path: PathLike, image_root: PathLike, split: str = "test") -> list[CaptionSample]:
    """Karpathy ``dataset_coco.json``: the images of ``split`` (ids are COCO ids)."""
    data = _load_json(annotation_path)
    _expect_format(annotation_path, data, "COCO Karpathy (dataset_coco.json)")
    samples = []
    for i, img in enumerate(data["images"]):
        if _field(annotation_path, img, "split", f"images[{i}]") != split:
            continue
        image_id = img.get("cocoid", _field(annotation_path, img, "imgid", f"images[{i}]"))
        refs = tuple(
            _field(annotation_path, s, "raw", f"image {image_id} sentence")
            for s in _field(annotation_path, img, "sentences", f"image {image_id}")
        )
        path = (
            Path(image_root) / img.get("filepath", "") / _field(annotation_path, img, "filename", f"image {image_id}")
        )
        samples.append(CaptionSample(image_id, path, refs))
    if not samples:
        raise BenchmarkFormatError(f"{annotation_path}: no images in split {split!r}")
    return samples


def load_nocaps(annotation_path: PathLike, image_root: PathLike) -> list[CaptionSample]:
    """NoCaps val/test JSON (``images`` with ``file_name`` and ``domain``, ``annotations``)."""
    data = _load_json(annotation_path)
    _expect_format(annotation_path, data, "COCO-style caption (NoCaps)")
    refs: dict[Any, list[str]] = {}
    for i, ann in enumerate(data["annotations"]):
        refs.setdefault(_field(annotation_path, ann, "image_id", f"annotations[{i}]"), []).append(
            _field(annotation_path, ann, "caption", f"annotations[{i}]")
        )
    samples = []
    for i, img in enumerate(data["images"]):
        image_id = _field(annotation_path, img, "id", f"images[{i}]")
        if image_id not in refs:
            raise BenchmarkFormatError(f"{annotation_path}: image {image_id} has no captions")
        path = Path(image_root) / _field(annotation_path, img, "file_name", f"image {image_id}")
        samples.append(CaptionSample(image_id, path, tuple(refs[image_id]), img.get("domain")))
    return samples


def load_vqa(
    questions_path: PathLike,
    annotations_path: PathLike,
    image_root: PathLike,
    image_template: str = COCO_VAL2014_IMAGE,
) -> list[VQASample]:
    """VQAv2 or OK-VQA questions + annotations; images named by ``image_template``."""
    questions = _load_json(questions_path)
    _expect_format(questions_path, questions, "VQA questions")
    answers = _vqa_answers(annotations_path)
    samples = []
    for i, q in enumerate(questions["questions"]):
        qid = _field(questions_path, q, "question_id", f"questions[{i}]")
        if str(qid) not in answers:
            raise BenchmarkFormatError(f"{annotations_path}: no annotation for question {qid}")
        image_id = _field(questions_path, q, "image_id", f"question {qid}")
        samples.append(
            VQASample(
                qid,
                image_id,
                Path(image_root) / image_template.format(image_id=image_id),
                _field(questions_path, q, "question", f"question {qid}"),
                answers[str(qid)],
            )
        )
    return samples


def _vqa_answers(annotations_path: PathLike) -> dict[str, tuple[str, ...]]:
    data = _load_json(annotations_path)
    _expect_format(annotations_path, data, "VQA annotations")
    out = {}
    for i, ann in enumerate(data["annotations"]):
        qid = _field(annotations_path, ann, "question_id", f"annotations[{i}]")
        answers = _field(annotations_path, ann, "answers", f"question {qid}")
        out[str(qid)] = tuple(_field(annotations_path, a, "answer", f"question {qid} answer") for a in answers)
        if not out[str(qid)]:
            raise BenchmarkFormatError(f"{annotations_path}: question {qid} has no answers")
    return out


def load_gqa(questions_path: PathLike, image_root: PathLike) -> list[VQASample]:
    """GQA questions file (``{qid: {"imageId", "question", "answer", ...}}``)."""
    data = _load_json(questions_path)
    _expect_format(questions_path, data, "GQA questions")
    samples = []
    for qid, q in data.items():
        image_id = _field(questions_path, q, "imageId", f"question {qid}")
        samples.append(
            VQASample(
                qid,
                image_id,
                Path(image_root) / f"{image_id}.jpg",
                _field(questions_path, q, "question", f"question {qid}"),
                (_field(questions_path, q, "answer", f"question {qid}"),),
            )
        )
    return samples


def _world_file(folder: PathLike, name: str) -> Path:
    path = Path(folder) / name
    if not path.is_file():
        raise BenchmarkFormatError(
            f"{folder}: not a miniature-world folder (no {name}; write one with `vpgtrans world`)"
        )
    return path


def _world_scenes(folder: PathLike) -> dict[str, world.Scene]:
    """``{image path: ground-truth scene}`` from a world folder's ``scenes.jsonl``."""
    path = _world_file(folder, "scenes.jsonl")
    scenes = {}
    for lineno, row in iter_jsonl(path):
        try:
            scenes[_field(path, row, "image", f"line {lineno}")] = world.Scene.from_dict(row)
        except (KeyError, TypeError, ValueError) as exc:
            raise BenchmarkFormatError(f"{path}:{lineno}: not a scene ({exc})") from exc
    return scenes


def load_world_captions(folder: PathLike) -> list[CaptionSample]:
    """A world folder's images; the reference is each scene's ground-truth caption."""
    return [
        CaptionSample(image, Path(folder) / image, (world.caption(scene),))
        for image, scene in _world_scenes(folder).items()
    ]


def load_world_vqa(folder: PathLike) -> list[VQASample]:
    """A world folder's ``qa.jsonl`` questions, one ground-truth answer each."""
    path = _world_file(folder, "qa.jsonl")
    samples = []
    for lineno, row in iter_jsonl(path):
        qid = _field(path, row, "question_id", f"line {lineno}")
        image = _field(path, row, "image", f"question {qid}")
        samples.append(
            VQASample(
                qid,
                image,
                Path(folder) / image,
                _field(path, row, "question", f"question {qid}"),
                (_field(path, row, "answer", f"question {qid}"),),
            )
        )
    return samples


def world_attribute_accuracy(preds: dict[str, str], folder: PathLike) -> dict[str, float]:
    """The world's caption attribute accuracy in percent against each scene's ground truth,
    overall and for each attribute kind (`colour_accuracy`, ...)."""
    scenes = _world_scenes(folder)
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
        return _vqa_answers(annotations_path)
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
