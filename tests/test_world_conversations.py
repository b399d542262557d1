"""World conversations: deterministic, every answer right for the scene (checked by an independent oracle),
follow-ups about the previous answer's object, written beside the other world files without changing them."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter

import numpy as np
import pytest

from vpgtrans.world import (
    KINDS,
    NUMBER_WORDS,
    PLACE_PHRASES,
    SHAPE_PLURALS,
    VOCABULARY,
    Scene,
    SceneObject,
    caption,
    conversation,
    conversation_turns,
    dialogue_texts,
    dialogue_turns,
    generate_scene,
    load_scenes,
    normalise_answer,
    score_answer,
    score_caption,
    tokenize_words,
    write_dataset,
)

PLACES = {phrase: position for position, phrase in PLACE_PHRASES.items()}
PLURALS = {plural: shape for shape, plural in SHAPE_PLURALS.items()}
ASKED = {"what colour": "colour", "what shape": "shape", "how big": "size", "where": "position"}
NEW_WORDS = {"describe", "image", "detail", "there", "it", "where", "big", "nothing", "the", "right", "below"}


def scenes(seed: int, n: int) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [generate_scene(rng) for _ in range(n)]


class Oracle:
    """Answers a conversation's questions from the scene alone, in order, resolving "it" to the object the
    previous answer was about, and tracks which attributes of that object the conversation has named."""

    def __init__(self, scene: Scene):
        self.scene = scene
        self.focus: SceneObject | None = None
        self.known: set[str] = set()

    def matching(self, **attrs: str) -> list[SceneObject]:
        return [o for o in self.scene.objects if all(getattr(o, k) == v for k, v in attrs.items())]

    def the(self, **attrs: str) -> SceneObject:
        (match,) = self.matching(**attrs)  # a referring phrase must pick out exactly one object
        return match

    def referent(self, phrase: str) -> tuple[SceneObject, set[str]]:
        if phrase == "it":
            assert self.focus is not None, "'it' with no object in focus"
            return self.focus, self.known
        if match := re.fullmatch(r"the object (.+)", phrase):
            return self.the(position=PLACES[match[1]]), {"position"}
        words = phrase.split()
        if len(words) == 3 and words[2] == "object":
            return self.the(colour=words[1]), {"colour"}
        if len(words) == 3:
            return self.the(colour=words[1], shape=words[2]), {"colour", "shape"}
        return self.the(shape=words[1]), {"shape"}

    def answer(self, question: str) -> str:
        focus, known, answer = self.respond(question)
        self.focus, self.known = focus, known
        return answer

    def respond(self, question: str) -> tuple[SceneObject | None, set[str], str]:
        objects = self.scene.objects
        if question == "describe the image in detail.":
            n = len(objects)
            listed = " and ".join(f"a {o.size} {o.colour} {o.shape} {PLACE_PHRASES[o.position]}" for o in objects)
            verb, noun = ("is", "object") if n == 1 else ("are", "objects")
            return None, set(), f"there {verb} {NUMBER_WORDS[n]} {noun} . {listed}"
        if match := re.fullmatch(r"how many (?:(\w+) )?(objects|\w+) are there\?", question):
            attrs = {"colour": match[1]} if match[1] else {}
            if match[2] != "objects":
                attrs = {"shape": PLURALS[match[2]]}
            found = self.matching(**attrs)
            return (found[0] if len(found) == 1 else None), set(attrs), NUMBER_WORDS[len(found)]
        if match := re.fullmatch(r"(what colour|what shape|how big|where) is (.+)\?", question):
            obj, named = self.referent(match[2])
            attribute = ASKED[match[1]]
            assert attribute not in named, f"{question!r} asks what the conversation already said"
            value = {
                "colour": obj.colour,
                "shape": f"a {obj.shape}",
                "size": obj.size,
                "position": PLACE_PHRASES[obj.position],
            }[attribute]
            return obj, named | {attribute}, value
        if match := re.fullmatch(r"what is (left of|right of|above|below) the (\w+) (\w+)\?", question):
            ref = self.the(colour=match[2], shape=match[3])
            test = {
                "left of": lambda o: o.col < ref.col,
                "right of": lambda o: o.col > ref.col,
                "above": lambda o: o.row < ref.row,
                "below": lambda o: o.row > ref.row,
            }[match[1]]
            found = [o for o in objects if test(o)]
            answer = " and ".join(f"the {o.colour} {o.shape}" for o in found) or "nothing"
            return (found[0] if len(found) == 1 else None), {"colour", "shape"}, answer
        if match := re.fullmatch(r"is there a (\w+) (\w+)\?", question):
            found = self.matching(colour=match[1], shape=match[2])
            return (found[0] if len(found) == 1 else None), {"colour", "shape"}, "yes" if found else "no"
        raise AssertionError(f"unknown question {question!r}")


def test_same_rng_same_conversation_and_corpora_differ_by_seed() -> None:
    for scene in scenes(1, 20):
        first = conversation(scene, np.random.default_rng(5))
        assert first == conversation(scene, np.random.default_rng(5))
    assert dialogue_texts(30, seed=2) == dialogue_texts(30, seed=2)
    assert dialogue_texts(30, seed=2) != dialogue_texts(30, seed=3)


def test_every_answer_is_right_for_the_scene() -> None:
    rng = np.random.default_rng(0)
    kinds, firsts, lengths = Counter(), Counter(), Counter()
    for scene in scenes(11, 400):
        turns = conversation_turns(scene, rng)
        oracle = Oracle(scene)
        for turn in turns:
            assert turn.kind in KINDS
            assert oracle.answer(turn.question) == turn.answer, (caption(scene), turn)
        kinds.update(t.kind for t in turns)
        firsts[turns[0].kind] += 1
        lengths[len(turns)] += 1
    assert set(kinds) == set(KINDS)
    assert set(lengths) == {2, 3, 4}
    assert firsts["description"] and sum(firsts.values()) > firsts["description"]  # the opening varies


def test_follow_ups_refer_to_the_previous_answers_object() -> None:
    rng = np.random.default_rng(1)
    follow_ups = 0
    for scene in scenes(12, 300):
        turns = conversation_turns(scene, rng)
        oracle = Oracle(scene)
        for turn in turns:
            if turn.kind == "follow-up":
                assert turn.question.endswith(" it?")
                before = oracle.focus  # set by the previous answer; None would make the oracle fail
                assert before is not None
                oracle.answer(turn.question)
                assert oracle.focus is before  # still about the same object
                follow_ups += 1
            else:
                assert " it?" not in turn.question
                oracle.answer(turn.question)
    assert follow_ups > 50


def test_messages_alternate_in_the_worlds_words() -> None:
    rng = np.random.default_rng(2)
    for scene in scenes(13, 200):
        messages = conversation(scene, rng)
        assert [m["role"] for m in messages] == ["user", "assistant"] * (len(messages) // 2)
        for message in messages:
            assert set(message) == {"role", "content"} and "<image>" not in message["content"]
            assert set(tokenize_words(message["content"])) <= set(VOCABULARY) | NEW_WORDS


def test_dialogue_texts_give_the_scene_as_text_first() -> None:
    dialogues = dialogue_turns(60, seed=4)
    for (context, turns), messages in zip(dialogues, dialogue_texts(60, seed=4), strict=True):
        flat = [text for turn in turns for text in (turn.question, turn.answer)]
        assert [m["content"] for m in messages] == [f"{context}\n{flat[0]}", *flat[1:]]
        oracle = Oracle(scene_of(context))  # the caption alone answers every question
        assert [oracle.answer(turn.question) for turn in turns] == [turn.answer for turn in turns]


def scene_of(text: str) -> Scene:
    """The scene a caption names (boxes are not needed to answer)."""
    mentions = [words.split(" ", 3) for words in text.removeprefix("a ").split(" and a ")]
    return Scene(tuple(SceneObject(c, s, z, PLACES[p], 0, 0) for z, c, s, p in mentions))


@pytest.mark.parametrize(
    "predicted, gold, kind, score",
    [
        ("a square", "a square", "attribute", 1.0),
        ("Square.", "a square", "follow-up", 1.0),
        ("2", "two", "count", 1.0),
        ("the blue circle and the red cross", "the blue circle and the red cross", "relation", 1.0),
        ("the red cross and the blue circle", "the blue circle and the red cross", "relation", 0.0),
        ("yes", "no", "existence", 0.0),
        ("a circle", "a square", "attribute", 0.0),
        ("", "nothing", "relation", 0.0),
    ],
)
def test_score_answer_by_normalised_exact_match(predicted: str, gold: str, kind: str, score: float) -> None:
    assert score_answer(predicted, gold, kind) == score


def test_score_answer_scores_descriptions_by_attributes() -> None:
    rng = np.random.default_rng(3)
    for scene in scenes(14, 100):
        gold = Oracle(scene).answer("describe the image in detail.")
        assert score_answer(gold, gold, "description") == 1.0
        other = caption(generate_scene(rng))
        assert score_answer(other, gold, "description") == pytest.approx(score_caption(other, scene))
    assert score_answer("", "there is one object . a small red square on the left", "description") == 0.0
    assert normalise_answer("The Red Square!") == "red square"
    with pytest.raises(ValueError, match="unknown turn kind"):
        score_answer("yes", "yes", "question")


# sha256 of the files write_dataset(n=20, seed=3) wrote before conversations existed
BEFORE = {
    "captions.jsonl": "0bafb54158a5f07c6394d2cb194eb073689065a08c28ae9ee25cc53327e14686",
    "qa.jsonl": "275f93b36eccde055cb4e26e7098af13e0d5d0317b6c76edfdeb07581ed7a8db",
    "scenes.jsonl": "8395ed9d5eb044acb1088427a30bd8a7a9d58e48e62dfc9b72febbcb72a947eb",
}


def test_write_dataset_adds_conversations_and_keeps_the_other_files(tmp_path) -> None:
    write_dataset(tmp_path / "full", 20, seed=3)
    for name, digest in BEFORE.items():
        assert hashlib.sha256((tmp_path / "full" / name).read_bytes()).hexdigest() == digest, name
    rows = [json.loads(line) for line in (tmp_path / "full" / "conversations.jsonl").open()]
    truth = [json.loads(line) for line in (tmp_path / "full" / "scenes.jsonl").open()]
    assert [r["image"] for r in rows] == [t["image"] for t in truth] == [f"images/{i:06d}.png" for i in range(20)]
    for row, scene in zip(rows, load_scenes(tmp_path / "full" / "scenes.jsonl"), strict=True):
        assert set(row) == {"image", "messages", "kinds"}
        assert all(set(m) == {"role", "content"} for m in row["messages"])
        answers = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        assert len(row["kinds"]) == len(answers) and set(row["kinds"]) <= set(KINDS)
        oracle = Oracle(scene)
        questions = [m["content"] for m in row["messages"] if m["role"] == "user"]
        assert [oracle.answer(q) for q in questions] == answers
    # image i's conversation depends on (seed, i) alone: a smaller dataset is a prefix
    write_dataset(tmp_path / "small", 6, seed=3, layout="imagefolder")
    assert (tmp_path / "small" / "conversations.jsonl").read_text().splitlines() == [json.dumps(r) for r in rows[:6]]


def test_conversations_file_is_valid_input_for_the_conversation_reader(tmp_path) -> None:
    from vpgtrans.training.conversations import load_conversations

    write_dataset(tmp_path, 8, seed=5)
    data = load_conversations(tmp_path / "conversations.jsonl")
    assert len(data.records) == 8 and data.skipped == 0
    first = data.records[0]
    assert first.image == tmp_path / "images" / "000000.png"
    assert first.messages[0]["content"][0] == {"type": "image"}  # the image opens the first user turn
