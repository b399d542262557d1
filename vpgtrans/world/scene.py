"""Scenes: their config and objects, random generation, rendering, and reading pixels back."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from .vocabulary import COLOURS, POSITIONS, SHAPES, SIZES


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
    return ax + a_side + gap <= bx or bx + b_side + gap <= ax or ay + a_side + gap <= by or by + b_side + gap <= ay


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
            objects.append(
                SceneObject(
                    colour=config.colours[int(rng.integers(len(config.colours)))],
                    shape=config.shapes[int(rng.integers(len(config.shapes)))],
                    size=size,
                    position=POSITIONS[cell],
                    x=box[0],
                    y=box[1],
                )
            )
        else:
            return Scene(tuple(objects), background)
    raise RuntimeError("no room for that many objects; lower max_objects or raise image_size")


def render(scene: Scene, config: WorldConfig = WorldConfig()) -> Image.Image:
    """Paint the scene as an RGB image: flat colours on a uniform dark-grey background."""
    pixels = np.full((config.image_size, config.image_size, 3), scene.background, dtype=np.uint8)
    sides = config.size_px
    for obj in scene.objects:
        side = sides[obj.size]
        window = pixels[obj.y : obj.y + side, obj.x : obj.x + side]
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
