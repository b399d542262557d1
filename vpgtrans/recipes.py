"""Named transfers, declared in `recipes/*.toml` as `[transfers.NAME]` and parsed strictly."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .config import from_mapping, option
from .errors import VPGTransError
from .method.config import CONVERTER_METHODS
from .presets import read_tables
from .training.config import TrainingConfig


@dataclass(frozen=True)
class Recipe:
    """A named transfer: defaults for `vpgtrans transfer` / `compare` (explicit flags win).

    DATA is `data` (a path) or a freshly generated miniature-world set (`world_images`
    scenes); `eval_images` scenes make a held-out world folder. Stage 3 runs on `chat` (a path),
    or with `world_chat` on the generated world set's conversations. Every other key of the
    recipe's table is a `TrainingConfig` field."""

    name: str
    description: str = ""
    src: str | None = None
    dst: str | None = None
    data: str | None = None
    world_images: int | None = option(None, minimum=1)
    world_seed: int = option(0, minimum=0)
    eval_images: int | None = option(None, minimum=1)
    eval_seed: int = option(12345, minimum=0)
    eval_limit: int | None = option(None, minimum=1)
    chat: str | None = None  # conversations for stage 3 (instruction tuning)
    world_chat: bool = False  # stage 3 on the generated world set's conversations.jsonl
    converter: str | None = option(None, choices=CONVERTER_METHODS)
    prompt_scale: bool = False
    training: dict[str, Any] = field(default_factory=dict)  # TrainingConfig fields the recipe sets

    def training_config(self, overrides: dict[str, Any] | None = None) -> TrainingConfig:
        """The recipe's training settings under `overrides` (flags), over TrainingConfig's defaults."""
        return TrainingConfig(**{**self.training, **(overrides or {})})


def _recipe_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(Recipe)} - {"name", "training"}


def parse_recipe(name: str, body: dict[str, Any], where: str) -> Recipe:
    """A `[transfers.NAME]` table; an unknown key is an error naming the file and the key."""
    own = _recipe_fields()
    training_keys = {f.name for f in dataclasses.fields(TrainingConfig)}
    unknown = sorted(set(body) - own - training_keys)
    if unknown:
        raise VPGTransError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; a recipe takes "
            f"{', '.join(sorted(own))} and the training settings {', '.join(sorted(training_keys))}"
        )
    values = from_mapping(Recipe, {k: v for k, v in body.items() if k in own}, where)
    training = from_mapping(TrainingConfig, {k: v for k, v in body.items() if k in training_keys}, where)
    return Recipe(name=name, **values, training=training)


def transfer_recipes() -> dict[str, Recipe]:
    """Every `[transfers.NAME]` declared in `recipes/*.toml`."""
    return {name: parse_recipe(name, body, where) for name, (body, where) in read_tables("transfers").items()}


def get_recipe(name: str) -> Recipe:
    recipes = transfer_recipes()
    if name not in recipes:
        raise VPGTransError(f"unknown transfer recipe {name!r}; known recipes: {', '.join(sorted(recipes))}")
    return recipes[name]
