"""Typed configuration: every setting is a dataclass field with its default and help in one place.

`option()` declares a field; the CLI derives its flags from these fields (`cli/options.py`),
and `from_mapping()` reads a recipe table into the same dataclass strictly: an unknown key
or a value of the wrong type is an error naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from .errors import VPGTransError


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    choices: tuple | None = None,
    minimum: float | None = None,
    positional: bool = False,
    flag: str | None = None,
    **kwargs: Any,
) -> Any:
    """A config field: its default, a help line, allowed values (`choices`, `minimum`), and how the
    CLI shows it (`positional`, or `flag`: a name other than the field's)."""
    metadata = {"help": help, "choices": choices, "minimum": minimum, "positional": positional, "flag": flag}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


SRC_HELP = "source BLIP-2: folder, hub id, preset (e.g. blip2-opt-2.7b) or LAVIS checkpoint (.pth, with --src-llm)"
DST_HELP = "destination LLM (causal or T5-style): folder, hub id or preset (e.g. llama-7b)"


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass (they are strings under `from __future__ import annotations`)."""
    return typing.get_type_hints(cls)


def scalar_type(annotation: Any) -> tuple[type, bool]:
    """(the base type, whether None is allowed) of `int`, `int | None`, `tuple[float, ...]`..."""
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional, annotation = True, args[0]
    return annotation, optional


def check_value(cls: type, name: str, value: Any, where: str) -> Any:
    """`value` for field `name` of `cls`, type- and range-checked; errors name `where` and the field."""
    annotation, optional = scalar_type(field_types(cls)[name])
    meta = {f.name: f.metadata for f in dataclasses.fields(cls)}[name]
    if value is None:
        if optional:
            return None
        raise VPGTransError(f"{where}: {name} must be given")
    origin = typing.get_origin(annotation)
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        if isinstance(value, str):  # a comma list from the command line
            value = [_parse(item, name, v.strip(), where) for v in value.split(",") if v.strip()]
        return tuple(check_scalar(item, name, v, meta, where) for v in value)
    return check_scalar(annotation, name, value, meta, where)


def _parse(kind: type, name: str, text: str, where: str) -> Any:
    try:
        return kind(text)
    except ValueError as exc:
        raise VPGTransError(f"{where}: {name} item {text!r} is not a {kind.__name__}") from exc


def check_scalar(kind: type, name: str, value: Any, meta: Mapping[str, Any], where: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is bool and not isinstance(value, bool) or kind is not bool and isinstance(value, bool):
        raise VPGTransError(f"{where}: {name} must be {kind.__name__}, not {value!r}")
    if not isinstance(value, kind):
        raise VPGTransError(f"{where}: {name} must be {kind.__name__}, not {value!r}")
    if kind is float and not math.isfinite(value):
        raise VPGTransError(f"{where}: {name} must be a finite number, not {value!r}")
    if meta.get("choices") and value not in meta["choices"]:
        raise VPGTransError(f"{where}: {name} {value!r} is not one of {', '.join(map(str, meta['choices']))}")
    if meta.get("minimum") is not None and value < meta["minimum"]:
        raise VPGTransError(f"{where}: {name} must be at least {meta['minimum']:g}, not {value!r}")
    return value


def validate(config: Any, where: str = "config") -> None:
    """Check every field of a dataclass instance against its type, choices and minimum."""
    for f in dataclasses.fields(config):
        if not dataclasses.is_dataclass(getattr(config, f.name)):
            object.__setattr__(
                config, f.name, check_value(type(config), f.name, getattr(config, f.name), where)
            )  # frozen too


def from_mapping(cls: type, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The checked keyword arguments of `cls` in `values`; an unknown key is an error naming it."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise VPGTransError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(sorted(names))}"
        )
    return {k: check_value(cls, k, v, where) for k, v in values.items()}
