"""The world's language: canonical captions and questions, and the caption scorer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene import Scene, SceneObject, WorldConfig
from .vocabulary import COLOURS, NUMBER_WORDS, PLACE_PHRASES, SHAPE_PLURALS, SHAPES, SIZES, tokenize_words


def describe(obj: SceneObject) -> str:
    """Canonical noun phrase for one object, e.g. "a large red square on the left"."""
    return f"a {obj.size} {obj.colour} {obj.shape} {PLACE_PHRASES[obj.position]}"


def caption(scene: Scene) -> str:
    """Canonical caption: every object in reading order, joined by "and"."""
    return " and ".join(describe(obj) for obj in scene.objects)


def _count_of(objects: tuple[SceneObject, ...], **attrs: str) -> int:
    """How many objects have all the given attribute values."""
    return sum(all(getattr(o, k) == v for k, v in attrs.items()) for o in objects)


def questions(scene: Scene, rng: np.random.Generator, config: WorldConfig = WorldConfig()) -> list[tuple[str, str]]:
    """Question/answer pairs with one-word answers, each answerable from the image alone.

    Objects are only referred to by descriptions that pick out exactly one of them (their
    grid cell, a unique shape, a unique colour or a unique colour + shape), and spatial
    relations are only asked between objects in different columns or rows.  `rng` picks
    the absent things asked about and the order of relation questions.
    """
    objs = scene.objects
    qa: list[tuple[str, str]] = [("how many objects are there?", NUMBER_WORDS[len(objs)])]
    for obj in objs:
        place = PLACE_PHRASES[obj.position]
        qa.append((f"what colour is the object {place}?", obj.colour))
        qa.append((f"what shape is {place}?", obj.shape))
        if _count_of(objs, shape=obj.shape) == 1:
            qa.append((f"what colour is the {obj.shape}?", obj.colour))
        if _count_of(objs, colour=obj.colour) == 1:
            qa.append((f"what shape is the {obj.colour} object?", obj.shape))
        if _count_of(objs, colour=obj.colour, shape=obj.shape) == 1:
            qa.append((f"what size is the {obj.colour} {obj.shape}?", obj.size))

    colour = config.colours[int(rng.integers(len(config.colours)))]
    qa.append((f"how many {colour} objects are there?", NUMBER_WORDS[_count_of(objs, colour=colour)]))
    shape = config.shapes[int(rng.integers(len(config.shapes)))]
    qa.append((f"how many {SHAPE_PLURALS[shape]} are there?", NUMBER_WORDS[_count_of(objs, shape=shape)]))

    present = objs[int(rng.integers(len(objs)))]
    qa.append((f"is there a {present.colour} {present.shape}?", "yes"))
    absent = [(c, s) for c in config.colours for s in config.shapes if not _count_of(objs, colour=c, shape=s)]
    if absent:
        colour, shape = absent[int(rng.integers(len(absent)))]
        qa.append((f"is there a {colour} {shape}?", "no"))

    unique = [o for o in objs if _count_of(objs, colour=o.colour, shape=o.shape) == 1]
    for i, first in enumerate(unique):
        for second in unique[i + 1 :]:
            a, b = (first, second) if rng.random() < 0.5 else (second, first)
            names = f"the {a.colour} {a.shape}", f"the {b.colour} {b.shape}"
            if a.col != b.col:
                qa.append((f"is {names[0]} left of {names[1]}?", "yes" if a.col < b.col else "no"))
            if a.row != b.row:
                qa.append((f"is {names[0]} above {names[1]}?", "yes" if a.row < b.row else "no"))
    return qa


# ---------------------------------------------------------------- caption scoring


@dataclass
class Mention:
    """Attributes a caption gives one object; None where the caption says nothing."""

    colour: str | None = None
    shape: str | None = None
    size: str | None = None
    position: str | None = None

    @property
    def described(self) -> bool:
        """Whether the mention says what the object is, not just where it is."""
        return any((self.colour, self.shape, self.size))


_SYNONYMS = {"big": "large", "little": "small", "tiny": "small", "centre": "center", "middle": "center"}
_SEPARATORS = {"and", "a", "an", ",", ".", ";"}


def _mention(words: list[str]) -> Mention:
    """Read the attribute words of one mention, in any order; other words are ignored."""
    words = [_SYNONYMS.get(w, w) for w in words]
    found = {
        kind: [w for w in words if w in vocab]
        for kind, vocab in (
            ("colour", COLOURS),
            ("shape", SHAPES),
            ("size", SIZES),
            ("vertical", ("top", "bottom")),
            ("horizontal", ("left", "right")),
        )
    }
    last = {kind: hits[-1] if hits else None for kind, hits in found.items()}
    place = " ".join(w for w in (last["vertical"], last["horizontal"]) if w)
    return Mention(last["colour"], last["shape"], last["size"], place or ("center" if "center" in words else None))


def parse_caption(text: str) -> list[Mention]:
    """Split a caption into object mentions.

    Mentions are separated by "and", the articles "a"/"an" and punctuation; word order
    inside a mention is free. A stretch that only names a place ("on the left , a red
    square") goes to the neighbouring mention that has no place.
    """
    chunks: list[list[str]] = [[]]
    for word in tokenize_words(text.lower()):
        if word in _SEPARATORS:
            chunks.append([])
        else:
            chunks[-1].append(word)
    mentions: list[Mention] = []
    pending_place: str | None = None
    for mention in map(_mention, chunks):
        if mention.described:
            mention.position = mention.position or pending_place
            mentions.append(mention)
            pending_place = None
        elif mention.position and mentions and mentions[-1].position is None:
            mentions[-1].position = mention.position
        elif mention.position:
            pending_place = mention.position
    return mentions


ATTRIBUTES = ("colour", "shape", "size", "position")


def attribute_hits(predicted: str, scene: Scene) -> tuple[dict[str, int], int]:
    """(correct attributes of each kind, objects counted) of a predicted caption against a scene.

    Mentions are matched one-to-one to objects so as to maximise correct attributes.
    The count is the number of objects, or of mentions when the caption mentions more
    objects than the scene holds: hallucinated objects then cost as much as missing ones.
    """
    mentions = parse_caption(predicted)
    objects = scene.objects
    gains = [[[getattr(m, k) == getattr(o, k) for k in ATTRIBUTES] for o in objects] for m in mentions]
    # Dynamic programme over mentions; state = bitmask of objects already matched,
    # value = (correct attributes, correct attributes of each kind).
    best: dict[int, tuple[int, tuple[int, ...]]] = {0: (0, (0,) * len(ATTRIBUTES))}
    for row in gains:
        step = dict(best)
        for used, (score, kinds) in best.items():
            for j, hits in enumerate(row):
                if any(hits) and not used >> j & 1:
                    key = used | 1 << j
                    candidate = (score + sum(hits), tuple(a + b for a, b in zip(kinds, hits)))
                    step[key] = max(step.get(key, candidate), candidate)
        best = step
    kinds = max(best.values())[1]
    return dict(zip(ATTRIBUTES, kinds)), max(len(objects), len(mentions))


def caption_attribute_hits(predicted: str, scene: Scene) -> tuple[int, int]:
    """(correct attributes, total attributes) of a predicted caption against a scene: 4 per
    object counted by `attribute_hits`."""
    kinds, counted = attribute_hits(predicted, scene)
    return sum(kinds.values()), len(ATTRIBUTES) * counted


def attribute_accuracy_by_kind(predicted: list[str], scenes: list[Scene]) -> dict[str, float]:
    """Accuracy of each attribute kind over many captions: tells a model that sees where
    objects are from one that also sees what they are."""
    totals = dict.fromkeys(ATTRIBUTES, 0)
    counted = 0
    for text, scene in zip(predicted, scenes, strict=True):
        kinds, objects = attribute_hits(text, scene)
        totals = {k: totals[k] + kinds[k] for k in ATTRIBUTES}
        counted += objects
    return {k: totals[k] / max(counted, 1) for k in ATTRIBUTES}


def score_caption(predicted: str, scene: Scene) -> float:
    """Caption attribute accuracy in [0, 1]: 1.0 for the canonical caption, 0.0 for an empty one."""
    hits, total = caption_attribute_hits(predicted, scene)
    return hits / total if total else 0.0
