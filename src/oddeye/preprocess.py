"""Pre-processing shared by every method: decode, resize (no crop), to a uint8 batch.

Resizing happens on uint8 images (Pillow, bilinear with antialias); ImageNet normalisation happens
inside the model graph (`Normalize`), so an exported model takes the same resized uint8 batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ImageLike = str | Path | np.ndarray | Image.Image


@dataclass(frozen=True)
class PreprocessConfig:
    """How images become model input; stored in every model file."""

    size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        return cls(size=int(d["size"]), mean=tuple(d["mean"]), std=tuple(d["std"]))


def load_rgb(item: ImageLike, name: str | None = None) -> np.ndarray:
    """A path, PIL image or array as uint8 RGB (H, W, 3), with oddeye's documented conversions.

    A PIL image goes to ``as_rgb_uint8`` as it is (not through ``np.asarray``), so it gets the
    same EXIF orientation and mode conversion (palette -> colours, 16-bit, ...) as the file it
    was decoded from would get from ``read_image``."""
    from oddeye.io.images import as_rgb_uint8, read_image

    if isinstance(item, (str, Path)):
        return read_image(item)
    if isinstance(item, Image.Image):
        return as_rgb_uint8(item, name=name or "image")
    return as_rgb_uint8(np.asarray(item), name=name or "array")


def resize_uint8(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 RGB image to size x size (bilinear, antialiased, no crop)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a {0,1} mask with nearest neighbour, so it stays binary."""
    if mask.shape[0] == size and mask.shape[1] == size:
        return mask
    return np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((size, size), Image.NEAREST))


def to_batch(images: Sequence[np.ndarray]) -> torch.Tensor:
    """Stack resized uint8 (H, W, 3) images into a uint8 tensor (N, 3, H, W)."""
    arr = np.stack(images)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="oddeye-io")
    return _POOL


def load_resized(items: Sequence[ImageLike], size: int) -> list[np.ndarray]:
    """Decode and resize images in a small thread pool (Pillow releases the GIL)."""
    return load_resized_with_shapes(items, size)[0]


def load_resized_with_shapes(items: Sequence[ImageLike],
                             size: int) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """``load_resized`` plus each image's own (H, W) before the resize (to check its mask)."""
    def one(item: ImageLike) -> tuple[np.ndarray, tuple[int, int]]:
        rgb = load_rgb(item)
        return resize_uint8(rgb, size), (rgb.shape[0], rgb.shape[1])

    pairs = list(_pool().map(one, items))
    return [a for a, _ in pairs], [hw for _, hw in pairs]


class Normalize(nn.Module):
    """uint8 or [0, 255] float batch (N, 3, H, W) -> ImageNet-normalised float (in the graph)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.register_buffer("mean", m, persistent=False)
        self.register_buffer("std", s, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std
