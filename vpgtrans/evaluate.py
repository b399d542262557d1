"""Zero-shot evaluation on the miniature world: caption attribute accuracy and VQA accuracy.

Both read a folder written by `world.write_dataset` (captions.jsonl, scenes.jsonl,
qa.jsonl) and follow the BLIP-2 protocol: captions with no prompt, questions with
"Question: {} Answer:", beam search, stop at newline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from . import world
from .jsonl import iter_jsonl
from .generation import GenerationSettings, generate

VQA_PROMPT = "Question: {} Answer:"
CAPTION_SETTINGS = GenerationSettings(num_beams=5, max_new_tokens=30)
VQA_SETTINGS = GenerationSettings(num_beams=5, max_new_tokens=10)


@dataclass
class EvalResult:
    """A score, how many items it averages, and the predictions behind it."""

    task: str
    score: float
    count: int
    predictions: list[dict] = field(default_factory=list)
    parts: dict[str, float] = field(default_factory=dict)  # e.g. caption accuracy per attribute kind


def _read_jsonl(path: Path) -> list[dict]:
    return [row for _, row in iter_jsonl(path)]


def _batched_generate(model, processor, rows: list[tuple[Path, str]], settings, batch_size: int, desc: str) -> list[str]:
    outputs = []
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, leave=False):
        chunk = rows[start : start + batch_size]
        images = [Image.open(path).convert("RGB") for path, _ in chunk]
        outputs += generate(model, processor, images, [prompt for _, prompt in chunk], settings)
    return outputs


def world_caption_accuracy(
    model: Blip2ForConditionalGeneration, processor: Blip2Processor, folder: str | Path,
    limit: int | None = None, batch_size: int = 32, settings: GenerationSettings = CAPTION_SETTINGS,
) -> EvalResult:
    """Share of ground-truth colour/shape/size/position words the generated captions get right."""
    folder = Path(folder)
    records = _read_jsonl(folder / "captions.jsonl")[:limit]
    scenes = world.load_scenes(folder / "scenes.jsonl")[: len(records)]
    captions = _batched_generate(model, processor, [(folder / r["image"], "") for r in records], settings, batch_size, "toy-caption")
    hits = total = 0
    predictions = []
    for record, scene, caption in zip(records, scenes, captions):
        h, t = world.caption_attribute_hits(caption, scene)
        hits, total = hits + h, total + t
        predictions.append({"image": record["image"], "caption": caption, "reference": record["caption"], "hits": h, "total": t})
    by_kind = world.attribute_accuracy_by_kind(captions, scenes)
    return EvalResult("toy-caption", hits / max(total, 1), len(records), predictions, by_kind)


def world_vqa_accuracy(
    model: Blip2ForConditionalGeneration, processor: Blip2Processor, folder: str | Path,
    limit: int | None = None, batch_size: int = 32, settings: GenerationSettings = VQA_SETTINGS,
) -> EvalResult:
    """Exact-match accuracy of one-word answers to the world's questions."""
    folder = Path(folder)
    records = _read_jsonl(folder / "qa.jsonl")[:limit]
    rows = [(folder / r["image"], VQA_PROMPT.format(r["question"])) for r in records]
    answers = _batched_generate(model, processor, rows, settings, batch_size, "toy-vqa")
    predictions = [
        {"question_id": r["question_id"], "question": r["question"], "answer": a, "reference": r["answer"]}
        for r, a in zip(records, answers)
    ]
    correct = sum(p["answer"].strip().lower().rstrip(".") == p["reference"] for p in predictions)
    return EvalResult("toy-vqa", correct / max(len(records), 1), len(records), predictions)
