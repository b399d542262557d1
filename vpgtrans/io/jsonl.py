"""JSON Lines reading that names the file and line of the first bad record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from ..errors import VPGTransError


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line; malformed lines raise naming file:line."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise VPGTransError(f"{path}:{number}: malformed JSON ({err.msg})") from err
            if not isinstance(row, dict):
                raise VPGTransError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield number, row
