"""JSON Lines reading that names the file and line of the first bad record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from ..errors import VPGTransError


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line; a malformed line (bad UTF-8, bad JSON, not an
    object: a JSON array file too) raises naming file:line."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise VPGTransError(f"{path}:{number}: not UTF-8 text (byte {err.start + 1} of the line)") from err
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise VPGTransError(f"{path}:{number}: malformed JSON ({err.msg})") from err
            if isinstance(row, list):
                raise VPGTransError(
                    f"{path}:{number}: a JSON array; JSON Lines holds one object a line (convert it, e.g. "
                    "`jq -c '.[]' FILE > FILE.jsonl`)"
                )
            if not isinstance(row, dict):
                raise VPGTransError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield number, row
