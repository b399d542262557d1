"""Image conversations for stage 3 (instruction tuning): three layouts read into one record type,
every record checked before anything trains, batched with the loss on the assistant's answers only.

- our JSONL: `{"image": path, "messages": [{"role": "user"|"assistant", "content": text}, ...]}` a line;
- LLaVA's JSON: a list of `{"image": path, "conversations": [{"from": "human"|"gpt", "value": text}, ...]}`;
- MiniGPT-4's cc_sbu_align folder: `filter_cap.json` (`{"annotations": [{"image_id", "caption"}]}`) and
  `image/{image_id}.jpg`; each caption answers a description request from MiniGPT-4's list.

An `<image>` in a user turn marks where the image goes; without one, the image opens the first user
turn. Image paths are relative to the file (or folder) that names them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ..chat.template import IMAGE_TOKEN, answer_spans
from ..errors import VPGTransError
from ..io.images import open_rgb
from ..io.jsonl import iter_jsonl
from .data import check_records

# MiniGPT-4's second-stage requests for a detailed description (its prompts/alignment.txt).
DESCRIBE_REQUESTS = (
    "Describe this image in detail.",
    "Take a look at this image and describe what you notice.",
    "Please provide a detailed description of the picture.",
    "Could you describe the contents of this image for me?",
)
LLAVA_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


@dataclass(frozen=True)
class ConversationRecord:
    """One conversation about one image, and where it was declared."""

    image: Path
    messages: tuple[dict, ...]  # role + content (a string, or parts with one {"type": "image"})
    source: str  # "file:line" or "file [record N]", for error messages


@dataclass
class ConversationData:
    """Validated conversations, plus how many bad ones were skipped."""

    records: list[ConversationRecord]
    skipped: int
    path: Path


def _messages(turns: list[tuple[str, object]], has_image: bool, where: str) -> tuple[dict, ...]:
    """Checked messages from (role, text) turns: an optional system turn, then user and assistant
    alternating, ending with an answer; the image placed at its `<image>` or opening the first user turn."""
    if not turns:
        raise VPGTransError(f"{where}: the conversation has no turns")
    messages, placeholders = [], 0
    offset = 1 if turns[0][0] == "system" else 0
    for number, (role, text) in enumerate(turns):
        at = f"{where} turn {number + 1}"
        expected = "system" if number < offset else ("user", "assistant")[(number - offset) % 2]
        if role != expected:
            raise VPGTransError(f"{at}: role {role!r} where {expected!r} belongs (user and assistant alternate)")
        if not isinstance(text, str) or not text.strip():
            what = "an empty answer" if role == "assistant" else "empty text"
            raise VPGTransError(f"{at}: {what} ({text!r}); every turn needs text")
        count = text.count(IMAGE_TOKEN)
        if count and role != "user":
            raise VPGTransError(f"{at}: {IMAGE_TOKEN} in a {role} turn; only a user turn shows an image")
        placeholders += count
        messages.append({"role": role, "content": text.strip()})
    if messages[-1]["role"] != "assistant":
        raise VPGTransError(f"{where}: the conversation ends with a {messages[-1]['role']} turn, not an answer")
    if placeholders > 1:
        raise VPGTransError(f"{where}: {placeholders} {IMAGE_TOKEN} placeholders; a conversation shows one image")
    if not has_image:
        problem = f"a turn shows {IMAGE_TOKEN} but the record names no image" if placeholders else "no image"
        raise VPGTransError(f"{where}: {problem}; stage 3 trains on conversations about an image")
    return tuple(_place_image(messages))


def _place_image(messages: list[dict]) -> list[dict]:
    first_user = next(i for i, m in enumerate(messages) if m["role"] == "user")
    index = next((i for i, m in enumerate(messages) if IMAGE_TOKEN in m["content"]), first_user)
    before, _, after = messages[index]["content"].partition(IMAGE_TOKEN)
    if IMAGE_TOKEN not in messages[index]["content"]:
        before, after = "", messages[index]["content"]
    text = " ".join(part.strip() for part in (before, after) if part.strip())
    parts = [{"type": "image"}] + ([{"type": "text", "text": text}] if text else [])
    return [*messages[:index], {"role": "user", "content": parts}, *messages[index + 1 :]]


def _image_path(row: dict, root: Path, where: str) -> Path | None:
    image = row.get("image")
    if image is None:
        return None
    if not isinstance(image, str) or not image:
        raise VPGTransError(f"{where}: field 'image' must be an image path, got {image!r}")
    return root / image


def _from_jsonl(path: Path) -> list[tuple[str, Path | None, object]]:
    rows = []
    for number, row in iter_jsonl(path):
        where = f"{path}:{number}"
        turns = row.get("messages")
        if not isinstance(turns, list):
            raise VPGTransError(f"{where}: field 'messages' must be a list of {{'role', 'content'}}, got {turns!r}")
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
                raise VPGTransError(f"{where} turn {i + 1}: expected {{'role', 'content'}}, got {turn!r}")
        rows.append((where, _image_path(row, path.parent, where), [(t["role"], t["content"]) for t in turns]))
    return rows


def _from_llava(path: Path) -> list[tuple[str, Path | None, object]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VPGTransError(f"{path}: not a JSON file ({exc})") from exc
    if not isinstance(data, list):
        raise VPGTransError(f"{path}: LLaVA conversations are a JSON list of records, got {type(data).__name__}")
    rows = []
    for number, row in enumerate(data):
        where = f"{path} [record {number}]"
        turns = row.get("conversations") if isinstance(row, dict) else None
        if not isinstance(turns, list):
            raise VPGTransError(f"{where}: field 'conversations' must be a list of {{'from', 'value'}}")
        pairs = []
        for i, turn in enumerate(turns):
            speaker = turn.get("from") if isinstance(turn, dict) else None
            if speaker not in LLAVA_ROLES:
                raise VPGTransError(
                    f"{where} turn {i + 1}: 'from' is {speaker!r}, expected one of {', '.join(LLAVA_ROLES)}"
                )
            pairs.append((LLAVA_ROLES[speaker], turn.get("value")))
        rows.append((where, _image_path(row, path.parent, where), pairs))
    return rows


def _from_cc_sbu_align(folder: Path) -> list[tuple[str, Path | None, object]]:
    path = folder / "filter_cap.json"
    try:
        annotations = json.loads(path.read_text(encoding="utf-8"))["annotations"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise VPGTransError(f"{path}: expected {{'annotations': [{{'image_id', 'caption'}}, ...]}} ({exc})") from exc
    rows = []
    for number, row in enumerate(annotations):
        where = f"{path} [annotation {number}]"
        if not isinstance(row, dict) or not isinstance(row.get("image_id"), (str, int)):
            raise VPGTransError(f"{where}: expected 'image_id' and 'caption', got {row!r}")
        request = DESCRIBE_REQUESTS[number % len(DESCRIBE_REQUESTS)]
        image = folder / "image" / f"{row['image_id']}.jpg"
        rows.append((where, image, [("user", request), ("assistant", row.get("caption"))]))
    return rows


def _rows(path: Path) -> list[tuple[str, Path | None, object]]:
    if path.is_dir():
        if not (path / "filter_cap.json").is_file():
            raise VPGTransError(f"{path}: a conversation folder must hold filter_cap.json (MiniGPT-4's cc_sbu_align)")
        return _from_cc_sbu_align(path)
    if not path.is_file():
        raise VPGTransError(f"{path}: conversation data not found")
    return _from_llava(path) if path.suffix == ".json" else _from_jsonl(path)


def load_conversations(path: str | Path, skip_bad_samples: bool = False) -> ConversationData:
    """Read and check conversation data (every image decoded, on all cores); a bad record raises, or
    is counted and skipped. A file that cannot be parsed always raises."""
    path = Path(path)
    rows = _rows(path)

    def check(row: tuple[str, Path | None, object]) -> ConversationRecord | VPGTransError:
        where, image, turns = row
        try:
            messages = _messages(turns, image is not None, where)
            open_rgb(image, where)
            return ConversationRecord(image=image, messages=messages, source=where)
        except VPGTransError as exc:
            return exc

    records, skipped = check_records(rows, check, skip_bad_samples, f"{path}: no usable conversations")
    return ConversationData(records=records, skipped=skipped, path=path)


class ConversationDataset(torch.utils.data.Dataset):
    """Records -> (images, messages, source); an index past the end wraps (EpochSampler's epochs)."""

    def __init__(self, records: list[ConversationRecord]):
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[list[Image.Image], list[dict], str]:
        record = self.records[index % len(self.records)]
        return [open_rgb(record.image, record.source)], list(record.messages), record.source


def answer_labels(tokenizer, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """(token ids, labels): a token is a target when its characters overlap an answer span."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"]
    labels = [
        token if any(a < end and b > start for start, end in spans) else -100
        for token, (a, b) in zip(ids, encoded["offset_mapping"])
    ]
    return ids, labels


@dataclass
class ConversationCollator:
    """Batch = pixel values of every image + the rendered conversations, right-padded; the loss only on
    the assistant's answers (each with the template's end marker, so the model learns to stop)."""

    processor: object
    num_query_tokens: int
    image_token_id: int
    max_tokens: int = 256

    def __call__(self, batch: list[tuple[list[Image.Image], list[dict], str]]) -> dict[str, torch.Tensor]:
        tokenizer = self.processor.tokenizer
        rows = []
        for images, messages, source in batch:
            text, spans = answer_spans(self.processor, messages)
            ids, labels = answer_labels(tokenizer, text, spans)
            ids, labels = ids[: self.max_tokens], labels[: self.max_tokens]
            if ids.count(self.image_token_id) != self.num_query_tokens * len(images):
                raise VPGTransError(
                    f"{source}: the image does not fit in the first {self.max_tokens} tokens "
                    f"(--max-chat-tokens); raise it or shorten the turns before the image"
                )
            if all(label == -100 for label in labels):
                raise VPGTransError(
                    f"{source}: no answer token within the first {self.max_tokens} tokens (--max-chat-tokens); raise "
                    "it or shorten the turns before the first answer"
                )
            rows.append((ids, labels))
        length = max(len(ids) for ids, _ in rows)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        labels = torch.full_like(input_ids, -100)
        for row, (ids, targets) in enumerate(rows):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
            labels[row, : len(ids)] = torch.tensor(targets)
        images = [image for row_images, _, _ in batch for image in row_images]
        pixels = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels, "input_ids": input_ids, "attention_mask": attention, "labels": labels}
