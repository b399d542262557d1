"""Resolve a model reference (local folder, hub id or preset name) to files on disk."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import VPGTransError
from ..presets import resolve_model_ref

# A hub that accepts connections and never answers must not hang a run (HF_HUB_ETAG_TIMEOUT overrides).
T = TypeVar("T")
HUB_TIMEOUT_SECONDS = float(os.environ.get("HF_HUB_ETAG_TIMEOUT", "10"))


def _within_deadline(call: Callable[[], T]) -> T:
    """`call()`, or TimeoutError after HUB_TIMEOUT_SECONDS plus a margin for its own retries: the hub
    client's timeouts do not bound a server that accepts a connection and never answers."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)  # a hung request must not keep the process alive
    worker.start()
    worker.join(3 * HUB_TIMEOUT_SECONDS)
    if worker.is_alive():
        raise TimeoutError(f"no answer within {3 * HUB_TIMEOUT_SECONDS:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


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
        return Path(_within_deadline(lambda: hf_hub_download(ref, filename, etag_timeout=HUB_TIMEOUT_SECONDS)))
    except (LocalEntryNotFoundError, TimeoutError) as exc:  # unreachable (offline, or no answer in time), not cached
        raise VPGTransError(
            f"{ref}: not a local folder, and {filename} could not be read from the hub (no answer within "
            f"{HUB_TIMEOUT_SECONDS:g} s, or offline) nor from the local cache"
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


def check_weight_files(ref: str) -> None:
    """Every safetensors file of a local model folder whole: its size covers what its header
    declares (a truncated download fails here, naming the file, not deep inside loading)."""
    folder = Path(resolve_model_ref(ref))
    if not folder.is_dir():
        return  # a hub id: the hub client checks what it downloads
    for path in sorted(folder.glob("*.safetensors")):
        size = path.stat().st_size
        try:
            with open(path, "rb") as f:
                length = int.from_bytes(f.read(8), "little")
                if length <= 0 or 8 + length > size:
                    raise ValueError("header")
                header = json.loads(f.read(length))
        except (ValueError, UnicodeDecodeError) as exc:
            raise VPGTransError(f"{path}: not a safetensors file, or its header is cut off ({size} bytes)") from exc
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        if 8 + length + end > size:
            raise VPGTransError(
                f"{path}: truncated ({size:,} bytes, its header declares {8 + length + end:,}); download it again"
            )
