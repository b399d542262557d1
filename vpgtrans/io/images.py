"""The one way images are opened: decoded to RGB, with an error naming the image and its record."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..errors import VPGTransError


def open_rgb(path: str | Path, where: str = "") -> Image.Image:
    """The decoded image as RGB; an unreadable one raises naming `where` (a record) and the path."""
    prefix = f"{where}: " if where else ""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError as exc:
        raise VPGTransError(f"{prefix}image {path} not found") from exc
    except OSError as exc:
        raise VPGTransError(f"{prefix}image {path} cannot be decoded ({exc.__class__.__name__}: {exc})") from exc
