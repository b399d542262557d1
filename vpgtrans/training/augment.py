"""The paper's stage 1-2 image augmentation: RandomResizedCrop (scale 0.5-1.0, bicubic) and a
horizontal flip, each drawn from (seed, epoch, sample), so a resumed run sees the same crops."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image

CROP_SCALE = (0.5, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


@dataclass(frozen=True)
class Augmentation:
    """Which augmentations apply; `key` (epoch x dataset size + index) picks the draw."""

    random_crop: bool = False
    horizontal_flip: bool = False
    seed: int = 0

    def __bool__(self) -> bool:
        return self.random_crop or self.horizontal_flip

    def __call__(self, image: Image.Image, key: int) -> Image.Image:
        rng = random.Random(self.seed * 1_000_003 + key)
        if self.random_crop:
            image = random_resized_crop(image, rng)
        if self.horizontal_flip and rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image


def random_resized_crop(image: Image.Image, rng: random.Random) -> Image.Image:
    """A crop of 50-100% of the area at an aspect ratio of 3/4-4/3, resized back (bicubic):
    torchvision's RandomResizedCrop, with its fall-back to the whole image."""
    width, height = image.size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*CROP_SCALE)
        ratio = math.exp(rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return image.resize((width, height), Image.Resampling.BICUBIC, box=(left, top, left + w, top + h))
    return image
