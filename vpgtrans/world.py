"""The miniature world: a deterministic synthetic image world for CPU-sized VLM experiments.

A scene is a small dark image holding one to a few flat-coloured objects, each with
four attributes: colour, shape, size and position (a cell of a 3x3 grid). Captions,
questions and the caption scorer all speak one small canonical grammar, so that tiny
language models can be pretrained on it and captions can be checked against pixels.

Caption grammar (objects in reading order of their grid cells, joined by "and")::

    caption  := object ("and" object)*
    object   := "a" SIZE COLOUR SHAPE PLACE
    PLACE    := "in the top left" | "at the top" | "in the top right" | "on the left"
              | "in the center" | "on the right" | "in the bottom left" | "at the bottom"
              | "in the bottom right"
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 220, 40),
    "purple": (160, 60, 210),
    "white": (240, 240, 240),
}
SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "cross", "diamond")
SHAPE_PLURALS: dict[str, str] = {
    "square": "squares",
    "circle": "circles",
    "triangle": "triangles",
    "cross": "crosses",
    "diamond": "diamonds",
}
SIZES: tuple[str, ...] = ("small", "large")
# Grid cells in reading order: index = row * 3 + column.
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)
PLACE_PHRASES: dict[str, str] = {
    "top left": "in the top left",
    "top": "at the top",
    "top right": "in the top right",
    "left": "on the left",
    "center": "in the center",
    "right": "on the right",
    "bottom left": "in the bottom left",
    "bottom": "at the bottom",
    "bottom right": "in the bottom right",
}
NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
)

_WORD_RE = re.compile(r"\w+|[^\w\s]")
_QUESTION_WORDS = (
    "what colour is the object shape size how many objects are there is a left of above "
    "yes no Question Answer"
)


def tokenize_words(text: str) -> list[str]:
    """Split text into words and punctuation marks, the unit of `VOCABULARY`."""
    return _WORD_RE.findall(text)


VOCABULARY: list[str] = sorted(
    set(tokenize_words(" ".join(PLACE_PHRASES.values())))
    | set(COLOURS) | set(SHAPES) | set(SHAPE_PLURALS.values()) | set(SIZES) | set(NUMBER_WORDS)
    | set(tokenize_words(_QUESTION_WORDS)) | {"a", "and", ".", "?", ":"}
)
"""Every word and punctuation mark that captions, questions and pretraining texts use."""


def _odd(value: float) -> int:
    """Nearest odd integer, so that every shape has a centre pixel and stays symmetric."""
    return 2 * int(np.floor(value / 2)) + 1


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the world; the defaults give 32 px images with 1 to 3 objects."""

    image_size: int = 32
    min_objects: int = 1
    max_objects: int = 3
    colours: tuple[str, ...] = tuple(COLOURS)
    shapes: tuple[str, ...] = SHAPES
    max_background: int = 48  # background grey level is drawn from [0, max_background]
    min_gap: int = 2  # empty pixels between object bounding boxes

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects <= len(POSITIONS):
            raise ValueError("need 1 <= min_objects <= max_objects <= 9")
        if self.image_size < 24:
            raise ValueError("image_size below 24 px leaves shapes unreadable")
        if not set(self.colours) <= set(COLOURS) or not set(self.shapes) <= set(SHAPES):
            raise ValueError("unknown colour or shape")

    @property
    def size_px(self) -> dict[str, int]:
        """Side length in pixels of small and large objects (odd, about 22% and 34% of the image)."""
        return {"small": _odd(self.image_size * 0.22), "large": _odd(self.image_size * 0.34)}


@dataclass(frozen=True)
class SceneObject:
    """One object: its four attributes plus the top-left pixel of its bounding box."""

    colour: str
    shape: str
    size: str
    position: str
    x: int
    y: int

    @property
    def attributes(self) -> tuple[str, str, str, str]:
        """(colour, shape, size, position): what captions describe and the scorer checks."""
        return (self.colour, self.shape, self.size, self.position)

    @property
    def row(self) -> int:
        return POSITIONS.index(self.position) // 3

    @property
    def col(self) -> int:
        return POSITIONS.index(self.position) % 3


@dataclass(frozen=True)
class Scene:
    """A background grey level and objects in distinct grid cells, kept in reading order."""

    objects: tuple[SceneObject, ...]
    background: int = 0

    def attribute_set(self) -> list[tuple[str, str, str, str]]:
        """Sorted attributes of all objects; equal for scenes that read the same."""
        return sorted(obj.attributes for obj in self.objects)

    def to_dict(self) -> dict:
        return {"background": self.background, "objects": [asdict(o) for o in self.objects]}

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        return cls(tuple(SceneObject(**o) for o in data["objects"]), int(data["background"]))


# ---------------------------------------------------------------- generation and rendering


@lru_cache(maxsize=None)
def shape_mask(shape: str, side: int) -> np.ndarray:
    """Boolean side x side mask of a shape; every shape touches all four sides of its box."""
    # Doubled coordinates of pixel centres relative to the box centre: -(side-1) .. side-1.
    d = 2 * np.arange(side) + 1 - side
    dy, dx = np.meshgrid(d, d, indexing="ij")
    if shape == "square":
        mask = np.ones((side, side), dtype=bool)
    elif shape == "circle":
        mask = dx**2 + dy**2 <= side**2
    elif shape == "diamond":
        mask = np.abs(dx) + np.abs(dy) <= side - 1
    elif shape == "triangle":  # apex up, base as wide as the box
        mask = 2 * np.abs(dx) <= dy + side
    elif shape == "cross":
        arm = side // 3 + (side // 3 + 1) % 2  # odd arm thickness near side / 3
        mask = (np.abs(dx) <= arm - 1) | (np.abs(dy) <= arm - 1)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    mask.setflags(write=False)
    return mask


@lru_cache(maxsize=None)
def _offsets(image_size: int, cell: int, side: int) -> tuple[int, ...]:
    """Box origins along one axis that keep the box centre well inside grid cell `cell`.

    The centre must stay a quarter cell away from the cell borders, so the position word
    is unambiguous to the eye as well as to `derive_scene`.
    """
    step = image_size / 3
    lo, hi = step * (cell + 0.25), step * (cell + 0.75)
    return tuple(o for o in range(image_size - side + 1) if lo <= o + side / 2 <= hi)


def _boxes_apart(a: tuple[int, int, int], b: tuple[int, int, int], gap: int) -> bool:
    """Whether two (x, y, side) boxes are separated by at least `gap` empty pixels."""
    (ax, ay, a_side), (bx, by, b_side) = a, b
    return (
        ax + a_side + gap <= bx or bx + b_side + gap <= ax
        or ay + a_side + gap <= by or by + b_side + gap <= ay
    )


def generate_scene(rng: np.random.Generator, config: WorldConfig = WorldConfig()) -> Scene:
    """Draw a random scene: objects in distinct grid cells whose boxes never touch."""
    sides = config.size_px
    n = int(rng.integers(config.min_objects, config.max_objects + 1))
    background = int(rng.integers(0, config.max_background + 1))
    for _ in range(1000):  # rejection sampling; a layout fails only when large objects crowd
        objects: list[SceneObject] = []
        boxes: list[tuple[int, int, int]] = []
        for cell in sorted(rng.choice(len(POSITIONS), size=n, replace=False).tolist()):
            size = SIZES[int(rng.integers(len(SIZES)))]
            side = sides[size]
            xs, ys = _offsets(config.image_size, cell % 3, side), _offsets(config.image_size, cell // 3, side)
            if not xs or not ys:
                raise ValueError(f"a {size} object does not fit a grid cell at this image size")
            box = (xs[int(rng.integers(len(xs)))], ys[int(rng.integers(len(ys)))], side)
            if not all(_boxes_apart(box, other, config.min_gap) for other in boxes):
                break
            boxes.append(box)
            objects.append(SceneObject(
                colour=config.colours[int(rng.integers(len(config.colours)))],
                shape=config.shapes[int(rng.integers(len(config.shapes)))],
                size=size, position=POSITIONS[cell], x=box[0], y=box[1],
            ))
        else:
            return Scene(tuple(objects), background)
    raise RuntimeError("no room for that many objects; lower max_objects or raise image_size")


def render(scene: Scene, config: WorldConfig = WorldConfig()) -> Image.Image:
    """Paint the scene as an RGB image: flat colours on a uniform dark-grey background."""
    pixels = np.full((config.image_size, config.image_size, 3), scene.background, dtype=np.uint8)
    sides = config.size_px
    for obj in scene.objects:
        side = sides[obj.size]
        window = pixels[obj.y:obj.y + side, obj.x:obj.x + side]
        window[shape_mask(obj.shape, side)] = COLOURS[obj.colour]
    return Image.fromarray(pixels, mode="RGB")


# ---------------------------------------------------------------- reading pixels back


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """Pixel coordinates (N x 2, row/col) of each 8-connected component of a boolean mask."""
    seen = np.zeros_like(mask)
    found: list[np.ndarray] = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        queue, members = deque([start]), []
        while queue:
            r, c = queue.popleft()
            members.append((r, c))
            for nr in range(max(r - 1, 0), min(r + 2, mask.shape[0])):
                for nc in range(max(c - 1, 0), min(c + 2, mask.shape[1])):
                    if mask[nr, nc] and not seen[nr, nc]:
                        seen[nr, nc] = True
                        queue.append((nr, nc))
        found.append(np.array(members))
    return found


def derive_scene(image: Image.Image, config: WorldConfig = WorldConfig()) -> Scene:
    """Recover a scene from pixels alone, to prove that captions describe what is visible.

    Pixels are assigned to the nearest palette colour (or to the background when far from
    all), each connected component is an object, its box gives size and grid cell, and the
    best-overlapping shape mask gives its shape.
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.int32)
    palette = np.array([COLOURS[c] for c in config.colours], dtype=np.int32)
    distance = np.linalg.norm(pixels[:, :, None, :] - palette[None, None], axis=-1)
    nearest = distance.argmin(axis=-1)
    is_object = distance.min(axis=-1) < 80
    sides = config.size_px
    step = config.image_size / 3
    objects = []
    for index, colour in enumerate(config.colours):
        for members in _components(is_object & (nearest == index)):
            (y, x), (y2, x2) = members.min(axis=0), members.max(axis=0)
            side = int(max(y2 - y, x2 - x)) + 1
            box = np.zeros((side, side), dtype=bool)
            box[members[:, 0] - y, members[:, 1] - x] = True
            shape = max(
                config.shapes,
                key=lambda s: (box & shape_mask(s, side)).sum() / (box | shape_mask(s, side)).sum(),
            )
            size = min(SIZES, key=lambda s: abs(sides[s] - side))
            cell = 3 * int((y + side / 2) // step) + int((x + side / 2) // step)
            objects.append(SceneObject(colour, shape, size, POSITIONS[cell], int(x), int(y)))
    objects.sort(key=lambda o: POSITIONS.index(o.position))
    grey = np.median(pixels[~is_object]) if (~is_object).any() else 0
    return Scene(tuple(objects), int(grey))


# ---------------------------------------------------------------- language


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
        for second in unique[i + 1:]:
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
    found = {kind: [w for w in words if w in vocab] for kind, vocab in (
        ("colour", COLOURS), ("shape", SHAPES), ("size", SIZES),
        ("vertical", ("top", "bottom")), ("horizontal", ("left", "right")),
    )}
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


def caption_attribute_hits(predicted: str, scene: Scene) -> tuple[int, int]:
    """(correct attributes, total attributes) of a predicted caption against a scene.

    Mentions are matched one-to-one to objects so as to maximise correct attributes.
    The total is 4 per object, or 4 per mention when the caption mentions more objects
    than the scene holds: hallucinated objects then cost as much as missing ones.
    """
    mentions = parse_caption(predicted)
    objects = scene.objects
    gains = [
        [sum(getattr(m, k) == getattr(o, k) for k in ("colour", "shape", "size", "position")) for o in objects]
        for m in mentions
    ]
    # Dynamic programme over mentions; state = bitmask of objects already matched.
    best: dict[int, int] = {0: 0}
    for row in gains:
        step = dict(best)
        for used, score in best.items():
            for j, gain in enumerate(row):
                if gain and not used >> j & 1:
                    key = used | 1 << j
                    step[key] = max(step.get(key, 0), score + gain)
        best = step
    return max(best.values()), 4 * max(len(objects), len(mentions))


def score_caption(predicted: str, scene: Scene) -> float:
    """Caption attribute accuracy in [0, 1]: 1.0 for the canonical caption, 0.0 for an empty one."""
    hits, total = caption_attribute_hits(predicted, scene)
    return hits / total if total else 0.0


# ---------------------------------------------------------------- datasets and corpora


def write_dataset(
    out_dir: str | Path,
    n: int,
    seed: int,
    config: WorldConfig = WorldConfig(),
    layout: Literal["jsonl", "imagefolder"] = "jsonl",
) -> Path:
    """Write n scenes as PNGs plus caption, QA and ground-truth scene files; return the caption file.

    Image i depends only on (seed, i), so a small dataset is a prefix of a larger one.
    "jsonl" writes captions.jsonl ({"image", "caption"}); "imagefolder" writes
    metadata.jsonl ({"file_name", "caption"}) for `datasets.load_dataset("imagefolder")`.
    Both write qa.jsonl and scenes.jsonl; image paths are relative to out_dir.
    """
    if layout not in ("jsonl", "imagefolder"):
        raise ValueError(f"unknown layout {layout!r}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    caption_path = out / ("captions.jsonl" if layout == "jsonl" else "metadata.jsonl")
    image_key = "image" if layout == "jsonl" else "file_name"
    question_id = 0
    with (
        caption_path.open("w") as captions_file,
        (out / "qa.jsonl").open("w") as qa_file,
        (out / "scenes.jsonl").open("w") as scenes_file,
    ):
        for i in range(n):
            rng = np.random.default_rng([seed, i])
            scene = generate_scene(rng, config)
            name = f"images/{i:06d}.png"
            render(scene, config).save(out / name)
            captions_file.write(json.dumps({image_key: name, "caption": caption(scene)}) + "\n")
            scenes_file.write(json.dumps({"image": name, **scene.to_dict()}) + "\n")
            for question, answer in questions(scene, rng, config):
                qa_file.write(json.dumps(
                    {"image": name, "question_id": question_id, "question": question, "answer": answer}
                ) + "\n")
                question_id += 1
    return caption_path


def load_scenes(path: str | Path) -> list[Scene]:
    """Read scenes.jsonl back, in file order, to score captions against ground truth."""
    with Path(path).open() as f:
        return [Scene.from_dict(json.loads(line)) for line in f if line.strip()]


def pretraining_texts(n: int, seed: int, config: WorldConfig = WorldConfig()) -> list[str]:
    """Text-only corpus that teaches a toy LM to read its context, not just to babble captions.

    Texts cycle through three kinds: a caption followed by a copy of it, a caption followed
    by one to three "Question: ... Answer: ..." pairs answered from it, one per line (so an
    answer ends at a newline, where BLIP-2's VQA protocol stops), and a plain caption.
    """
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(n):
        scene = generate_scene(rng, config)
        text = caption(scene)
        if i % 3 == 0:
            text = f"{text} . {text}"
        elif i % 3 == 1:
            pairs = questions(scene, rng, config)
            picks = rng.choice(len(pairs), size=min(len(pairs), int(rng.integers(1, 4))), replace=False)
            text += " ." + "".join(f"\nQuestion: {pairs[k][0]} Answer: {pairs[k][1]}" for k in picks)
        texts.append(text)
    return texts
