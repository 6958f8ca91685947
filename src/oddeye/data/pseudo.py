"""Pseudo-anomalies on real good images, for validation without touching any test split.

Three kinds, each with the mask of the region it draws (no pixel outside it changes; a pixel
inside it may stay as it was where clipping at 0/255, a faint feathered edge or a low severity
leaves the value unchanged, about 5% of a stain's region at severity 0.1 in a review's check):
``cutpaste`` (a patch of another good image pasted with a
random flip and brightness change, as in CutPaste), ``blob`` (a smooth-edged region with shifted
intensity and colour) and ``scratch`` (a thin bright or dark polyline). A fourth, ``swap``, is
not among the default ``KINDS``: a large region replaced by the *same place* of another good
image, the most different one available (``farthest_donor``), so every patch inside it is normal
on some other part and only its disagreement with the rest of this part makes it a defect (a
surface finish or a component of the wrong variant). A fifth, ``stain``, also opt-in: a large
irregular region (a thresholded smooth random field, as the Perlin-noise masks of DRAEM)
whose tone or texture changes faintly, with feathered edges: discolouration, an uneven finish,
a smear, the large low-contrast defects the three small kinds never show. A sixth,
``contrast``, also opt-in: a stain-like region whose texture keeps its pattern and local mean
but not its amplitude (local contrast scaled down or up), so the backbone's features there
change mostly in size, not in direction: the change a direction-only patch distance
(PatchCore's ``cosine``) is blind to by construction. Used to choose
hyper-parameters on the training split of a real category (``oddeye.bench.selection_suite``), and
to train RD4AD's student to rebuild the clean features of a defective image (``pseudo``).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

KINDS = ("cutpaste", "blob", "scratch")
#: where a defect may sit: ``inner`` keeps region centres in the middle 60% of each side
#: (scratches start in the middle 70%), as every selection run before the twelfth session did;
#: only centres and starting points are placed, so a long scratch or a large swap can still
#: reach the border (about 6% of draws in a review's check);
#: ``anywhere`` draws them over the whole image, border included (the region is clipped by it)
PLACEMENTS = {"inner": ((0.2, 0.8), (0.15, 0.85)), "anywhere": ((0.0, 1.0), (0.0, 1.0))}
#: every kind ``make_pseudo_anomaly`` knows; ``swap`` is opt-in (see the module docstring)
ALL_KINDS = (*KINDS, "swap", "stain", "contrast")


def _ellipse_mask(h: int, w: int, rng: np.random.Generator, lo: float, hi: float,
                  centre: tuple[float, float] = PLACEMENTS["inner"][0]) -> np.ndarray:
    ry, rx = rng.uniform(lo, hi, size=2) * min(h, w)
    cy, cx = rng.uniform(*centre) * h, rng.uniform(*centre) * w
    yy, xx = np.mgrid[0:h, 0:w]
    ang = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(ang) + (yy - cy) * np.sin(ang)
    v = -(xx - cx) * np.sin(ang) + (yy - cy) * np.cos(ang)
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _field_mask(h: int, w: int, rng: np.random.Generator, area: float,
                centre: tuple[float, float]) -> np.ndarray:
    """An irregular region of about ``area`` of the image: the top of a smooth random field
    (white noise on a 3-6 cell grid, bicubic-upsampled) over the box the centres of ``centre``
    allow, widened by a tenth of each side. Unless the box is the whole image (``anywhere``),
    the grid gets a ring of low cells, so regions round off before the box's edges."""
    lo, hi = max(0.0, centre[0] - 0.1), min(1.0, centre[1] + 0.1)
    cells = int(rng.integers(3, 7))
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    if (lo, hi) != (0.0, 1.0):
        coarse = np.pad(coarse, 1, constant_values=-2.5)
    y0, y1 = int(lo * h), max(int(lo * h) + 1, int(np.ceil(hi * h)))
    x0, x1 = int(lo * w), max(int(lo * w) + 1, int(np.ceil(hi * w)))
    field = np.full((h, w), -np.inf, np.float32)
    field[y0:y1, x0:x1] = np.asarray(
        Image.fromarray(coarse, mode="F").resize((x1 - x0, y1 - y0), Image.BICUBIC))
    inside = field[y0:y1, x0:x1]
    keep = min(1.0, area * h * w / inside.size)
    return field >= np.quantile(inside, 1.0 - keep)


def _feathered_blend(out: np.ndarray, target: np.ndarray, mask: np.ndarray,
                     severity: float) -> np.ndarray:
    """``out`` blended towards ``target`` inside ``mask`` by ``severity``, the edges feathered
    inwards (the change fades in over ~1% of the side; none outside the mask)."""
    from scipy.ndimage import gaussian_filter

    edge = max(1.0, min(mask.shape) / 100)
    alpha = severity * (gaussian_filter(mask.astype(np.float32), edge) * mask)[..., None]
    return (1 - alpha) * out + alpha * target


def make_pseudo_anomaly(image: np.ndarray, donor: np.ndarray, rng: np.random.Generator,
                        kind: str | None = None, severity: float = 1.0,
                        placement: str = "inner") -> tuple[np.ndarray, np.ndarray]:
    """(defective uint8 image, {0,1} mask) from a good uint8 RGB image and another good donor.

    ``severity`` in (0, 1] scales how visible the defect is: the blend weight of the pasted patch
    and of the scratch, the intensity shift of the blob, and (from 1x down to 0.5x) the region's
    radii. 1 is the full-strength defect; lower values give the subtle defects a validation set
    needs so that candidate models do not all score 1.0 on it. ``swap`` is a replacement, never a
    blend (half of each of two normal finishes is a third texture, not a normal one): its severity
    scales only the region's size. ``placement`` (``PLACEMENTS``) says where the defect may sit.
    """
    if not 0 < severity <= 1:
        raise ValueError(f"severity must be in (0, 1], got {severity!r}")
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {tuple(PLACEMENTS)}, got {placement!r}")
    centre, start = PLACEMENTS[placement]
    h, w = image.shape[:2]
    kind = kind or KINDS[int(rng.integers(len(KINDS)))]
    out = image.astype(np.float32).copy()
    scale = 0.5 + 0.5 * severity
    if kind == "cutpaste":
        mask = _ellipse_mask(h, w, rng, 0.04 * scale, 0.12 * scale, centre)
        src = np.asarray(Image.fromarray(donor).resize((w, h), Image.BILINEAR)).astype(np.float32)
        src = np.roll(src, (int(rng.integers(h)), int(rng.integers(w))), axis=(0, 1))
        if rng.random() < 0.5:
            src = src[:, ::-1]
        src = src * rng.uniform(0.7, 1.3)
        out[mask] = (1 - severity) * out[mask] + severity * src[mask]
    elif kind == "blob":
        mask = _ellipse_mask(h, w, rng, 0.02 * scale, 0.08 * scale, centre)
        shift = rng.uniform(35, 80) * rng.choice([-1, 1]) + rng.normal(0, 15, size=3)
        out[mask] = out[mask] + severity * shift
    elif kind == "scratch":
        canvas = Image.new("L", (w, h), 0)
        pts = [(float(rng.uniform(*start) * w), float(rng.uniform(*start) * h))]
        for _ in range(int(rng.integers(2, 5))):
            step = rng.uniform(0.05, 0.15) * min(h, w)
            a = rng.uniform(0, 2 * np.pi)
            pts.append((pts[-1][0] + step * np.cos(a), pts[-1][1] + step * np.sin(a)))
        ImageDraw.Draw(canvas).line(pts, fill=255, width=max(2, min(h, w) // 90))
        mask = np.asarray(canvas) > 0
        colour = 230.0 if rng.random() < 0.5 else 25.0
        out[mask] = (1 - severity) * out[mask] + severity * colour
    elif kind == "stain":
        from scipy.ndimage import gaussian_filter

        mask = _field_mask(h, w, rng, rng.uniform(0.06, 0.2) * scale, centre)
        if rng.random() < 0.5:  # tone: darker or brighter, as a stain or a discolouration
            gain = rng.uniform(0.65, 0.8) if rng.random() < 0.5 else rng.uniform(1.25, 1.5)
            target = out * gain
        else:  # texture: smoothed or roughened, as another surface finish
            blur = gaussian_filter(out, sigma=(min(h, w) / 80, min(h, w) / 80, 0))
            target = blur if rng.random() < 0.5 else out + 1.5 * (out - blur)
            target = target + rng.uniform(8, 20) * rng.choice([-1, 1])
        out = _feathered_blend(out, target, mask, severity)
    elif kind == "contrast":
        from scipy.ndimage import gaussian_filter

        mask = _field_mask(h, w, rng, rng.uniform(0.06, 0.2) * scale, centre)
        # the texture around its local mean, flattened or amplified; the mean itself stays
        local = gaussian_filter(out, sigma=(min(h, w) / 40, min(h, w) / 40, 0))
        gain = rng.uniform(0.3, 0.6) if rng.random() < 0.5 else rng.uniform(1.6, 2.4)
        out = _feathered_blend(out, local + gain * (out - local), mask, severity)
    elif kind == "swap":
        mask = _ellipse_mask(h, w, rng, 0.12 * scale, 0.25 * scale, centre)
        src = np.asarray(Image.fromarray(donor).resize((w, h), Image.BILINEAR)).astype(np.float32)
        out[mask] = src[mask]
    else:
        raise ValueError(f"kind must be one of {ALL_KINDS}, got {kind!r}")
    return np.clip(out, 0, 255).astype(np.uint8), mask.astype(np.uint8)


def pseudo_batch(images: torch.Tensor, donors: torch.Tensor, rng: np.random.Generator,
                 severity: tuple[float, float] = (0.5, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """One pseudo-anomaly of a random kind on each ``(N, 3, H, W)`` uint8 image.

    ``donors`` (same shape) supply the cut-paste patches; each defect's severity is drawn uniformly
    from ``severity``. Returns the defective images (uint8, same shape) and their ``(N, H, W)``
    uint8 masks. Used to train methods that must not reproduce anomalies (RD4AD's ``pseudo``).
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
    if donors.shape != images.shape:
        raise ValueError(f"donors must match images {tuple(images.shape)}, got "
                         f"{tuple(donors.shape)}")
    lo, hi = severity
    out, masks = [], []
    for img, donor in zip(images, donors, strict=True):
        bad, mask = make_pseudo_anomaly(img.permute(1, 2, 0).numpy(),
                                        np.ascontiguousarray(donor.permute(1, 2, 0).numpy()),
                                        rng, severity=float(rng.uniform(lo, hi)))
        out.append(torch.from_numpy(bad).permute(2, 0, 1))
        masks.append(torch.from_numpy(mask))
    return torch.stack(out), torch.stack(masks)


def appearance(image: np.ndarray) -> np.ndarray:
    """A uint8 (H, W, 3) image's overall look as 7 numbers: the mean of each channel, the grey
    level's spread, and its mean absolute gradient along rows and along columns (how strong and
    which way any streaks or grain run), on a 64 x 64 copy."""
    small = np.asarray(Image.fromarray(image).resize((64, 64), Image.BILINEAR), np.float32)
    grey = small.mean(2)
    return np.array([*small.mean((0, 1)), grey.std(), np.abs(np.diff(grey, axis=0)).mean(),
                     np.abs(np.diff(grey, axis=1)).mean()], np.float32)


def farthest_donor(goods: list[np.ndarray]) -> np.ndarray:
    """For each image, the index of the other image whose ``appearance`` (standardised over
    ``goods``) is farthest from its own: the donor of a ``swap``, so the swapped region shows
    another finish rather than a near copy of its own."""
    if len(goods) < 2:
        raise ValueError("a swap needs at least two good images")
    look = np.stack([appearance(g) for g in goods])
    look = (look - look.mean(0)) / (look.std(0) + 1e-6)
    dist = ((look[:, None] - look[None]) ** 2).sum(2)
    np.fill_diagonal(dist, -1.0)  # never its own donor, even among identical images
    return dist.argmax(1)


def pseudo_validation(goods: list[np.ndarray], rng: np.random.Generator, copies: int = 2,
                      severity: float = 0.5, kinds: tuple[str, ...] = KINDS,
                      placement: str = "inner",
                      ) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """(images, labels, masks): each good uint8 (H, W, 3) image, then ``copies`` pseudo-defective
    copies of it (``kinds`` in turn; donor = the next image, or for ``swap`` the farthest one),
    for choosing settings on good data only.

    Labels are 0 for the goods and 1 for the copies; masks are uint8 {0, 1} of each image's size.
    """
    unknown = set(kinds) - set(ALL_KINDS)
    if not kinds or unknown:
        raise ValueError(f"kinds must be a non-empty subset of {ALL_KINDS}, got {kinds!r}")
    far = farthest_donor(goods) if "swap" in kinds else None
    images, labels, masks = [], [], []
    for i, g in enumerate(goods):
        images.append(g)
        labels.append(0)
        masks.append(np.zeros(g.shape[:2], np.uint8))
        for c in range(copies):
            kind = kinds[(i * copies + c) % len(kinds)]
            donor = goods[far[i] if kind == "swap" else (i + 1) % len(goods)]
            bad, m = make_pseudo_anomaly(g, donor, rng, kind, severity=severity,
                                         placement=placement)
            images.append(bad)
            labels.append(1)
            masks.append(m)
    return images, np.array(labels), masks
