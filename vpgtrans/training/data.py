"""Image-caption data: loading, validation and batching for BLIP-2 training.

DATA is a JSONL file (`{"image": path, "caption": text}` per line, paths relative to the
file) or a `datasets` imagefolder (`metadata.jsonl` with `file_name` and `caption`).
Every bad record is reported with its file and line before anything is trained.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from transformers import PreTrainedTokenizerBase

from ..errors import VPGTransError
from ..io.images import open_rgb
from ..io.jsonl import iter_jsonl
from .augment import Augmentation


@dataclass(frozen=True)
class CaptionRecord:
    """One training pair and where it was declared."""

    image: Path
    caption: str
    source: str  # "file:line", for error messages


@dataclass
class CaptionData:
    """Validated records, plus how many bad ones were skipped."""

    records: list[CaptionRecord]
    skipped: int
    path: Path

    def captions(self) -> list[str]:
        return [r.caption for r in self.records]


def _data_file(path: Path) -> tuple[Path, str, str]:
    """(jsonl file, image field, images root) for either supported layout."""
    if path.is_dir():
        meta = path / "metadata.jsonl"
        if not meta.is_file():
            raise VPGTransError(f"{path}: a DATA folder must hold metadata.jsonl (datasets imagefolder layout)")
        return meta, "file_name", str(path)
    if not path.is_file():
        raise VPGTransError(f"{path}: DATA not found")
    return path, "image", str(path.parent)


def _caption(row: dict, where: str) -> str:
    caption = row.get("caption")
    if not isinstance(caption, str) or not caption.strip():
        raise VPGTransError(f"{where}: field 'caption' must be a non-empty string, got {caption!r}")
    return caption.strip()


def _check_record(row: dict, image_field: str, root: str, where: str) -> CaptionRecord:
    """The record's fields, and its image decoded in full: a truncated file fails here, not mid-run."""
    caption = _caption(row, where)
    image = row.get(image_field)
    if not isinstance(image, str) or not image:
        raise VPGTransError(f"{where}: field {image_field!r} must be an image path, got {image!r}")
    path = Path(root) / image
    open_rgb(path, where)
    return CaptionRecord(image=path, caption=caption, source=where)


def load_captions(path: str | Path) -> list[str]:
    """DATA's captions alone, images unread: all a converter fit needs (a bad caption still raises)."""
    jsonl, _, _ = _data_file(Path(path))
    return [_caption(row, f"{jsonl}:{number}") for number, row in iter_jsonl(jsonl)]


def load_caption_data(path: str | Path, skip_bad_samples: bool = False) -> CaptionData:
    """Read and validate DATA (every image decoded, on all cores); bad records raise, or are counted
    and skipped."""
    path = Path(path)
    jsonl, image_field, root = _data_file(path)
    rows = list(iter_jsonl(jsonl))  # malformed lines always raise: a file that cannot be parsed is no data

    def check(numbered: tuple[int, dict]) -> CaptionRecord | VPGTransError:
        number, row = numbered
        try:
            return _check_record(row, image_field, root, f"{jsonl}:{number}")
        except VPGTransError as exc:
            return exc

    records, skipped = check_records(rows, check, skip_bad_samples, f"{jsonl}: no usable image-caption pairs")
    return CaptionData(records=records, skipped=skipped, path=path)


def check_records(rows: list, check: Callable, skip_bad_samples: bool, none_left: str) -> tuple[list, int]:
    """(good records, bad ones skipped): `check` (a record, or the VPGTransError naming what is wrong) runs on
    all cores, since PIL decodes without the GIL; the first bad record raises unless skipping."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        checked = list(pool.map(check, rows))
    errors = [c for c in checked if isinstance(c, VPGTransError)]
    if errors and not skip_bad_samples:
        raise errors[0]
    records = [c for c in checked if not isinstance(c, VPGTransError)]
    if not records:
        raise VPGTransError(none_left)
    return records, len(errors)


class CaptionDataset(torch.utils.data.Dataset):
    """Records -> (RGB image, caption), augmented when asked; decoding errors name the record.

    An index past the end (`EpochSampler` passes epoch x size + index) picks the record modulo
    the size and, with it, the augmentation's draw: each epoch crops afresh, reproducibly."""

    def __init__(self, records: list[CaptionRecord], augmentation: Augmentation = Augmentation()):
        self.records, self.augmentation = records, augmentation

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Image.Image, str]:
        record = self.records[index % len(self.records)]
        image = open_rgb(record.image, record.source)
        return (self.augmentation(image, index) if self.augmentation else image), record.caption


@dataclass
class CaptionCollator:
    """Batch = pixel values + [<image> x n, BOS, caption, EOS], right-padded; loss only on the text.

    The BOS token is a target predicted from the last query position, as in BLIP-2. For an
    encoder-decoder LLM (T5) the encoder reads [<image> x n] (+ the tokenizer's closing tokens) and
    the decoder learns the caption, as BLIP-2 FlanT5 does without a prompt.
    """

    tokenizer: PreTrainedTokenizerBase
    image_processor: object
    num_query_tokens: int
    image_token_id: int
    max_text_tokens: int = 32
    encoder_decoder: bool = False

    def text_ids(self, caption: str) -> list[int]:
        ids = self.tokenizer(caption, add_special_tokens=True)["input_ids"]
        if ids[-1:] == [self.tokenizer.eos_token_id]:  # T5's tokenizer closes every text with EOS itself
            ids = ids[:-1]
        return ids[: self.max_text_tokens - 1] + [self.tokenizer.eos_token_id]

    def __call__(self, batch: list[tuple[Image.Image, str]]) -> dict[str, torch.Tensor]:
        images, captions = zip(*batch)
        texts = [self.text_ids(c) for c in captions]
        pixels = self.image_processor(list(images), return_tensors="pt")["pixel_values"]
        if self.encoder_decoder:
            return {"pixel_values": pixels, **self._encoder_decoder(texts)}
        length = self.num_query_tokens + max(len(t) for t in texts)
        input_ids = torch.full((len(texts), length), self.tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        labels = torch.full_like(input_ids, -100)
        n = self.num_query_tokens
        for row, text in enumerate(texts):
            input_ids[row, :n] = self.image_token_id
            input_ids[row, n : n + len(text)] = torch.tensor(text)
            attention[row, : n + len(text)] = 1
            labels[row, n : n + len(text)] = torch.tensor(text)
        check_image_tokens(input_ids, self.image_token_id, n)
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels, "pixel_values": pixels}

    def _encoder_decoder(self, texts: list[list[int]]) -> dict[str, torch.Tensor]:
        prompt = [self.image_token_id] * self.num_query_tokens + self.tokenizer("")["input_ids"]
        input_ids = torch.tensor([prompt] * len(texts))
        labels = torch.full((len(texts), max(len(t) for t in texts)), -100, dtype=torch.long)
        for row, text in enumerate(texts):
            labels[row, : len(text)] = torch.tensor(text)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def check_image_tokens(input_ids: torch.Tensor, image_token_id: int, num_query_tokens: int) -> None:
    """Every row must hold exactly `num_query_tokens` image tokens: transformers silently
    ignores the image (none) or mixes images across the batch (wrong count) otherwise."""
    counts = (input_ids == image_token_id).sum(dim=1)
    bad = (counts != num_query_tokens).nonzero().flatten().tolist()
    if bad:
        raise VPGTransError(
            f"batch rows {bad[:5]} hold {counts[bad[0]].item()} <image> tokens, expected {num_query_tokens}"
        )
