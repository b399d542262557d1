"""The world's words: attribute values, place phrases and the closed vocabulary."""

from __future__ import annotations

import re

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
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
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
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)

_WORD_RE = re.compile(r"\w+|[^\w\s]")
_QUESTION_WORDS = (
    "what colour is the object shape size how many objects are there is a left of above yes no Question Answer"
)


def tokenize_words(text: str) -> list[str]:
    """Split text into words and punctuation marks, the unit of `VOCABULARY`."""
    return _WORD_RE.findall(text)


VOCABULARY: list[str] = sorted(
    set(tokenize_words(" ".join(PLACE_PHRASES.values())))
    | set(COLOURS)
    | set(SHAPES)
    | set(SHAPE_PLURALS.values())
    | set(SIZES)
    | set(NUMBER_WORDS)
    | set(tokenize_words(_QUESTION_WORDS))
    | {"a", "and", ".", "?", ":"}
)
"""Every word and punctuation mark that captions, questions and pretraining texts use."""
