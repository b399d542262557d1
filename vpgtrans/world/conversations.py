"""Multi-turn conversations about a scene, in the world's grammar: what the chat models learn and are scored on.

Every answer follows from the image alone. A conversation has two to four user turns, each one of:

- a detailed description: "describe the image in detail." -> "there are two objects . a large red
  square on the left and a small blue circle at the bottom" (the count, then the caption);
- a count: "how many objects / red objects / squares are there?" -> "two";
- an attribute of an object picked out uniquely (by its place, or a shape, colour, or colour and shape
  no other object has): "what shape is the object on the left?" -> "a square";
- a follow-up that refers back to the object of the previous answer with "it", asking what the
  conversation has not said about it yet: "what colour is it?" -> "red", "how big is it?" -> "large",
  "where is it?" -> "on the left", "what shape is it?" -> "a square";
- a spatial relation to an object no other shares colour and shape with: "what is left of the red
  square?" -> "the blue circle and the green cross" (objects in a column further left, in reading
  order; likewise a column further right, a row above, a row below) or "nothing";
- existence: "is there a red square?" -> "yes" / "no".

Answers are short and canonical, so a normalised exact match scores a question; a description is scored
by its attribute accuracy (`score_caption`). Each assistant turn has a kind (`KINDS`) that says which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .language import ATTRIBUTES, caption, parse_caption, score_caption
from .scene import Scene, SceneObject, WorldConfig, generate_scene
from .vocabulary import NUMBER_WORDS, PLACE_PHRASES, SHAPE_PLURALS

KINDS = ("description", "count", "attribute", "follow-up", "relation", "existence")
DESCRIBE = "describe the image in detail."
ASK = {  # attribute -> its question about a referring phrase, or about "it" in a follow-up
    "colour": "what colour is {}?",
    "shape": "what shape is {}?",
    "size": "how big is {}?",
    "position": "where is {}?",
}
RELATIONS = {  # question words -> whether `other` stands that way from `ref`
    "left of": lambda other, ref: other.col < ref.col,
    "right of": lambda other, ref: other.col > ref.col,
    "above": lambda other, ref: other.row < ref.row,
    "below": lambda other, ref: other.row > ref.row,
}
FOLLOW_UP_CHANCE = 0.6  # when the previous answer is about one object with something left to ask
_ARTICLES = {"a", "an", "the"}


@dataclass(frozen=True)
class Turn:
    """One question, its canonical answer, and the kind of answer (how to score it)."""

    question: str
    answer: str
    kind: str


@dataclass(frozen=True)
class Focus:
    """The object the last answer was about, and which of its attributes the conversation has named."""

    obj: SceneObject
    known: frozenset[str]


def _count(scene: Scene, **attrs: str) -> int:
    return sum(all(getattr(o, k) == v for k, v in attrs.items()) for o in scene.objects)


def _pick(rng: np.random.Generator, items: list | tuple):
    return items[int(rng.integers(len(items)))]


def _value(obj: SceneObject, attribute: str) -> str:
    """The canonical answer naming one attribute of an object."""
    return {
        "colour": obj.colour,
        "shape": f"a {obj.shape}",
        "size": obj.size,
        "position": PLACE_PHRASES[obj.position],
    }[attribute]


def _name(obj: SceneObject) -> str:
    return f"the {obj.colour} {obj.shape}"


def _unique(scene: Scene) -> list[SceneObject]:
    """Objects that no other object shares colour and shape with: "the red square" names them."""
    return [o for o in scene.objects if _count(scene, colour=o.colour, shape=o.shape) == 1]


def _references(scene: Scene, obj: SceneObject) -> list[tuple[str, frozenset[str]]]:
    """Phrases that pick out `obj` alone, with the attributes each one names."""
    refs = [(f"the object {PLACE_PHRASES[obj.position]}", frozenset({"position"}))]
    if _count(scene, shape=obj.shape) == 1:
        refs.append((f"the {obj.shape}", frozenset({"shape"})))
    if _count(scene, colour=obj.colour) == 1:
        refs.append((f"the {obj.colour} object", frozenset({"colour"})))
    if _count(scene, colour=obj.colour, shape=obj.shape) == 1:
        refs.append((_name(obj), frozenset({"colour", "shape"})))
    return refs


def description(scene: Scene) -> str:
    """The detailed description: how many objects, then the caption."""
    n = len(scene.objects)
    return f"there {'is' if n == 1 else 'are'} {NUMBER_WORDS[n]} object{'' if n == 1 else 's'} . {caption(scene)}"


def _describe(scene: Scene, rng: np.random.Generator, config: WorldConfig) -> tuple[Turn, Focus | None]:
    return Turn(DESCRIBE, description(scene), "description"), None


def _how_many(scene: Scene, rng: np.random.Generator, config: WorldConfig) -> tuple[Turn, Focus | None]:
    """Objects, objects of a colour or of a shape; a count of one puts that object in focus."""
    which = int(rng.integers(3))
    if which == 0:
        question, attrs = "how many objects are there?", {}
    elif which == 1:
        colour = _pick(rng, config.colours)
        question, attrs = f"how many {colour} objects are there?", {"colour": colour}
    else:
        shape = _pick(rng, config.shapes)
        question, attrs = f"how many {SHAPE_PLURALS[shape]} are there?", {"shape": shape}
    matches = [o for o in scene.objects if all(getattr(o, k) == v for k, v in attrs.items())]
    focus = Focus(matches[0], frozenset(attrs)) if len(matches) == 1 else None
    return Turn(question, NUMBER_WORDS[len(matches)], "count"), focus


def _attribute(scene: Scene, rng: np.random.Generator, config: WorldConfig) -> tuple[Turn, Focus | None]:
    """An attribute the referring phrase does not already give away."""
    obj = _pick(rng, scene.objects)
    ref, named = _pick(rng, _references(scene, obj))
    attribute = _pick(rng, [a for a in ATTRIBUTES if a not in named])
    return Turn(ASK[attribute].format(ref), _value(obj, attribute), "attribute"), Focus(obj, named | {attribute})


def _relation(scene: Scene, rng: np.random.Generator, config: WorldConfig) -> tuple[Turn, Focus | None]:
    """What stands left of / right of / above / below an object named by colour and shape."""
    ref = _pick(rng, _unique(scene))
    words = _pick(rng, list(RELATIONS))
    found = [o for o in scene.objects if RELATIONS[words](o, ref)]
    answer = " and ".join(_name(o) for o in found) or "nothing"
    focus = Focus(found[0], frozenset({"colour", "shape"})) if len(found) == 1 else None
    return Turn(f"what is {words} {_name(ref)}?", answer, "relation"), focus


def _existence(scene: Scene, rng: np.random.Generator, config: WorldConfig) -> tuple[Turn, Focus | None]:
    """A colour and shape present or absent, half and half; a unique present one comes into focus."""
    absent = [(c, s) for c in config.colours for s in config.shapes if not _count(scene, colour=c, shape=s)]
    if absent and rng.random() < 0.5:
        colour, shape = _pick(rng, absent)
        return Turn(f"is there a {colour} {shape}?", "no", "existence"), None
    obj = _pick(rng, scene.objects)
    unique = _count(scene, colour=obj.colour, shape=obj.shape) == 1
    focus = Focus(obj, frozenset({"colour", "shape"})) if unique else None
    return Turn(f"is there a {obj.colour} {obj.shape}?", "yes", "existence"), focus


def _follow_up(focus: Focus, rng: np.random.Generator) -> tuple[Turn, Focus]:
    attribute = _pick(rng, [a for a in ATTRIBUTES if a not in focus.known])
    turn = Turn(ASK[attribute].format("it"), _value(focus.obj, attribute), "follow-up")
    return turn, Focus(focus.obj, focus.known | {attribute})


def _fresh(scene: Scene, rng: np.random.Generator, config: WorldConfig, asked: list[Turn]) -> tuple[Turn, Focus | None]:
    """A new question (or the description, at most once and twice as likely), not asked before if avoidable."""
    makers = [_how_many, _attribute, _existence]
    if _unique(scene):
        makers.append(_relation)
    if all(t.kind != "description" for t in asked):
        makers += [_describe, _describe]
    questions = {t.question for t in asked}
    for _ in range(8):
        turn, focus = _pick(rng, makers)(scene, rng, config)
        if turn.question not in questions:
            break
    return turn, focus


def conversation_turns(scene: Scene, rng: np.random.Generator, config: WorldConfig = WorldConfig()) -> list[Turn]:
    """Two to four turns about the scene; a follow-up is likely whenever the last answer was about one object."""
    turns: list[Turn] = []
    focus: Focus | None = None
    for _ in range(int(rng.integers(2, 5))):
        can_follow = focus is not None and len(focus.known) < len(ATTRIBUTES)
        if can_follow and rng.random() < FOLLOW_UP_CHANCE:
            turn, focus = _follow_up(focus, rng)
        else:
            turn, focus = _fresh(scene, rng, config, turns)
        turns.append(turn)
    return turns


def to_messages(turns: list[Turn], context: str = "") -> list[dict]:
    """User/assistant messages; `context` (the scene as text, for a text-only LM) opens the first user turn
    on a line of its own. Without it the image belongs at the start of the first user turn."""
    messages = []
    for i, turn in enumerate(turns):
        question = f"{context}\n{turn.question}" if context and i == 0 else turn.question
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": turn.answer}]
    return messages


def conversation(scene: Scene, rng: np.random.Generator, config: WorldConfig = WorldConfig()) -> list[dict]:
    """The messages of one conversation about the scene's image (kinds: `conversation_turns`)."""
    return to_messages(conversation_turns(scene, rng, config))


def dialogue_turns(n: int, seed: int, config: WorldConfig = WorldConfig()) -> list[tuple[str, list[Turn]]]:
    """n (caption, turns) pairs: conversations whose scene is given as text, for a text-only chat LM."""
    rng = np.random.default_rng(seed)
    dialogues = []
    for _ in range(n):
        scene = generate_scene(rng, config)
        dialogues.append((caption(scene), conversation_turns(scene, rng, config)))
    return dialogues


def dialogue_texts(n: int, seed: int, config: WorldConfig = WorldConfig()) -> list[list[dict]]:
    """The chat LM's corpus: conversations whose first user turn gives the scene's caption, a newline, then
    the question, so a text-only LM learns to answer from its context (as a VPG's soft prompt asks it to)."""
    return [to_messages(turns, context) for context, turns in dialogue_turns(n, seed, config)]


# ---------------------------------------------------------------- scoring


def normalise_answer(text: str) -> str:
    """Lowercase words without punctuation or articles; digits as the world's number words."""
    words = [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _ARTICLES]
    return " ".join(NUMBER_WORDS[int(w)] if w.isdigit() and int(w) < len(NUMBER_WORDS) else w for w in words)


def described_scene(text: str) -> Scene:
    """The objects a description states: what `score_caption` checks a predicted description against."""
    return Scene(tuple(SceneObject(m.colour, m.shape, m.size, m.position, 0, 0) for m in parse_caption(text)))


def score_answer(predicted: str, gold: str, kind: str) -> float:
    """Score in [0, 1]: attribute accuracy for a description, normalised exact match for a question."""
    if kind not in KINDS:
        raise ValueError(f"unknown turn kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "description":
        return score_caption(predicted, described_scene(gold))
    return float(normalise_answer(predicted) == normalise_answer(gold))
