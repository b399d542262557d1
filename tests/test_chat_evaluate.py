"""Chat evaluation on world conversations: every turn answered from the image and the gold history, scored by
its kind; a perfect answerer scores 100, a wrong one 0, a real (random) model runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vpgtrans.chat.config import ChatSettings
from vpgtrans.chat.evaluate import conversation_scores, predict_turns, read_conversations, summarise
from vpgtrans.chat.session import ChatModel, Reply
from vpgtrans.errors import VPGTransError
from vpgtrans.io.images import open_rgb
from vpgtrans.world import KINDS, write_dataset

RESULT_KEYS = {"answer_accuracy", "description_accuracy", "turns", "conversations", "accuracy_by_kind"}


@pytest.fixture(scope="module")
def world_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("world")
    write_dataset(folder, 40, seed=7)
    return folder


def _text(content) -> str:
    return content if isinstance(content, str) else " ".join(p["text"] for p in content if p["type"] == "text")


class Scripted:
    """Answers from the file's own conversations, knowing an image by its pixels: the gold answer (or a wrong
    one) after the gold history, and nothing after any other history."""

    def __init__(self, folder: Path, wrong: bool = False):
        self.wrong, self.asked = wrong, 0
        self.gold = {}
        for record in read_conversations(folder):
            pixels = open_rgb(record.image).tobytes()
            for i, message in enumerate(record.messages):
                if message["role"] == "assistant":
                    history = tuple((m["role"], m["content"]) for m in record.messages[:i])
                    self.gold[pixels, history] = message["content"]

    def answer(self, messages: list[dict], images: list, settings: ChatSettings) -> Reply:
        assert len(images) == 1 and messages[0]["content"][0] == {"type": "image"} and messages[-1]["role"] == "user"
        history = tuple((m["role"], _text(m["content"])) for m in messages)
        gold = self.gold[images[0].tobytes(), history]  # KeyError unless image and history are the gold ones
        self.asked += 1
        return Reply("" if self.wrong else gold, prompt_tokens=0, new_tokens=0)


@pytest.fixture
def scripted(world_folder) -> Scripted:
    return Scripted(world_folder)


def test_a_perfect_answerer_scores_100_on_every_kind(world_folder, scripted):
    scores = conversation_scores(scripted, world_folder)
    assert set(scores) == RESULT_KEYS
    assert scores["answer_accuracy"] == scores["description_accuracy"] == 100.0
    assert set(scores["accuracy_by_kind"]) == set(KINDS)  # 40 conversations hold every kind
    assert all(value == 100.0 for value in scores["accuracy_by_kind"].values())
    lines = [json.loads(line) for line in (world_folder / "conversations.jsonl").open()]
    assert scores["conversations"] == 40 and scores["turns"] == sum(len(r["kinds"]) for r in lines) == scripted.asked


def test_a_wrong_answerer_scores_0_with_the_gold_history(world_folder, scripted):
    scripted.wrong = True
    predictions = predict_turns(scripted, world_folder, limit=5)
    assert {p.conversation for p in predictions} == set(range(5))  # every history it saw was the gold one
    scores = summarise(predictions)
    assert scores["answer_accuracy"] == scores["description_accuracy"] == 0.0
    assert all(value == 0.0 for value in scores["accuracy_by_kind"].values())
    first = predictions[0]
    record = read_conversations(world_folder, limit=1)[0]
    assert (first.question, first.gold, first.kind) == (
        record.messages[0]["content"],
        record.messages[1]["content"],
        record.kinds[0],
    )


def test_summary_of_no_descriptions_says_none():
    scores = summarise([])
    assert scores["answer_accuracy"] is None and scores["description_accuracy"] is None
    assert scores["turns"] == scores["conversations"] == 0 and scores["accuracy_by_kind"] == {}


def test_a_real_chat_model_end_to_end(chat_model, zoo):
    """Random weights: the answers are noise, the scores are well-formed."""
    chat = ChatModel.load(str(chat_model))
    folder = zoo.data.parent  # the test zoo's world folder, conversations.jsonl included
    scores = conversation_scores(chat, folder, limit=2, settings=ChatSettings(max_new_tokens=6))
    assert set(scores) == RESULT_KEYS and scores["conversations"] == 2
    assert scores["turns"] == sum(len(r.kinds) for r in read_conversations(folder, limit=2))
    for value in [scores["answer_accuracy"], scores["description_accuracy"], *scores["accuracy_by_kind"].values()]:
        assert value is None or 0.0 <= value <= 100.0


def test_a_bad_conversations_file_is_named(tmp_path):
    with pytest.raises(VPGTransError, match="conversations.jsonl not found"):
        read_conversations(tmp_path)
    row = {"image": "images/000000.png", "messages": [{"role": "user", "content": "hi"}], "kinds": ["count"]}
    (tmp_path / "conversations.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(VPGTransError, match=r"conversations.jsonl:1: 1 kinds for 0 answers"):
        read_conversations(tmp_path)
