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
    """Boolean border pixels of a binary mask (pixels within ``width`` steps of its edge).

    The erosion runs on the mask's bounding box only (plus a one-pixel frame of background, so
    the result is the whole image's): a small defect on a camera-sized image costs little."""
    m = mask.astype(bool)
    if not m.any():
        return m
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    r0, r1 = max(rows[0] - 1, 0), min(rows[-1] + 2, m.shape[0])
    c0, c1 = max(cols[0] - 1, 0), min(cols[-1] + 2, m.shape[1])
    box = m[r0:r1, c0:c1]
    out = np.zeros_like(m)
    out[r0:r1, c0:c1] = box & ~ndimage.binary_erosion(box, iterations=width, border_value=0)
    return out


#: Levels of the normalised score the overlay's colour and opacity are tabulated at: a colour
#: differs from the exact ramp by at most half a level's step (under 1/255 of the ramp).
LEVELS = 1024
#: Rows blended at a time: temporaries stay a few MB on a 24-megapixel image.
CHUNK_ROWS = 256


def _tables(alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(colour times opacity (LEVELS, 3), what is kept of the image (LEVELS, 1)), both in
    1/256, per level of the normalised score; weak evidence stays mostly transparent so the
    part itself stays visible."""
    v = np.linspace(0.0, 1.0, LEVELS)
    opacity = np.rint(256 * alpha * np.clip(v * 1.6, 0.15, 1.0)).astype(np.uint16)[:, None]
    return colormap(v).astype(np.uint16) * opacity, 256 - opacity


def overlay(image: np.ndarray, amap: np.ndarray, threshold: float, scale: float,
            alpha: float = 0.45) -> np.ndarray:
    """Blend the coloured map on a uint8 RGB image of the same (H, W); outline map > threshold.

    Tabulated colours and integer blending, a band of rows at a time: the float version held
    several full-size float64 copies (about 2.6 GB and 10 s for a 24-megapixel photo)."""
    if image.shape[:2] != amap.shape:
        raise ValueError(f"image {image.shape[:2]} and map {amap.shape} sizes differ")
    tint, keep = _tables(alpha)
    h = amap.shape[0]
    out = np.empty(image.shape[:2] + (3,), np.uint8)
    for r0 in range(0, h, CHUNK_ROWS):
        band = slice(r0, min(r0 + CHUNK_ROWS, h))
        level = np.rint(normalized_map(amap[band], threshold, scale) * (LEVELS - 1))
        level = level.astype(np.intp)
        mixed = image[band].astype(np.uint16) * keep[level] + tint[level] + 128
        out[band] = (mixed >> 8).astype(np.uint8)
    edge = outline(amap > threshold, width=max(1, min(image.shape[:2]) // 200))
    out[edge] = (255, 0, 255)
    return out
