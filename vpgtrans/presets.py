"""Short names for models and transfers, declared in `recipes/*.toml`.

`blip2-opt-2.7b` reads better on a command line than `Salesforce/blip2-opt-2.7b`, and
the miniature world's models live in this repository's `checkpoints/`. Presets are data,
not code: the same loading path serves every name.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .errors import VPGTransError


def project_root() -> Path:
    """The folder holding `recipes/` and `checkpoints/` (override with VPGTRANS_HOME)."""
    return Path(os.environ.get("VPGTRANS_HOME", Path(__file__).resolve().parents[1]))


@dataclass(frozen=True)
class ModelPreset:
    """A named model: where it lives and what it is."""

    name: str
    ref: str
    kind: str  # "blip2" or "causal-lm"
    rebuild: str = ""  # how to rebuild a local preset that is missing

    def resolved(self) -> str:
        """Hub ids stay as they are; `./`-relative paths are anchored at the project root."""
        if self.ref.startswith("./"):
            return str(project_root() / self.ref[2:])
        return self.ref


@cache
def _read_recipe_table(table: str) -> dict[str, dict]:
    entries: dict[str, dict] = {}
    for path in sorted((project_root() / "recipes").glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise VPGTransError(f"{path}: {exc}") from exc
        for name, body in data.get(table, {}).items():
            if name in entries:
                raise VPGTransError(f"{path}: [{table}.{name}] is declared twice")
            entries[name] = {**body, "_file": str(path)}
    return entries


def model_presets() -> dict[str, ModelPreset]:
    """Every `[models.NAME]` declared in `recipes/*.toml`."""
    presets = {}
    for name, body in _read_recipe_table("models").items():
        try:
            presets[name] = ModelPreset(name=name, ref=body["ref"], kind=body["kind"], rebuild=body.get("rebuild", ""))
        except KeyError as exc:
            raise VPGTransError(f"{body['_file']}: [models.{name}] lacks the field {exc.args[0]!r}") from exc
    return presets


def transfer_presets() -> dict[str, dict]:
    """Every `[transfers.NAME]`: default settings of a named transfer."""
    return {name: {k: v for k, v in body.items() if k != "_file"} for name, body in _read_recipe_table("transfers").items()}


def looks_like_preset(ref: str) -> bool:
    """A bare name (no path separator, no existing file) is meant as a preset."""
    return "/" not in ref and os.sep not in ref and not Path(ref).exists()


def resolve_model_ref(ref: str) -> str:
    """A folder or hub id for `ref`; preset names are looked up, unknown names list the known ones."""
    if not looks_like_preset(ref):
        return ref
    presets = model_presets()
    if ref not in presets:
        known = ", ".join(sorted(presets)) or "(none: recipes/ is empty)"
        raise VPGTransError(f"unknown model preset {ref!r}; known presets: {known}")
    preset = presets[ref]
    path = preset.resolved()
    if preset.ref.startswith("./") and not Path(path).is_dir():
        hint = f"; rebuild it with: {preset.rebuild}" if preset.rebuild else ""
        raise VPGTransError(f"preset {ref!r}: folder {path} is missing{hint}")
    return path
