"""Read data sets in the MVTec AD folder layout (and its relatives: MVTec 3D RGB, converted sets).

Layout of one category (``<root>/<category>/`` or the root itself)::

    train/good/*.png                     defect-free training images (required, non-empty,
                                         except when only testing: ``require_train``)
    validation/good/*.png                optional defect-free validation images
    test/good/*.png                      defect-free test images          (label 0)
    test/<defect>/*.png                  defective test images            (label 1)
    ground_truth/<defect>/<stem>_mask.png  pixel masks (also <stem>.png, other image extensions)

Only paths are collected here; pixels are decoded on demand by ``oddeye.io.images``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from oddeye.errors import DataError
from oddeye.io.images import IMAGE_EXTENSIONS, list_images, read_mask

__all__ = [
    "GOOD",
    "CategoryData",
    "Sample",
    "find_categories",
    "find_mask",
    "load_category",
    "load_dataset",
    "load_sample_mask",
]

#: Folder name of defect-free images in every split.
GOOD = "good"

_LAYOUT_HELP = (
    "expected the MVTec AD layout: <category>/train/good/<images>, optional "
    "<category>/validation/good/, <category>/test/good/ and <category>/test/<defect>/, masks in "
    "<category>/ground_truth/<defect>/<stem>_mask.png; the root is either one category folder "
    "or a folder of category folders"
)

# Extension order when several mask files could match one image: PNG first, then the rest.
_MASK_EXTENSIONS = (".png", *sorted(IMAGE_EXTENSIONS - {".png"}))


@dataclass(frozen=True)
class Sample:
    """One image of a category: label 0 good / 1 defect, its defect type and its mask (if any)."""

    path: Path
    label: int
    defect_type: str
    mask_path: Path | None
    category: str


@dataclass
class CategoryData:
    """All samples of one category, split as on disk (train and validation are all good)."""

    name: str
    root: Path
    train: list[Sample] = field(default_factory=list)
    validation: list[Sample] = field(default_factory=list)
    test: list[Sample] = field(default_factory=list)

    @property
    def defect_types(self) -> list[str]:
        """Sorted names of the defect types present in the test split (``good`` excluded)."""
        return sorted({s.defect_type for s in self.test if s.label == 1})


def _subfolders(folder: Path) -> list[Path]:
    """Non-hidden sub-folders, sorted by name."""
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def folder_name(path: Path) -> str:
    """A category's name: its folder's name as listed, a symbolic link's own name included (two
    links to folders of one name stay two categories); ``.`` and ``..`` by what they resolve to."""
    return path.resolve().name if path.name in ("", ".", "..") else path.name


def find_categories(root: str | os.PathLike, require_train: bool = True) -> list[Path]:
    """Category folders under ``root``: the root itself if it has ``train/``, else its sub-folders
    that have one (sorted by name).

    ``require_train=False`` (evaluation only needs the test split) also takes folders that have
    ``test/`` but no ``train/``.
    """
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"{base}: data set folder not found; {_LAYOUT_HELP}")
    splits = ("train",) if require_train else ("train", "test")

    def is_category(p: Path) -> bool:
        return any((p / s).is_dir() for s in splits)

    if is_category(base):
        return [base]
    subs = _subfolders(base)
    found = [p for p in subs if is_category(p)]
    if not found:
        raise DataError(f"{base}: no category folder with a {'/ or '.join(splits)}/ sub-folder; "
                        f"{_LAYOUT_HELP}")
    for p in subs:  # one level only: say what a deeper category folder's images do not join
        deeper = [] if p in found else [q.name for q in _subfolders(p) if is_category(q)]
        if deeper:
            warnings.warn(f"{p} holds category folders ({', '.join(deeper[:3])}"
                          f"{', ...' if len(deeper) > 3 else ''}) one level too deep; they are "
                          f"skipped (give --data {p} to use them)", UserWarning, stacklevel=2)
    return found


def _mask_index(folder: Path) -> dict[str, Path]:
    """Image files of a ground-truth folder keyed by lower-cased file name."""
    if not folder.is_dir():
        return {}
    return {p.name.lower(): p for p in list_images(folder)}


def find_mask(image: Path, index: dict[str, Path]) -> Path | None:
    """The mask of ``image`` in a ground-truth folder index: ``<stem>_mask.<ext>`` first, then
    ``<stem>.<ext>``; PNG before the other extensions."""
    stem = image.stem.lower()
    for suffix in ("_mask", ""):
        for ext in _MASK_EXTENSIONS:
            hit = index.get(f"{stem}{suffix}{ext}")
            if hit is not None:
                return hit
    return None


def _good_samples(folder: Path, category: str) -> list[Sample]:
    """Samples of a ``good`` folder (label 0, no mask)."""
    return [Sample(p, 0, GOOD, None, category) for p in list_images(folder)]


def load_category(root: str | os.PathLike, name: str | None = None,
                  require_train: bool = True) -> CategoryData:
    """Collect one category folder's samples (no decoding); ``name`` defaults to the folder name.

    Defect images without a mask get ``mask_path=None`` (read as empty) and one summarising
    ``UserWarning`` per category. ``require_train=False`` accepts a missing or empty
    ``train/good`` (``train`` is then empty): scoring a fitted model needs only ``test/``.
    """
    base = Path(root)
    cat = name if name is not None else folder_name(base)
    if not base.is_dir():
        raise DataError(f"{base}: category folder not found; {_LAYOUT_HELP}")
    train_dir = base / "train" / GOOD
    if not train_dir.is_dir() and require_train:
        raise DataError(f"{train_dir}: training folder train/good is missing; {_LAYOUT_HELP}")
    train = _good_samples(train_dir, cat) if train_dir.is_dir() else []
    if not train and require_train:
        raise DataError(
            f"{train_dir}: no training images (extensions {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    val_dir = base / "validation" / GOOD
    validation = _good_samples(val_dir, cat) if val_dir.is_dir() else []

    test: list[Sample] = []
    missing: list[Path] = []
    test_dir = base / "test"
    if test_dir.is_dir():
        for sub in _subfolders(test_dir):
            if sub.name == GOOD:
                test.extend(_good_samples(sub, cat))
                continue
            index = _mask_index(base / "ground_truth" / sub.name)
            for path in list_images(sub):
                mask = find_mask(path, index)
                if mask is None:
                    missing.append(path)
                test.append(Sample(path, 1, sub.name, mask, cat))
    if missing:
        n_defect = sum(s.label for s in test)
        warnings.warn(
            f"category {cat!r} ({base}): {len(missing)} of {n_defect} defect images have no mask "
            f"under ground_truth/<defect>/ (first: {missing[0].relative_to(base)}); "
            "they are read as empty masks",
            UserWarning,
            stacklevel=2,
        )
    return CategoryData(name=cat, root=base, train=train, validation=validation, test=test)


def load_dataset(
    root: str | os.PathLike, categories: Sequence[str] | str | None = None,
    require_train: bool = True,
) -> list[CategoryData]:
    """Load every category under ``root`` (or the named ones, in the order given);
    ``require_train=False`` for evaluation, which needs no training images (``load_category``)."""
    folders = {folder_name(p): p for p in find_categories(root, require_train=require_train)}
    if categories is None:
        names: Iterable[str] = folders
    else:
        names = [categories] if isinstance(categories, str) else list(dict.fromkeys(categories))
        unknown = [n for n in names if n not in folders]
        if unknown:
            raise DataError(
                f"{Path(root)}: unknown categor{'y' if len(unknown) == 1 else 'ies'} "
                f"{', '.join(map(repr, unknown))}; available: {', '.join(sorted(folders))}"
            )
    return [load_category(folders[n], name=n, require_train=require_train) for n in names]


def warn_empty_mask(sample: Sample) -> None:
    """Warn that a defect image's mask marks no pixel (its pixels then count as good), saying
    when the file looks like a 0/1 label mask that lossy compression turned into 0..2 values."""
    from PIL import Image

    with Image.open(sample.mask_path) as im:
        top = int(np.asarray(im).max())
    hint = (f"; its values only reach {top}: a 0/1 label mask saved lossily (JPEG)? save masks "
            f"as PNG" if 1 < top <= 16 else "")
    warnings.warn(f"mask {sample.mask_path} of defect image {sample.path} marks no defect "
                  f"pixel{hint}", UserWarning, stacklevel=3)


def load_sample_mask(sample: Sample, shape: Iterable[int]) -> np.ndarray:
    """The uint8 {0,1} (H, W) mask of a sample: zeros for good or unmasked images; a mask whose
    size differs from ``shape`` (H, W[, C]) is a DataError naming the image and mask files."""
    dims = tuple(int(s) for s in shape)
    if len(dims) not in (2, 3):
        raise DataError(f"{sample.path}: expected shape must be (H, W) or (H, W, C), got {dims}")
    h, w = dims[:2]
    if sample.label == 0 or sample.mask_path is None:
        return np.zeros((h, w), dtype=np.uint8)
    mask = read_mask(sample.mask_path)
    if not mask.any():
        warn_empty_mask(sample)
    if mask.shape != (h, w):
        raise DataError(
            f"mask {sample.mask_path} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image "
            f"{sample.path} is {w}x{h}; masks are never resized silently"
        )
    return mask
