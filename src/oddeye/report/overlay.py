"""Heatmap overlays people can read: colour by normalised score, predicted defect outlined.

Colours mean the same thing on every image: a pixel is coloured by the model's normalised score
(0.5 exactly at the threshold), so red is "above threshold" everywhere, not "highest in this image".
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# A perceptually ordered blue -> cyan -> yellow -> red ramp (anchor points, linear in between).
_ANCHORS = np.array([[0.0, 0, 0, 130], [0.35, 0, 170, 255], [0.5, 255, 230, 0],
                     [0.7, 255, 120, 0], [1.0, 200, 0, 0]], dtype=np.float64)


def colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to uint8 RGB with the ramp above (vectorised)."""
    v = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0)
    rgb = [np.interp(v, _ANCHORS[:, 0], _ANCHORS[:, c]) for c in (1, 2, 3)]
    return np.stack(rgb, axis=-1).astype(np.uint8)


def normalized_map(amap: np.ndarray, threshold: float, scale: float) -> np.ndarray:
    """Per-pixel logistic normalisation matching the image score normalisation."""
    z = (amap.astype(np.float64) - threshold) / max(scale, 1e-12)
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """Boolean border pixels of a binary mask."""
    m = mask.astype(bool)
    if not m.any():
        return m
    return m & ~ndimage.binary_erosion(m, iterations=width, border_value=0)


def overlay(image: np.ndarray, amap: np.ndarray, threshold: float, scale: float,
            alpha: float = 0.45) -> np.ndarray:
    """Blend the coloured map on a uint8 RGB image of the same (H, W); outline map > threshold."""
    if image.shape[:2] != amap.shape:
        raise ValueError(f"image {image.shape[:2]} and map {amap.shape} sizes differ")
    norm = normalized_map(amap, threshold, scale)
    heat = colormap(norm).astype(np.float32)
    # weak evidence stays mostly transparent so the part itself stays visible
    a = (alpha * np.clip(norm * 1.6, 0.15, 1.0))[..., None]
    out = image.astype(np.float32) * (1 - a) + heat * a
    edge = outline(amap > threshold, width=max(1, min(image.shape[:2]) // 200))
    out[edge] = (255, 0, 255)
    return out.round().astype(np.uint8)
