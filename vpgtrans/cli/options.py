"""Command-line flags derived from config dataclasses: one source for every default and help line.

`add_flags` adds one flag per field (type, choices and help from the field); a flag left unset
is None, so a recipe's value and then the dataclass default show through (`layered`).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from ..config import check_value, field_types, scalar_type


def flag_name(field: dataclasses.Field) -> str:
    return "--" + (field.metadata.get("flag") or field.name).replace("_", "-")


def _default_text(field: dataclasses.Field) -> str:
    default = field.default
    if default is dataclasses.MISSING or default is None or isinstance(default, bool) or default in ((), ""):
        return ""  # a switch is off unless given
    if isinstance(default, tuple):
        default = ",".join(map(str, default))
    elif isinstance(default, float):
        default = f"{default:g}"
    return f" (default: {default})"


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    only: Iterable[str] | None = None,
    required: bool = False,
) -> None:
    """A flag per field of `cls` (`only` those named); nested dataclasses are skipped. With
    `required`, fields without a default are required flags."""
    hints = field_types(cls)
    only = set(only) if only is not None else None
    for field in dataclasses.fields(cls):
        if (only is not None and field.name not in only) or "help" not in field.metadata:
            continue
        kind, _ = scalar_type(hints[field.name])
        if dataclasses.is_dataclass(kind):  # a nested config has flags of its own
            continue
        meta = field.metadata
        listed = typing.get_origin(kind) is tuple and meta.get("choices")
        choices = f" (from: {', '.join(map(str, meta['choices']))})" if listed else ""
        help_text = meta["help"] + choices + _default_text(field)
        if meta.get("positional"):
            parser.add_argument(field.name, nargs="+" if typing.get_origin(kind) is tuple else None, help=help_text)
            continue
        needed = required and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        common = {"dest": field.name, "help": help_text, "default": None, "required": needed}
        if kind is bool:  # --x / --no-x: a recipe's true can be turned off
            parser.add_argument(flag_name(field), action=argparse.BooleanOptionalAction, **common)
        elif typing.get_origin(kind) is tuple:
            parser.add_argument(flag_name(field), metavar="A,B,...", **common)
        else:
            parser.add_argument(flag_name(field), type=kind, choices=meta.get("choices"), **common)


def given(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of `cls` whose flags were given, checked (an error names the flag)."""
    values = {}
    for field in dataclasses.fields(cls):
        value = getattr(args, field.name, None)
        if value is not None and "help" in field.metadata and not dataclasses.is_dataclass(value):
            values[field.name] = check_value(cls, field.name, value, flag_name(field))
    return values


def layered(cls: type, *layers: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of `cls` from layers, later ones winning; None means "not set"."""
    names = {f.name for f in dataclasses.fields(cls)}
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.items() if k in names and v is not None})
    return merged
