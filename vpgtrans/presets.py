"""Named models, declared in `recipes/*.toml` as `[models.NAME]`, and where the resources live.

`blip2-opt-2.7b` reads better on a command line than `Salesforce/blip2-opt-2.7b`, and the
miniature world's models live in the toy zoo (`checkpoints/`). Presets are data, not code:
the same loading path serves every name. The recipes and the zoo ship inside the package
(`vpgtrans/_resources/` in a wheel), so an installed vpgtrans finds them from any folder.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .config import from_mapping, option
from .errors import VPGTransError

MODEL_KINDS = ("blip2", "causal-lm", "seq2seq-lm")


def resources_root() -> Path:
    """The folder holding `recipes/` and `checkpoints/`: VPGTRANS_HOME if set, else the copy
    installed with the package, else the source checkout this package lies in."""
    if "VPGTRANS_HOME" in os.environ:
        return Path(os.environ["VPGTRANS_HOME"])
    package = Path(__file__).resolve().parent
    for root in (package / "_resources", package.parent):
        if (root / "recipes").is_dir():
            return root
    raise VPGTransError(f"no recipes/ folder beside {package} nor in it: a broken install; reinstall vpgtrans")


@dataclass(frozen=True)
class ModelPreset:
    """A named model: where it lives and what it is."""

    name: str = option(help="the preset's name")
    ref: str = option(help="hub id, or a folder; './' is the resources root (the toy zoo)")
    kind: str = option(
        help="blip2: a transfer source; causal-lm, seq2seq-lm: a destination (T5-style)", choices=MODEL_KINDS
    )
    rebuild: str = option("", "how to rebuild a local preset that is missing")
    precision: str = option(
        "",
        "the half precision it runs in: transfers onto or from it default to it, and refuse the other (FlanT5: bf16)",
        choices=("", "bf16", "fp16"),
    )

    def resolved(self) -> str:
        """Hub ids stay as they are; `./`-relative paths are anchored at the resources root."""
        if self.ref.startswith("./"):
            return str(resources_root() / self.ref[2:])
        return self.ref


@cache
def read_tables(table: str) -> dict[str, tuple[dict, str]]:
    """Every `[table.NAME]` of `recipes/*.toml`: (body, "file [table.NAME]")."""
    entries: dict[str, tuple[dict, str]] = {}
    for path in sorted((resources_root() / "recipes").glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise VPGTransError(f"{path}: {exc}") from exc
        for name, body in data.get(table, {}).items():
            if name in entries:
                raise VPGTransError(f"{path}: [{table}.{name}] is declared twice")
            entries[name] = (body, f"{path} [{table}.{name}]")
    return entries


def model_presets() -> dict[str, ModelPreset]:
    """Every `[models.NAME]` declared in `recipes/*.toml`."""
    presets = {}
    for name, (body, where) in read_tables("models").items():
        if "name" in body:
            raise VPGTransError(f"{where}: 'name' is not a key; the table's own name ({name!r}) is the preset's")
        presets[name] = ModelPreset(name=name, **from_mapping(ModelPreset, body, where))
    return presets


def looks_like_preset(ref: str) -> bool:
    """A bare name (no path separator, no existing file) is meant as a preset."""
    return "/" not in ref and os.sep not in ref and not Path(ref).exists()


def preset_precision(*refs: str | None) -> str:
    """The half precision the presets among `refs` require ("" when none does)."""
    presets = model_presets()
    wanted = {presets[r].precision for r in refs if r and looks_like_preset(r) and r in presets} - {""}
    if len(wanted) > 1:
        raise VPGTransError(f"presets {', '.join(r for r in refs if r)} need different half precisions {wanted}")
    return wanted.pop() if wanted else ""


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
