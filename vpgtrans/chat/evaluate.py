"""Chat evaluation on the miniature world's conversations (a world folder's conversations.jsonl).

Every assistant turn is generated from the image and the gold history before it (teacher forcing: a
wrong answer early does not spoil the turns after it), greedily, and scored by its kind: a
description by attribute accuracy, a question by normalised exact match (`world.score_answer`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..errors import VPGTransError
from ..io.images import open_rgb
from ..io.jsonl import iter_jsonl
from ..world import KINDS, score_answer
from .config import ChatSettings
from .session import ChatModel

# Greedy; a world description is about 40 toy-tokenizer tokens.
EVAL_SETTINGS = ChatSettings(max_new_tokens=64)


@dataclass(frozen=True)
class TurnPrediction:
    """One generated answer and its score in [0, 1]."""

    conversation: int  # line of the conversation in the file, from 0
    turn: int  # assistant turn within the conversation, from 0
    image: str  # as conversations.jsonl names it ("" for a dialogue given as text)
    kind: str
    question: str
    gold: str
    predicted: str
    score: float


@dataclass(frozen=True)
class WorldConversation:
    """A conversations.jsonl line: the image, plain-text messages, and the kind of each answer."""

    image: Path
    name: str  # as the file gives it
    messages: list[dict]
    kinds: list[str]


def _checked(row: dict, folder: Path, where: str) -> WorldConversation:
    """A line with an image, user/assistant messages, and a known kind for every answer."""
    messages, kinds = row.get("messages"), row.get("kinds")
    if not isinstance(row.get("image"), str) or not isinstance(messages, list) or not isinstance(kinds, list):
        raise VPGTransError(f"{where}: expected {{'image', 'messages', 'kinds'}} (write it with world.write_dataset)")
    answers = sum(isinstance(m, dict) and m.get("role") == "assistant" for m in messages)
    if answers != len(kinds) or not set(kinds) <= set(KINDS):
        raise VPGTransError(f"{where}: {len(kinds)} kinds for {answers} answers, or a kind not in {', '.join(KINDS)}")
    return WorldConversation(folder / row["image"], row["image"], messages, kinds)


def read_conversations(folder: str | Path, limit: int | None = None) -> list[WorldConversation]:
    """The first `limit` (all by default) conversations of FOLDER/conversations.jsonl."""
    path = Path(folder) / "conversations.jsonl"
    if not path.is_file():
        raise VPGTransError(f"{path} not found; world folders written by world.write_dataset hold one")
    rows = []
    for number, row in iter_jsonl(path):
        if limit is not None and len(rows) >= limit:
            break
        rows.append(_checked(row, Path(folder), f"{path}:{number}"))
    return rows


def _with_image(messages: list[dict]) -> list[dict]:
    """The messages with the image opening the first user turn, as the chat template expects it."""
    first = messages[0]
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": first["content"]}]}, *messages[1:]]


def predict_turns(
    chat: ChatModel, folder: str | Path, limit: int | None = None, settings: ChatSettings = EVAL_SETTINGS
) -> list[TurnPrediction]:
    """Every assistant turn of the first `limit` conversations, answered from the image and the gold history."""
    predictions = []
    for number, record in enumerate(read_conversations(folder, limit)):
        image = open_rgb(record.image, record.name)
        messages = _with_image(record.messages)
        answers = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        for turn, (index, kind) in enumerate(zip(answers, record.kinds, strict=True)):
            reply = chat.answer(messages[:index], [image], settings)
            gold = messages[index]["content"]
            question = record.messages[index - 1]["content"]
            score = score_answer(reply.text, gold, kind)
            predictions.append(TurnPrediction(number, turn, record.name, kind, question, gold, reply.text, score))
    return predictions


def _percent(scores: list[float]) -> float | None:
    return 100 * sum(scores) / len(scores) if scores else None


def summarise(predictions: list[TurnPrediction]) -> dict:
    """Answer accuracy over question turns and attribute accuracy over description turns (percent; None
    without such turns), how many turns and conversations, and the accuracy of each kind."""
    by_kind: dict[str, list[float]] = defaultdict(list)
    for prediction in predictions:
        by_kind[prediction.kind].append(prediction.score)
    questions = [score for kind, scores in by_kind.items() if kind != "description" for score in scores]
    return {
        "answer_accuracy": _percent(questions),
        "description_accuracy": _percent(by_kind["description"]),
        "turns": len(predictions),
        "conversations": len({p.conversation for p in predictions}),
        "accuracy_by_kind": {kind: _percent(by_kind[kind]) for kind in KINDS if by_kind[kind]},
    }


def conversation_scores(
    chat: ChatModel, folder: str | Path, limit: int | None = None, settings: ChatSettings = EVAL_SETTINGS
) -> dict:
    """How well the chat model converses about the world folder's images (see `summarise`)."""
    return summarise(predict_turns(chat, folder, limit, settings))
