"""Synthetic defect images in the MVTec AD layout: the embedded demo data set and the test data.

Every image is rendered with vectorised numpy from its own random stream, derived from
``(seed, class, split, index)``, so any subset of classes, defects or counts reproduces the same
bytes as the full set. Defects are alpha-blended onto the clean scene before the shared lighting
and sensor noise, and the written mask is exactly the set of pixels the defect changed.
Internally colour images are planar float32 (3, H, W): numpy broadcasts over a trailing axis of
length 3 are an order of magnitude slower than over whole rows.
"""

from __future__ import annotations

import os
import shutil
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from statistics import NormalDist

import numpy as np
from PIL import Image

from oddeye.errors import DataError

TEXTURES: tuple[str, ...] = ("noise", "stripes", "grid", "wood")
OBJECTS: tuple[str, ...] = ("disc", "nut")
CLASSES: tuple[str, ...] = TEXTURES + OBJECTS
DEFECT_TYPES: tuple[str, ...] = ("scratch", "spot", "hole", "crack", "stain")

#: Bumped whenever a change alters the rendered bytes for a given seed.
GENERATOR_VERSION = 1
MIN_SIZE = 32
MAX_SIZE = 2048
SOURCE_MARKER = "oddeye synthetic data"

Box = tuple[slice, slice]  # (rows, columns) of a rectangle of the image

_SPLIT_TRAIN = 1
_SPLIT_TEST_GOOD = 2
_F32 = np.float32


# --------------------------------------------------------------------------------------------
# small pure helpers
# --------------------------------------------------------------------------------------------


def _name_key(name: str) -> int:
    """Stable integer for a class/defect name (not Python's salted hash), for seeding."""
    return zlib.crc32(name.encode("utf-8"))


def _streams(seed: int, class_name: str, split: int, index: int) -> tuple[np.random.Generator, ...]:
    """Independent generators (scene, defect, sensor) for one image of (seed, class, split, i)."""
    ss = np.random.SeedSequence([seed, _name_key(class_name), split, index])
    return tuple(np.random.Generator(np.random.PCG64(child)) for child in ss.spawn(3))


@lru_cache(maxsize=8)
def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (X, Y) in image units: -0.5..0.5 across the image."""
    c = ((np.arange(size, dtype=_F32) + 0.5) / size - 0.5).astype(_F32)
    y, x = np.meshgrid(c, c, indexing="ij")
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


@lru_cache(maxsize=64)
def _band(size: int, sigma_x: float, sigma_y: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and gains of the rfft2 coefficients a Gaussian blur keeps (gain > 1e-3)."""
    cut = np.sqrt(np.log(1e3) / (2.0 * np.pi**2))  # |f| * sigma beyond which the gain is < 1e-3
    ky = int(min(size // 2, np.ceil(cut * size / sigma_y)))
    kx = int(min(size // 2, np.ceil(cut * size / sigma_x)))
    rows = np.unique(np.r_[np.arange(0, ky + 1), np.arange(size - ky, size)] % size)
    cols = np.arange(0, kx + 1)
    fy = np.fft.fftfreq(size)[rows][:, None]
    fx = np.fft.rfftfreq(size)[cols][None, :]
    gain = np.exp(-2.0 * np.pi**2 * (sigma_y**2 * fy**2 + sigma_x**2 * fx**2)).astype(_F32)
    for a in (rows, cols, gain):
        a.flags.writeable = False
    return rows, cols, gain


def _smooth_noise(
    rng: np.random.Generator,
    size: int,
    sigma: float,
    channels: int = 1,
    sigma_y: float | None = None,
) -> np.ndarray:
    """Periodic Gaussian random field (channels, size, size) with unit std per channel.

    Drawn directly in the Fourier domain, only where the Gaussian blur of white noise of the given
    sigma (px; sigma_y for an anisotropic blur) keeps energy: a smooth field is one inverse FFT.
    """
    rows, cols, gain = _band(size, float(sigma), float(sigma if sigma_y is None else sigma_y))
    coef = rng.standard_normal((2, channels, rows.size, cols.size), dtype=_F32)
    band = (coef[0] + 1j * coef[1]) * gain
    spec = np.zeros((channels, size, size // 2 + 1), dtype=np.complex64)
    n_low = int(np.count_nonzero(rows <= size // 2))  # rows 0..ky, then the negative frequencies
    spec[:, :n_low, : cols.size] = band[:, :n_low]
    if n_low < rows.size:
        spec[:, size - (rows.size - n_low) :, : cols.size] = band[:, n_low:]
    spec[:, 0, 0] = 0.0
    out = np.fft.irfft2(spec, s=(size, size))
    out /= out.std(axis=(1, 2), keepdims=True) + _F32(1e-8)
    return out.astype(_F32, copy=False)


def _box(size: int, x0: float, x1: float, y0: float, y1: float) -> Box:
    """Pixel box covering [x0, x1] x [y0, y1] (pixel units), clipped to the image (may be empty)."""
    cx0, cx1 = int(np.clip(np.floor(x0), 0, size)), int(np.clip(np.ceil(x1), 0, size))
    cy0, cy1 = int(np.clip(np.floor(y0), 0, size)), int(np.clip(np.ceil(y1), 0, size))
    return slice(cy0, max(cy0, cy1)), slice(cx0, max(cx0, cx1))


def _planes(box: Box) -> tuple[slice, slice, slice]:
    """Index of a box in a planar (3, H, W) image."""
    return (slice(None), *box)


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite ramp from 0 at edge0 to 1 at edge1 (edges may be reversed)."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _rotate(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates rotated by -angle (so the content appears rotated by +angle)."""
    c, s = float(np.cos(angle)), float(np.sin(angle))  # Python floats keep float32 arrays float32
    return c * x + s * y, -s * x + c * y


def _norm(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean length; several times faster than np.hypot for float32 images."""
    return np.sqrt(x * x + y * y)


def _colour(*rgb: float) -> np.ndarray:
    """An RGB colour shaped (3, 1, 1) to broadcast over planar images."""
    return np.array(rgb, dtype=_F32).reshape(3, 1, 1)


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-pixel mix of colours a and b by weight t (H, W) -> (3, H, W)."""
    return a + (b - a) * t


# --------------------------------------------------------------------------------------------
# scenes (normal images)
# --------------------------------------------------------------------------------------------


@dataclass
class _Scene:
    """A clean rendered scene in float RGB 0..255 plus where defects may be placed."""

    image: np.ndarray  # (3, H, W) float32
    region: np.ndarray  # (H, W) bool: pixels a defect may change (the object, or everything)
    depth: np.ndarray  # (H, W) float32: distance in px to the region's border (large = interior)
    background: np.ndarray | None = None  # (3, H, W): what a hole through the object reveals


@lru_cache(maxsize=8)
def _frame_depth(size: int) -> np.ndarray:
    """Distance in pixels to the image border (textures: keeps defect centres inside)."""
    x, y = _coords(size)
    depth = ((0.5 - np.maximum(np.abs(x), np.abs(y))) * size).astype(_F32)
    depth.flags.writeable = False
    return depth


def _texture_scene(image: np.ndarray) -> _Scene:
    size = image.shape[-1]
    region = np.ones((size, size), dtype=bool)
    return _Scene(np.asarray(image, dtype=_F32), region, _frame_depth(size))


def _scene_noise(rng: np.random.Generator, size: int) -> _Scene:
    """Mottled surface: two octaves of smooth coloured noise around a grey-green."""
    coarse = _smooth_noise(rng, size, size / 22.0, channels=3)
    fine = _smooth_noise(rng, size, size / 90.0)[0]
    lum = 0.85 * coarse[0] + 0.35 * fine
    img = _colour(124, 130, 112) + 24.0 * lum
    img += _colour(7.0, -2.1, -4.9) * coarse[1]
    img += _colour(-3.5, 1.4, 7.0) * coarse[2]
    return _texture_scene(img)


def _scene_stripes(rng: np.random.Generator, size: int) -> _Scene:
    """Woven-tape stripes at ~25 degrees with random phase and small angle/period jitter."""
    x, y = _coords(size)
    angle = np.deg2rad(25.0 + rng.normal(0.0, 1.5))
    period = 0.075 * (1.0 + rng.uniform(-0.03, 0.03))
    u, _ = _rotate(x, y, angle)
    t = u / period + rng.uniform(0.0, 1.0)
    w = (np.tanh(2.5 * np.sin(2.0 * np.pi * t)) / float(np.tanh(2.5)) + 1.0) * 0.5
    fibre = _smooth_noise(rng, size, size / 160.0)[0]
    img = _lerp(_colour(46, 58, 96), _colour(214, 204, 176), w)
    img += 7.0 * fibre
    return _texture_scene(img)


def _scene_grid(rng: np.random.Generator, size: int) -> _Scene:
    """Woven wire mesh: rounded light wires on a dark backing, random phase and slight rotation."""
    x, y = _coords(size)
    angle = np.deg2rad(rng.normal(0.0, 1.5))
    period = 0.0625 * (1.0 + rng.uniform(-0.02, 0.02))
    xr, yr = _rotate(x, y, angle)
    u = xr / period + rng.uniform(0.0, 1.0)
    v = yr / period + rng.uniform(0.0, 1.0)
    half, soft = 0.15, 0.04
    du = np.abs(u - np.floor(u) - 0.5)
    dv = np.abs(v - np.floor(v) - 0.5)
    # a round wire: bright along its axis, darker towards its edges, soft silhouette
    wire_u = _smoothstep(half + soft, half - soft, du)
    wire_u *= np.sqrt(np.clip(1.0 - (du / (half + soft)) ** 2, 0.0, 1.0))
    wire_v = _smoothstep(half + soft, half - soft, dv)
    wire_v *= np.sqrt(np.clip(1.0 - (dv / (half + soft)) ** 2, 0.0, 1.0))
    over = (np.floor(u + 0.5) + np.floor(v + 0.5)) % 2  # which wire is on top at a crossing
    val = np.maximum(wire_u * (0.8 + 0.2 * over), wire_v * (1.0 - 0.2 * over))
    backing = _smooth_noise(rng, size, size / 50.0)[0]
    img = _lerp(_colour(30, 32, 36), _colour(196, 194, 184), val)
    img += 4.0 * backing
    return _texture_scene(img)


def _scene_wood(rng: np.random.Generator, size: int) -> _Scene:
    """Plank grain: warped growth rings (light early, dark late wood) and long fibre streaks."""
    x, y = _coords(size)
    angle = np.deg2rad(rng.normal(0.0, 2.0))
    _, yr = _rotate(x, y, angle)
    warp = _smooth_noise(rng, size, size / 5.0, sigma_y=size / 10.0)[0]
    period = 0.05 * (1.0 + rng.uniform(-0.05, 0.05))
    t = yr / period + 0.8 * warp + rng.uniform(0.0, 1.0)
    frac = t - np.floor(t)
    ring = _smoothstep(0.45, 0.92, frac) * _smoothstep(1.0, 0.96, frac)
    streak = _smooth_noise(rng, size, size / 10.0, sigma_y=size / 320.0)[0]
    img = _lerp(_colour(206, 160, 108), _colour(128, 80, 42), 0.85 * ring)
    img += _colour(9.0, 7.2, 5.4) * streak
    return _texture_scene(img)


def _object_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Dark matte table with a faint mottling, shared by the object classes."""
    mottle = _smooth_noise(rng, size, size / 40.0)[0]
    return _colour(58, 60, 66) + 3.0 * mottle


def _pose(rng: np.random.Generator, max_shift: float, max_deg: float) -> tuple[float, float, float]:
    dx, dy = np.clip(rng.normal(0.0, max_shift / 2.0, 2), -max_shift, max_shift)
    return float(dx), float(dy), float(np.deg2rad(rng.uniform(-max_deg, max_deg)))


_LIGHT = tuple(v / float(np.sqrt(0.45**2 + 0.55**2 + 0.70**2)) for v in (-0.45, -0.55, 0.70))


def _radial_light(dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Component of the (top-left) light direction along the outward radial direction."""
    return (dx * _LIGHT[0] + dy * _LIGHT[1]) / np.maximum(r, _F32(1e-6))


def _tilt_shade(radial: np.ndarray, tilt_deg: float) -> np.ndarray:
    """Lambert shade of a surface tilted radially (outward for tilt > 0)."""
    tilt = float(np.deg2rad(tilt_deg))
    return np.clip(radial * float(np.sin(tilt)) + float(np.cos(tilt)) * _LIGHT[2], 0.0, 1.0)


def _object_box(size: int, cx: float, cy: float, reach: float) -> Box:
    """Pixel box of the square (cx, cy) +- reach in image units (object, bevel and shadow)."""
    return _box(size, (cx - reach + 0.5) * size - 1, (cx + reach + 0.5) * size + 1,
                (cy - reach + 0.5) * size - 1, (cy + reach + 0.5) * size + 1)  # fmt: skip


def _place_object(
    bg: np.ndarray, box: Box, face: np.ndarray, cover: np.ndarray, shadow: np.ndarray,
    depth: np.ndarray,
) -> _Scene:  # fmt: skip
    """Composite an object rendered over box onto the full background (shadow, then face)."""
    size = bg.shape[-1]
    planes = _planes(box)
    bg[planes] *= 1.0 - 0.4 * shadow
    img = bg.copy()
    img[planes] += (face - bg[planes]) * cover
    region = np.zeros((size, size), dtype=bool)
    region[box] = cover >= 0.5
    full_depth = np.full((size, size), -float(size), dtype=_F32)
    full_depth[box] = depth
    return _Scene(img, region, full_depth, bg)


def _scene_disc(rng: np.random.Generator, size: int) -> _Scene:
    """Turned metal cap: flat face, bevelled rim, a groove and an off-centre embossed mark."""
    cx, cy, rot = _pose(rng, 0.04, 15.0)
    radius = 0.33 * (1.0 + rng.uniform(-0.01, 0.01))
    box = _object_box(size, cx, cy, radius + 0.08)
    x, y = _coords(size)
    dx, dy = x[box] - cx, y[box] - cy
    r = _norm(dx, dy)
    xr, yr = _rotate(dx, dy, rot)
    cover = np.clip((radius - r) * size + 0.5, 0.0, 1.0)

    radial = _radial_light(dx, dy, r)
    flat = _LIGHT[2]
    outer = _tilt_shade(radial, 45.0)
    inner = _tilt_shade(radial, -30.0)
    shade = flat + (outer - flat) * _smoothstep(0.86 * radius, 0.9 * radius, r)
    ring_in = _smoothstep(0.74 * radius, 0.77 * radius, r)
    ring_in *= _smoothstep(0.84 * radius, 0.81 * radius, r)
    shade += (inner - shade) * ring_in
    groove = np.exp(-(((r - 0.52 * radius) / (0.015 * radius)) ** 2))
    shade *= 1.0 - 0.35 * groove
    bar = _smoothstep(0.13 * radius, 0.11 * radius, np.abs(xr - 0.3 * radius))
    bar *= _smoothstep(0.05 * radius, 0.03 * radius, np.abs(yr))
    dot = _smoothstep(0.07 * radius, 0.05 * radius, _norm(xr + 0.3 * radius, yr))
    brushed = _smooth_noise(rng, size, size / 200.0)[0][box]
    face = _colour(180, 176, 164) * (0.45 + 0.6 * shade)
    face += 28.0 * bar - 30.0 * dot + 3.0 * brushed

    bg = _object_background(rng, size)
    shadow = _smoothstep(radius + 0.04, radius - 0.02, _norm(dx - 0.015, dy - 0.02))
    return _place_object(bg, box, face, cover, shadow, (radius - r) * size)


def _hex_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Distance-like measure whose level sets are hexagons (equals the apothem on the edges)."""
    s3 = float(np.sqrt(3.0)) / 2.0
    return np.maximum(np.abs(x), np.maximum(np.abs(0.5 * x + s3 * y), np.abs(0.5 * x - s3 * y)))


def _scene_nut(rng: np.random.Generator, size: int) -> _Scene:
    """Hex nut seen from above: chamfered corners, threaded bore showing the table through it."""
    cx, cy, rot = _pose(rng, 0.04, 10.0)
    apothem = 0.28 * (1.0 + rng.uniform(-0.01, 0.01))
    bore = 0.115
    box = _object_box(size, cx, cy, apothem * 1.155 + 0.07)
    x, y = _coords(size)
    dx, dy = x[box] - cx, y[box] - cy
    xr, yr = _rotate(dx, dy, rot)
    r = _norm(dx, dy)
    hexd = _hex_distance(xr, yr)
    cover = np.clip((apothem - hexd) * size + 0.5, 0.0, 1.0)
    cover *= np.clip((r - bore) * size + 0.5, 0.0, 1.0)

    radial = _radial_light(dx, dy, r)
    flat = _LIGHT[2]
    chamfer = _tilt_shade(radial, 40.0)
    thread = _tilt_shade(radial, -45.0)
    shade = flat + (chamfer - flat) * _smoothstep(0.97 * apothem, 1.0 * apothem, r)
    # the threaded bevel around the bore: a helix, so it needs the polar angle (only near the bore)
    close = r < bore * 1.35
    rows, cols = np.flatnonzero(close.any(axis=1)), np.flatnonzero(close.any(axis=0))
    if rows.size:
        near = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        rn = r[near]
        theta = np.arctan2(yr[near], xr[near])
        helix = 0.5 + 0.5 * np.sin(2.0 * np.pi * ((rn - bore) / 0.012 + theta / (2.0 * np.pi)))
        in_thread = _smoothstep(bore * 1.32, bore * 1.25, rn)
        shade[near] += (thread[near] * (0.7 + 0.3 * helix) - shade[near]) * in_thread
    brushed = _smooth_noise(rng, size, size / 150.0)[0][box]
    face = _colour(166, 170, 178) * (0.45 + 0.6 * shade) + 3.0 * brushed

    bg = _object_background(rng, size)
    sx, sy = _rotate(dx - 0.015, dy - 0.02, rot)
    shadow = _smoothstep(apothem + 0.035, apothem - 0.02, _hex_distance(sx, sy))
    shadow *= _smoothstep(bore - 0.02, bore + 0.02, _norm(dx - 0.015, dy - 0.02))
    depth = np.minimum(apothem - hexd, r - bore) * size
    return _place_object(bg, box, face, cover, shadow, depth)


_SCENES: dict[str, Callable[[np.random.Generator, int], _Scene]] = {
    "noise": _scene_noise,
    "stripes": _scene_stripes,
    "grid": _scene_grid,
    "wood": _scene_wood,
    "disc": _scene_disc,
    "nut": _scene_nut,
}


# --------------------------------------------------------------------------------------------
# defects: each returns a _Patch; only pixels with alpha > 0 (its footprint) are changed
# --------------------------------------------------------------------------------------------

_MIN_LINE_ALPHA = 0.3


@dataclass
class _Patch:
    """A defect as a blend over a box of the image: image[box] -> lerp(image, target, alpha)."""

    box: Box
    alpha: np.ndarray  # (h, w) float32 in [0, 1]; the defect's footprint is alpha > 0
    target: np.ndarray  # (3, h, w) float32: what the surface looks like where alpha is 1


def _pick_centre(rng: np.random.Generator, scene: _Scene, margin_px: float) -> tuple[float, float]:
    """A pixel centre (x, y) in pixel units whose distance to the region border is >= margin."""
    ok = np.flatnonzero(scene.depth.ravel() >= margin_px)
    if ok.size == 0:
        ok = np.flatnonzero(scene.depth.ravel() >= scene.depth.max())
    row, col = divmod(int(ok[rng.integers(ok.size)]), scene.depth.shape[1])
    return col + 0.5, row + 0.5


def _pixel_grid(box: Box) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y) in pixel units over a box."""
    py, px = np.mgrid[box].astype(_F32)
    return px + _F32(0.5), py + _F32(0.5)


def _blob_shape(
    rng: np.random.Generator,
    size: int,
    centre: tuple[float, float],
    radius: float,
    wobble: float,
    harmonics: int,
) -> tuple[Box, np.ndarray]:
    """Box and normalised radius rho over it of an irregular ellipse (rho <= 1 is inside).

    Sizes in pixels. The outline is an ellipse (aspect 0.6..1) whose radius wobbles with a few
    random harmonics; the box bounds the largest radius the harmonics can reach.
    """
    aspect = rng.uniform(0.6, 1.0)
    angle = rng.uniform(0.0, np.pi)
    reach = radius * (1.0 + wobble * sum(1.0 / (k - 1) for k in range(2, 2 + harmonics))) + 1.0
    cx, cy = centre
    box = _box(size, cx - reach, cx + reach, cy - reach, cy + reach)
    px, py = _pixel_grid(box)
    xr, yr = _rotate(px - cx, py - cy, angle)
    yr = yr / aspect
    theta = np.arctan2(yr, xr)
    edge = np.ones_like(theta)
    for k in range(2, 2 + harmonics):
        edge += rng.uniform(0.0, wobble) / (k - 1) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return box, _norm(xr, yr) / (radius * np.maximum(edge, _F32(0.3)))


def _local_level(image: np.ndarray, alpha: np.ndarray) -> float:
    """Mean brightness of a planar crop under a footprint (to pick a visible defect polarity)."""
    inside = alpha > 0
    return float(image[:, inside].mean()) if inside.any() else 128.0


def _signed_delta(rng: np.random.Generator, level: float, low: float, high: float) -> float:
    """Brightness change with a polarity that stays visible: darker on bright, brighter on dark."""
    mag = rng.uniform(low, high)
    if level > 150:
        sign = -1.0
    elif level < 100:
        sign = 1.0
    else:
        sign = 1.0 if rng.random() < 0.5 else -1.0
    return sign * mag


def _lines_box(size: int, lines: list[np.ndarray], width_px: float) -> Box:
    pts = np.concatenate(lines)
    pad = width_px / 2.0 + 2.0
    return _box(size, pts[:, 0].min() - pad, pts[:, 0].max() + pad,
                pts[:, 1].min() - pad, pts[:, 1].max() + pad)  # fmt: skip


def _polyline_alpha(box: Box, points: np.ndarray, width_px: float) -> np.ndarray:
    """Anti-aliased coverage over box of a polyline of the given width; points in pixel units."""
    px, py = _pixel_grid(box)
    if py.size == 0:
        return np.zeros(py.shape, dtype=_F32)
    q = np.stack([px.ravel(), py.ravel()], axis=1)[:, None, :]  # (M, 1, 2)
    pts = points.astype(_F32)
    a, b = pts[:-1][None], pts[1:][None]  # (1, S, 2)
    ab = b - a
    t = np.clip(((q - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), _F32(1e-9)), 0.0, 1.0)
    dist = np.sqrt(((q - (a + t[..., None] * ab)) ** 2).sum(-1).min(axis=1))
    cov = np.clip(width_px / 2.0 + 0.5 - dist, 0.0, 1.0).reshape(py.shape)
    return np.where(cov >= _MIN_LINE_ALPHA, cov, 0.0).astype(_F32)


def _line_width(rng: np.random.Generator, size: int, low: float, high: float) -> float:
    return max(1.0, rng.uniform(low, high) * size / 256.0)


def _defect_scratch(rng: np.random.Generator, scene: _Scene) -> _Patch:
    """Thin curved bright or dark line (quadratic Bezier), 15-35% of the image long."""
    size = scene.image.shape[-1]
    length = rng.uniform(0.15, 0.35) * size
    mid = np.array(_pick_centre(rng, scene, 0.1 * length))
    ang = rng.uniform(0.0, np.pi)
    along = np.array([np.cos(ang), np.sin(ang)])
    normal = np.array([-along[1], along[0]])
    p0, p2 = mid - along * length / 2, mid + along * length / 2
    p1 = mid + normal * rng.uniform(-0.3, 0.3) * length
    t = np.linspace(0.0, 1.0, 32)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    width = _line_width(rng, size, 1.0, 2.4)
    box = _lines_box(size, [pts], width)
    alpha = _polyline_alpha(box, pts, width) * scene.region[box]
    base = scene.image[_planes(box)]
    delta = _signed_delta(rng, _local_level(base, alpha), 60.0, 110.0)
    return _Patch(box, alpha, base + _F32(delta))


def _defect_crack(rng: np.random.Generator, scene: _Scene) -> _Patch:
    """Thin jagged dark line (random walk) with one to three thinner side branches."""
    size = scene.image.shape[-1]
    length = rng.uniform(0.12, 0.28) * size
    start = np.array(_pick_centre(rng, scene, 0.1 * length))
    steps = 12
    turns = rng.normal(0.0, 0.35, steps) + np.cumsum(rng.normal(0.0, 0.12, steps))
    turns += rng.uniform(0.0, 2 * np.pi)
    seg = length / steps * rng.uniform(0.7, 1.3, steps)
    walk = np.cumsum(np.stack([np.cos(turns) * seg, np.sin(turns) * seg], axis=1), axis=0)
    main = np.vstack([start, start + walk]) - walk[-1] / 2  # centre the crack on the picked point
    width = _line_width(rng, size, 1.0, 2.0)
    lines = [(main, width)]
    for _ in range(int(rng.integers(1, 4))):
        root = main[int(rng.integers(2, steps - 1))]
        base = turns[int(rng.integers(0, steps))] + rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.1)
        n = 6
        bturn = rng.normal(0.0, 0.35, n) + base
        bseg = length * rng.uniform(0.25, 0.5) / n
        bwalk = np.cumsum(np.stack([np.cos(bturn) * bseg, np.sin(bturn) * bseg], axis=1), axis=0)
        lines.append((np.vstack([root, root + bwalk]), max(1.0, 0.7 * width)))
    box = _lines_box(size, [pts for pts, _ in lines], width)
    alpha = np.max([_polyline_alpha(box, pts, w) for pts, w in lines], axis=0)
    alpha = alpha * scene.region[box]
    return _Patch(box, alpha, scene.image[_planes(box)] * _F32(0.22))


def _defect_spot(rng: np.random.Generator, scene: _Scene) -> _Patch:
    """Small irregular blob of different brightness, solid core with a softer rim."""
    size = scene.image.shape[-1]
    radius = max(rng.uniform(0.028, 0.055) * size, 2.5)
    centre = _pick_centre(rng, scene, radius)
    box, rho = _blob_shape(rng, size, centre, radius, 0.2, 3)
    inside = (rho <= 1.0) & scene.region[box]
    alpha = np.where(inside, 0.55 + 0.45 * _smoothstep(1.0, 0.5, rho), 0.0).astype(_F32)
    base = scene.image[_planes(box)]
    delta = _signed_delta(rng, _local_level(base, alpha), 50.0, 85.0)
    return _Patch(box, alpha, base + _F32(delta))


def _defect_hole(rng: np.random.Generator, scene: _Scene) -> _Patch:
    """Missing material: an irregular opening showing the table (objects) or a dark void."""
    size = scene.image.shape[-1]
    radius = max(rng.uniform(0.04, 0.08) * size, 3.0)
    centre = _pick_centre(rng, scene, 0.6 * radius)
    box, rho = _blob_shape(rng, size, centre, radius, 0.25, 4)
    inside = (rho <= 1.0) & scene.region[box]
    if scene.background is not None:
        target = scene.background[_planes(box)] * _F32(0.85)
    else:
        target = _colour(20, 18, 17)
    # a dark rim where the broken edge casts a shadow, the void itself slightly lighter
    target = target * (1.0 - 0.5 * _smoothstep(0.7, 1.0, rho))
    return _Patch(box, inside.astype(_F32), target.astype(_F32))


_STAIN_TINTS = (
    (55.0, 12.0, -38.0),  # rust
    (-38.0, -12.0, 42.0),  # bluish oil film
    (18.0, 40.0, -30.0),  # yellow-green residue
    (-42.0, -36.0, -24.0),  # dark water mark
)


def _defect_stain(rng: np.random.Generator, scene: _Scene) -> _Patch:
    """Larger blotchy region tinted towards a colour (rust, oil, residue, water mark)."""
    size = scene.image.shape[-1]
    radius = max(rng.uniform(0.06, 0.12) * size, 4.0)
    centre = _pick_centre(rng, scene, 0.5 * radius)
    box, rho = _blob_shape(rng, size, centre, radius, 0.35, 5)
    inside = (rho <= 1.0) & scene.region[box]
    strength = rng.uniform(0.6, 0.9)
    alpha = np.where(inside, strength * (0.5 + 0.5 * _smoothstep(1.0, 0.4, rho)), 0.0)
    tint = _colour(*_STAIN_TINTS[int(rng.integers(len(_STAIN_TINTS)))])
    tint = tint * _F32(rng.uniform(1.0, 1.3))
    # stains absorb some light as well as tinting, so they also show on dark or saturated areas
    target = scene.image[_planes(box)] * _F32(rng.uniform(0.7, 0.85)) + tint
    return _Patch(box, alpha.astype(_F32), target)


_DEFECTS: dict[str, Callable[[np.random.Generator, _Scene], _Patch]] = {
    "scratch": _defect_scratch,
    "spot": _defect_spot,
    "hole": _defect_hole,
    "crack": _defect_crack,
    "stain": _defect_stain,
}


# --------------------------------------------------------------------------------------------
# camera and the one-index renderer
# --------------------------------------------------------------------------------------------


def _camera(scene_rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image lighting: a global gain with slight white-balance jitter and a gentle gradient."""
    x, y = _coords(size)
    gain = scene_rng.uniform(0.9, 1.1) * (1.0 + scene_rng.uniform(-0.02, 0.02, 3))
    gx, gy = (float(v) for v in scene_rng.uniform(-0.08, 0.08, 2))
    field = 1.0 + gx * x + gy * y
    return gain.astype(_F32).reshape(3, 1, 1), field


def _gauss_levels() -> np.ndarray:
    """256 equally likely standard-normal values: noise by table lookup of random bytes."""
    levels = np.array([NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)])
    return (levels / levels.std()).astype(_F32)


_GAUSS_LEVELS = _gauss_levels()


def _expose(
    image: np.ndarray, gain: np.ndarray, field: np.ndarray, noise: np.ndarray
) -> np.ndarray:
    """Light a planar image, add sensor noise, quantise to interleaved uint8 (H, W, 3)."""
    out = image * field
    out *= gain
    out += noise
    planar = np.clip(np.rint(out, out=out), 0, 255, out=out).astype(np.uint8)
    return np.ascontiguousarray(planar.transpose(1, 2, 0))


def render_sample(
    class_name: str, split: str, index: int, seed: int = 0, size: int = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one sample as (normal uint8 RGB, defective uint8 RGB, mask uint8 {0,1}).

    ``split`` is "train" or "test" (good images: the defective image is the normal one and the
    mask is empty) or a defect name. The normal image is the same scene, lighting and sensor noise
    without the defect, so ``mask == (normal != defective).any(-1)`` holds exactly.
    """
    _check_name(class_name, CLASSES, "class_name")
    _check_name(split, ("train", "test") + DEFECT_TYPES, "split")
    index = _check_int(index, "index", 0)
    seed = _check_int(seed, "seed", 0)
    size = _check_int(size, "size", MIN_SIZE, MAX_SIZE)
    split_key = {"train": _SPLIT_TRAIN, "test": _SPLIT_TEST_GOOD}.get(split) or _name_key(split)
    defect = split if split in DEFECT_TYPES else None
    scene_rng, defect_rng, sensor_rng = _streams(seed, class_name, split_key, index)
    scene = _SCENES[class_name](scene_rng, size)
    gain, field = _camera(scene_rng, size)
    levels = _GAUSS_LEVELS * _F32(sensor_rng.uniform(1.5, 3.0))  # sensor noise std 1.5..3
    noise = levels[sensor_rng.integers(0, 256, (3, size, size), dtype=np.uint8)]
    normal = _expose(scene.image, gain, field, noise)
    if defect is None:
        return normal, normal, np.zeros((size, size), dtype=np.uint8)
    min_px = max(4, size * size // 4000)
    for _ in range(20):  # redraw (deterministically) a defect that the object's edge clipped away
        patch = _DEFECTS[defect](defect_rng, scene)
        footprint = patch.alpha > 0
        if int(footprint.sum()) >= min_px:
            break
    if not footprint.any():
        raise RuntimeError(f"synth: no visible {defect} on {class_name} #{index} (seed {seed})")
    # only the patch's box is re-exposed: elementwise float32 maths gives the same bytes as a
    # full-frame exposure, so pixels outside the footprint stay identical to the normal image
    box, planes = patch.box, _planes(patch.box)
    clean = scene.image[planes]
    blended = np.where(footprint, clean + (patch.target - clean) * patch.alpha, clean)
    bad = normal.copy()
    bad[box] = _expose(blended.astype(_F32), gain, field[box], noise[planes])
    # inside the footprint a blend can round back to the same value (rare, e.g. at clipping):
    # nudge those pixels by two grey levels so the mask is exactly the set of changed pixels
    crop = bad[box]
    same = footprint & ~(crop != normal[box]).any(axis=-1)
    if same.any():
        px = crop[same].astype(np.int16)
        crop[same] = np.where(px < 128, px + 2, px - 2).astype(np.uint8)
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[box] = footprint
    return normal, bad, mask


# --------------------------------------------------------------------------------------------
# argument checks and writing the MVTec layout
# --------------------------------------------------------------------------------------------


def _check_name(value: object, valid: tuple[str, ...], arg: str) -> None:
    if not isinstance(value, str) or value not in valid:
        raise DataError(f"{arg}: unknown name {value!r}; valid names are {', '.join(valid)}")


def _select(
    values: str | Iterable[str] | None, valid: tuple[str, ...], arg: str
) -> tuple[str, ...]:
    """Validate a list of names (or a comma-separated string); None means all, order kept."""
    if values is None:
        return valid
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",") if v.strip()]
    picked: list[str] = []
    for value in values:
        _check_name(value, valid, arg)
        if value not in picked:
            picked.append(value)
    if not picked:
        raise DataError(f"{arg}: empty selection; valid names are {', '.join(valid)}")
    return tuple(picked)


def _check_int(value: object, arg: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataError(f"{arg}: expected an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise DataError(f"{arg}: must be {bound}, got {value}")
    return int(value)


def _save_png(array: np.ndarray, path: Path) -> None:
    # sensor noise leaves LZ77 nothing to match: Huffman-only coding is faster and smaller here
    Image.fromarray(array).save(
        path, format="PNG", compress_level=1, compress_type=zlib.Z_HUFFMAN_ONLY
    )


def _is_ours(folder: Path) -> bool:
    source = folder / "SOURCE.txt"
    return source.is_file() and source.read_text(errors="replace").startswith(SOURCE_MARKER)


def _check_class_dir(folder: Path) -> None:
    """Refuse to write over anything that is not an earlier output of this generator."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise DataError(f"out: {folder} exists and is not a folder")
    if not _is_ours(folder) and any(folder.iterdir()):
        raise DataError(
            f"out: {folder} is not empty and was not written by oddeye synth; refusing to overwrite"
        )


def _class_splits(folder: Path, counts: tuple[int, int, int],
                  kinds: tuple[str, ...]) -> list[tuple[str, Path, int]]:
    n_train, n_test_good, n_test_defect = counts
    splits = [("train", folder / "train" / "good", n_train),
              ("test", folder / "test" / "good", n_test_good)]
    return splits + [(kind, folder / "test" / kind, n_test_defect) for kind in kinds
                     if n_test_defect]


def _is_complete(folder: Path, source: str, counts: tuple[int, int, int],
                 kinds: tuple[str, ...]) -> bool:
    """True when ``folder`` holds exactly this request's output (same SOURCE.txt, every file)."""
    src = folder / "SOURCE.txt"
    if not (src.is_file() and src.read_text(errors="replace") == source):
        return False
    for split, img_dir, count in _class_splits(folder, counts, kinds):
        if not img_dir.is_dir() or len(list(img_dir.glob("*.png"))) != count:
            return False
        gt = folder / "ground_truth" / split
        if split in DEFECT_TYPES and len(list(gt.glob("*_mask.png"))) != count:
            return False
    return True


def _remove_dead_partials(root: Path, name: str) -> None:
    """Delete half-written copies of class ``name`` left by processes that no longer run (a
    killed run's ``.<name>.partial-<pid>-<thread>`` folder), never a live process's."""
    for tmp in root.glob(f".{name}.partial-*"):
        try:
            pid = int(tmp.name.rsplit(".partial-", 1)[1].split("-")[0])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:  # another user's live process
            continue


def _write_class(root: Path, name: str, seed: int, size: int, counts: tuple[int, int, int],
                 kinds: tuple[str, ...]) -> None:
    """Render one class into a private hidden folder, then move it into place.

    Runs with the same arguments write the same bytes, so concurrent runs (parallel benchmark
    processes) keep whichever complete copy lands first and never delete each other's half-written
    files; a complete earlier copy is kept as is. SOURCE.txt is written last.
    """
    final = root / name
    source = _source_text(name, seed, size, counts, kinds)
    if _is_complete(final, source, counts, kinds):
        return
    _remove_dead_partials(root, name)
    tmp = root / f".{name}.partial-{os.getpid()}-{threading.get_ident()}"
    try:
        for split, img_dir, count in _class_splits(tmp, counts, kinds):
            img_dir.mkdir(parents=True, exist_ok=True)
            gt_dir = tmp / "ground_truth" / split
            if split in DEFECT_TYPES:
                gt_dir.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                _, bad, mask = render_sample(name, split, i, seed=seed, size=size)
                _save_png(bad, img_dir / f"{i:03d}.png")
                if split in DEFECT_TYPES:
                    _save_png(mask * np.uint8(255), gt_dir / f"{i:03d}_mask.png")
        (tmp / "SOURCE.txt").write_text(source)
        if _is_complete(final, source, counts, kinds):  # a concurrent run finished first
            return
        _check_class_dir(final)
        if final.exists():
            shutil.rmtree(final)  # our own output of other arguments, or an interrupted copy
        try:
            os.rename(tmp, final)
        except OSError:
            if not _is_complete(final, source, counts, kinds):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _source_text(
    class_name: str, seed: int, size: int, counts: tuple[int, int, int], defects: tuple[str, ...]
) -> str:
    n_train, n_good, n_defect = counts
    return (
        f"{SOURCE_MARKER} (oddeye.data.synth, generator version {GENERATOR_VERSION}).\n"
        "Rendered, not photographed: for demos and tests, not for judging real inspection.\n"
        f"class: {class_name}\nseed: {seed}\nsize: {size}\n"
        f"counts: train/good {n_train}, test/good {n_good}, test/<defect> {n_defect} each\n"
        f"defects: {', '.join(defects)}\n"
        "masks: ground_truth/<defect>/NNN_mask.png, 255 exactly where the defect changed a pixel\n"
    )


def generate(
    out: str | Path,
    seed: int = 0,
    classes: str | Iterable[str] | None = None,
    n_train: int = 40,
    n_test_good: int = 10,
    n_test_defect: int = 4,
    size: int = 256,
    defects: str | Iterable[str] | None = None,
) -> Path:
    """Write a synthetic MVTec-AD-layout data set under ``out`` and return ``out``.

    ``classes``/``defects``: names from CLASSES/DEFECT_TYPES (list or comma-separated string; None
    = all). ``n_test_defect`` is per defect type. Same arguments give the same bytes; a subset of
    classes or defects gives the same files as the full set. Raises DataError on bad arguments.
    """
    seed = _check_int(seed, "seed", 0)
    picked = _select(classes, CLASSES, "classes")
    kinds = _select(defects, DEFECT_TYPES, "defects")
    n_train = _check_int(n_train, "n_train", 0)
    n_test_good = _check_int(n_test_good, "n_test_good", 0)
    n_test_defect = _check_int(n_test_defect, "n_test_defect", 0)
    size = _check_int(size, "size", MIN_SIZE, MAX_SIZE)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise DataError(f"out: {root} exists and is not a folder")
    for name in picked:
        _check_class_dir(root / name)  # before writing anything: refuse foreign folders early
    counts = (n_train, n_test_good, n_test_defect)
    for name in picked:
        _write_class(root, name, seed, size, counts, kinds)
    return root
