"""The one way images are opened: decoded to RGB, with an error naming the image and its record."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import VPGTransError


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB with 8 bits a channel. 16- and 32-bit greyscale (a 16-bit PNG opens as mode I;16 or I)
    is scaled down to 8 bits first: PIL's own convert clips it, and the picture turns white."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image, dtype=np.int64)
        bits = 16 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 8
        image = Image.fromarray(np.clip(values >> (bits - 8), 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        peak = values.max(initial=0.0)
        scale = 255.0 if peak <= 1.0 else 255.0 / peak  # [0, 1] floats, or any positive range
        image = Image.fromarray(np.clip(values * scale, 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


def open_rgb(path: str | Path, where: str = "") -> Image.Image:
    """The image decoded in full, as 8-bit RGB; an unreadable one raises naming `where` (a record) and the path."""
    prefix = f"{where}: " if where else ""
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except FileNotFoundError as exc:
        raise VPGTransError(f"{prefix}image {path} not found") from exc
    except Image.DecompressionBombError as exc:
        raise VPGTransError(
            f"{prefix}image {path} has more pixels than PIL's decompression-bomb limit "
            f"({Image.MAX_IMAGE_PIXELS:,}); resize it or skip it with --skip-bad-samples"
        ) from exc
    except OSError as exc:
        raise VPGTransError(f"{prefix}image {path} cannot be decoded ({exc.__class__.__name__}: {exc})") from exc
