"""Resolve a model reference (local folder, hub id or preset name) to files on disk."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import VPGTransError
from ..presets import resolve_model_ref


def model_file(ref: str, filename: str) -> Path | None:
    """Path of `filename` inside model `ref`, downloading just that file for hub ids; None if absent."""
    ref = resolve_model_ref(ref)
    local = Path(ref)
    if local.is_dir():
        path = local / filename
        return path if path.exists() else None
    if local.exists():
        raise VPGTransError(f"{ref}: expected a model folder, found a file")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(ref, filename))
    except LocalEntryNotFoundError as exc:  # offline and not cached: say so, not "file absent"
        raise VPGTransError(
            f"{ref}: not a local folder and not readable from the hub (offline, not in the cache)"
        ) from exc
    except EntryNotFoundError:
        return None
    except Exception as exc:  # offline, unknown repo, no access: all mean "cannot read this model"
        raise VPGTransError(
            f"{ref}: not a local folder and not readable from the hub ({exc.__class__.__name__})"
        ) from exc


def read_config(ref: str) -> dict:
    """The model's config.json as a dict, with a clear error when it is missing or malformed."""
    path = model_file(ref, "config.json")
    if path is None:
        raise VPGTransError(f"{ref}: no config.json (not a transformers model folder)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise VPGTransError(f"{path}: malformed JSON at line {exc.lineno}: {exc.msg}") from exc
