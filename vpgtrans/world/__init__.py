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

from .datasets import load_scenes, pretraining_texts, write_dataset
from .language import (
    ATTRIBUTES,
    Mention,
    attribute_accuracy_by_kind,
    attribute_hits,
    caption,
    caption_attribute_hits,
    describe,
    parse_caption,
    questions,
    score_caption,
)
from .scene import Scene, SceneObject, WorldConfig, derive_scene, generate_scene, render, shape_mask
from .vocabulary import (
    COLOURS,
    NUMBER_WORDS,
    PLACE_PHRASES,
    POSITIONS,
    SHAPE_PLURALS,
    SHAPES,
    SIZES,
    VOCABULARY,
    tokenize_words,
)

__all__ = [
    "COLOURS",
    "NUMBER_WORDS",
    "PLACE_PHRASES",
    "POSITIONS",
    "SHAPE_PLURALS",
    "SHAPES",
    "SIZES",
    "VOCABULARY",
    "ATTRIBUTES",
    "Mention",
    "Scene",
    "SceneObject",
    "WorldConfig",
    "attribute_accuracy_by_kind",
    "attribute_hits",
    "caption",
    "caption_attribute_hits",
    "derive_scene",
    "describe",
    "generate_scene",
    "load_scenes",
    "parse_caption",
    "pretraining_texts",
    "questions",
    "render",
    "score_caption",
    "shape_mask",
    "tokenize_words",
    "write_dataset",
]
