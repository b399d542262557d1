"""The miniature world: a deterministic synthetic image world for CPU-sized VLM experiments.

A scene is a small dark image holding one to a few flat-coloured objects, each with
four attributes: colour, shape, size and position (a cell of a 3x3 grid). Captions,
questions and the caption scorer all speak one small canonical grammar, so that tiny
language models can be pretrained on it and captions can be checked against pixels.
Conversations about a scene (`conversations.py`: descriptions, counts, attributes, follow-ups
about "it", relations, existence) speak it too, with short canonical answers a scorer checks.

Caption grammar (objects in reading order of their grid cells, joined by "and")::

    caption  := object ("and" object)*
    object   := "a" SIZE COLOUR SHAPE PLACE
    PLACE    := "in the top left" | "at the top" | "in the top right" | "on the left"
              | "in the center" | "on the right" | "in the bottom left" | "at the bottom"
              | "in the bottom right"
"""

from .conversations import (
    KINDS,
    Turn,
    conversation,
    conversation_turns,
    description,
    dialogue_texts,
    dialogue_turns,
    normalise_answer,
    score_answer,
    to_messages,
)
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
    "KINDS",
    "Mention",
    "Scene",
    "SceneObject",
    "Turn",
    "WorldConfig",
    "attribute_accuracy_by_kind",
    "attribute_hits",
    "caption",
    "caption_attribute_hits",
    "conversation",
    "conversation_turns",
    "derive_scene",
    "describe",
    "description",
    "dialogue_texts",
    "dialogue_turns",
    "generate_scene",
    "load_scenes",
    "normalise_answer",
    "parse_caption",
    "pretraining_texts",
    "questions",
    "render",
    "score_answer",
    "score_caption",
    "shape_mask",
    "to_messages",
    "tokenize_words",
    "write_dataset",
]
