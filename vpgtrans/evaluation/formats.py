"""Readers for the zero-shot benchmarks' own annotation files: samples with their image paths.

Supported files (as published by each benchmark):

* COCO Karpathy split ``dataset_coco.json`` (``images[*]`` with ``split``, ``filepath``,
  ``filename``, ``cocoid`` and ``sentences[*].raw``),
* NoCaps ``nocaps_val_4500_captions.json`` (COCO-style ``images`` + ``annotations``),
* VQAv2 / OK-VQA questions (``{"questions": [...]}``) and annotations
  (``{"annotations": [{"question_id", "answers": [{"answer"}, ...]}]}``),
* GQA questions (``{qid: {"imageId", "question", "answer"}}``, e.g. ``testdev_balanced_questions.json``),
* the miniature world's folders (``vpgtrans world``: ``scenes.jsonl`` and ``qa.jsonl``, image
  paths relative to the folder), for the ``toy-caption`` and ``toy-vqa`` tasks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import world
from ..errors import VPGTransError
from ..io.jsonl import iter_jsonl

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
    answers = vqa_answers(annotations_path)
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


def vqa_answers(annotations_path: PathLike) -> dict[str, tuple[str, ...]]:
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


def world_scenes(folder: PathLike) -> dict[str, world.Scene]:
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
        for image, scene in world_scenes(folder).items()
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
