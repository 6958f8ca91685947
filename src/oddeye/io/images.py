"""Decode image and mask files (and user arrays) into the library's uint8 RGB / {0,1} conventions.

Every image that enters oddeye passes through here, so the conversions are fixed and documented
(see docs/data.md): grayscale is replicated, 16-bit is divided by 257 with rounding, floats must lie
in [0, 1], alpha is dropped without compositing, EXIF orientation is applied. Anything else is an
``ImageReadError`` that names the file (or argument) and the problem.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from oddeye.errors import DataError, ImageReadError

__all__ = [
    "IMAGE_EXTENSIONS",
    "array_like_to_numpy",
    "as_rgb_uint8",
    "is_array_like",
    "is_image_file",
    "list_images",
    "read_image",
    "read_mask",
    "uint16_to_uint8",
    "unit_float_to_uint8",
]

#: File extensions treated as images (compared lower-cased, with the dot). A .gif is read as its
#: first frame with palette colours as RGB, in a folder as when given directly.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
)

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------
# pure array conversions


def uint16_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale 0..65535 integers to 0..255 as round(v / 257): full range kept, no stretching."""
    v = np.asarray(values).astype(np.uint32)
    return ((v + 128) // 257).astype(np.uint8)


def unit_float_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map floats already checked to lie in [0, 1] to 0..255 as round(v * 255)."""
    return np.rint(np.asarray(values, dtype=np.float64) * 255.0).astype(np.uint8)


def _check_unit_float(values: np.ndarray, name: str) -> None:
    """Raise unless every value is finite and within [0, 1] (the only float range accepted)."""
    if values.size == 0:
        return
    finite = np.isfinite(values)
    if not finite.all():
        bad = int((~finite).sum())
        raise ImageReadError(
            f"{name}: {bad} value(s) are NaN or infinite; float images must be finite and in [0, 1]"
        )
    lo, hi = float(values.min()), float(values.max())
    if lo < 0.0 or hi > 1.0:
        hint = " (for 0..255 data, divide by 255 first)" if 1.0 < hi <= 255.0 and lo >= 0.0 else ""
        raise ImageReadError(
            f"{name}: float values must lie in [0, 1]; found range [{lo:g}, {hi:g}]{hint}"
        )


def _channels_to_rgb(values: np.ndarray, name: str) -> np.ndarray:
    """Give a uint8 HxW/HxWx1/HxWx3/HxWx4 array three channels (replicate gray, drop alpha)."""
    if values.ndim == 2:
        values = values[:, :, None]
    if values.shape[2] == 1:
        return np.repeat(values.astype(np.uint8, copy=False), 3, axis=2)
    # 3 channels as they are, 4 channels lose alpha; always a fresh array, never a view of the input
    return np.array(values[:, :, :3], dtype=np.uint8, order="C", copy=True)


def _check_shape(shape: tuple[int, ...], name: str) -> None:
    """Raise ImageReadError unless shape is HxW, HxWx1, HxWx3 or HxWx4 with non-zero H and W."""
    ok = len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4))
    if not ok:
        hint = ""
        if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4):
            hint = " (it looks channel-first: use array.transpose(1, 2, 0))"
        raise ImageReadError(
            f"{name}: expected an image array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); "
            f"got shape {tuple(shape)}{hint}"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise ImageReadError(f"{name}: image has zero size (shape {tuple(shape)})")


def _numeric_to_uint8(values: np.ndarray, name: str) -> np.ndarray:
    """Convert uint8 / uint16 / bool / float values to uint8 with the documented rules."""
    dt = values.dtype
    if dt == np.uint8:
        return values
    if dt == np.uint16:
        return uint16_to_uint8(values)
    if dt == np.bool_:
        return values.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(dt, np.floating):
        _check_unit_float(values, name)
        return unit_float_to_uint8(values)
    raise ImageReadError(
        f"{name}: unsupported dtype {dt}; use uint8 (0..255), uint16 (0..65535), bool, "
        "or float in [0, 1]"
    )


def is_array_like(obj: object) -> bool:
    """True for an array-like that is not a numpy array, list, tuple, path or PIL image: a torch
    tensor, a CuPy or JAX array, anything numpy converts through ``__array__``."""
    if isinstance(obj, (np.ndarray, np.generic, str, bytes, Path, Image.Image, list, tuple)):
        return False
    return hasattr(obj, "__array__") or hasattr(obj, "__array_interface__")


def array_like_to_numpy(obj: object, name: str = "array") -> np.ndarray:
    """``obj`` (a torch tensor or other array-like) as the numpy array it stands for: detached
    from autograd and moved to the CPU first when it has ``detach`` / ``cpu`` (torch), so a
    tensor that needs grad or lives on a GPU converts like any other. Torch is never imported."""
    try:
        if callable(getattr(obj, "detach", None)):
            obj = obj.detach()
        if callable(getattr(obj, "cpu", None)):
            obj = obj.cpu()
        return np.asarray(obj)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ImageReadError(f"{name}: could not convert the {type(obj).__name__} to a numpy "
                             f"array ({exc})") from exc


def as_rgb_uint8(array: np.ndarray | Image.Image, name: str = "array") -> np.ndarray:
    """Convert a user's numpy array (or PIL image, or torch tensor) to a new uint8 RGB (H, W, 3)
    array.

    Same rules as files: HxW/HxWx1 replicated, HxWx4 drops alpha; uint16 / 257, bool -> 0/255,
    floats must be finite and in [0, 1]. Other dtypes, shapes or objects raise ImageReadError.
    """
    if isinstance(array, Image.Image):
        try:
            array.load()
            img = ImageOps.exif_transpose(array) or array
        except MemoryError:
            raise
        except Exception as exc:
            raise ImageReadError(f"{name}: PIL image could not be decoded: {exc}") from exc
        if img.width == 0 or img.height == 0:  # as read_image refuses such a file
            raise ImageReadError(f"{name}: image has zero size ({img.width}x{img.height})")
        return _pil_to_rgb(img, name)
    if is_array_like(array):  # a torch tensor (CPU or GPU) converts like its numpy array
        array = array_like_to_numpy(array, name)
    if not isinstance(array, np.ndarray):
        raise ImageReadError(
            f"{name}: expected a numpy array or PIL image, got {type(array).__name__} "
            "(convert with np.asarray(...) first)"
        )
    if array.ndim == 0:  # np.asarray(None), np.asarray(3): not an image, name what it held
        value = array.item()
        raise ImageReadError(
            f"{name}: expected a file path, PIL image or numpy array of shape (H, W), (H, W, 3) "
            f"or (H, W, 4); got {type(value).__name__} ({value!r:.40})"
        )
    _check_shape(array.shape, name)
    return _channels_to_rgb(_numeric_to_uint8(array, name), name)


# --------------------------------------------------------------------------------------------
# PIL decoding


def _pil_int_values(img: Image.Image, label: str) -> np.ndarray:
    """Integer pixel values of a 16-bit or 32-bit-integer (I) image, checked to be 0..65535."""
    values = np.asarray(img).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ImageReadError(
            f"{label}: mode {img.mode} values must lie in 0..65535 to be read as 16-bit; "
            f"found range [{int(values.min())}, {int(values.max())}]"
        )
    return values


def _pil_to_rgb(img: Image.Image, label: str) -> np.ndarray:
    """Convert a loaded PIL image of any supported mode to uint8 RGB (H, W, 3)."""
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        return _channels_to_rgb(uint16_to_uint8(_pil_int_values(img, label)), label)
    if mode == "F":
        values = np.asarray(img, dtype=np.float64)
        _check_unit_float(values, f"{label} (mode F)")
        return _channels_to_rgb(unit_float_to_uint8(values), label)
    if mode == "RGB":
        return np.array(img, dtype=np.uint8)
    if mode in ("L", "1"):
        return _channels_to_rgb(np.asarray(img.convert("L")), label)
    if mode == "La":  # premultiplied; Pillow cannot convert it to RGB directly
        img = img.convert("LA")
    try:
        rgb = img.convert("RGB")  # alpha is dropped, colour values kept as stored
    except ValueError as exc:
        raise ImageReadError(f"{label}: unsupported image mode {mode!r} ({exc})") from exc
    return np.array(rgb, dtype=np.uint8)


def _png_header_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk, or None when the file is not a PNG."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
    except OSError:
        return None
    if len(head) < 24 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def _open_loaded(path: str | os.PathLike) -> tuple[Image.Image, Path]:
    """Open, fully decode and orient an image file; every failure becomes an ImageReadError."""
    p = Path(path)
    if not p.exists():
        if p.is_symlink():
            raise ImageReadError(f"{p}: broken link (to {os.readlink(p)}, which does not exist)")
        raise ImageReadError(f"{p}: file not found")
    if p.is_dir():
        raise ImageReadError(f"{p}: is a directory, not an image file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ImageReadError(f"{p}: cannot read file ({exc})") from exc
    if size == 0:
        raise ImageReadError(f"{p}: file is empty (0 bytes)")
    try:
        with Image.open(p) as opened:
            big = Image.MAX_IMAGE_PIXELS and opened.width * opened.height > Image.MAX_IMAGE_PIXELS
            if big:  # Pillow has just warned without naming the file (no catch_warnings here:
                # it is not thread-safe, and the server decodes in threads)
                warnings.warn(f"{p}: {opened.width}x{opened.height} = "
                              f"{opened.width * opened.height / 1e6:.0f} million pixels, past "
                              f"Pillow's safety limit; decoded anyway, at a large memory cost",
                              Image.DecompressionBombWarning, stacklevel=2)
            opened.load()  # force the full decode so truncated/corrupt data fails here
            img = ImageOps.exif_transpose(opened) or opened.copy()
    except UnidentifiedImageError as exc:
        dims = _png_header_size(p)
        if dims is not None and 0 in dims:
            raise ImageReadError(f"{p}: image has zero size ({dims[0]}x{dims[1]})") from exc
        raise ImageReadError(
            f"{p}: not a readable image (unknown format or damaged header; "
            f"supported extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})"
        ) from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{p}: image is too large to decode safely ({exc})") from exc
    except MemoryError:
        raise
    except OSError as exc:
        if isinstance(exc, PermissionError):
            raise ImageReadError(f"{p}: permission denied") from exc
        raise ImageReadError(f"{p}: truncated or corrupt image data ({exc})") from exc
    except Exception as exc:  # Pillow plugins raise many types on damaged files
        raise ImageReadError(
            f"{p}: corrupt image data ({type(exc).__name__}: {exc})"
        ) from exc
    if img.width == 0 or img.height == 0:
        raise ImageReadError(f"{p}: image has zero size ({img.width}x{img.height})")
    return img, p


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3) with the documented, mode-independent rules."""
    img, p = _open_loaded(path)
    return _pil_to_rgb(img, str(p))


# --------------------------------------------------------------------------------------------
# masks


def _binarise(values: np.ndarray, half: float) -> np.ndarray:
    """{0,1} mask: a 0/1 label image is kept as is, anything else is thresholded at > half range."""
    if values.size == 0 or values.max() <= 1:
        return (values > 0).astype(np.uint8)
    return (values > half).astype(np.uint8)


def _pil_to_mask(img: Image.Image, label: str) -> np.ndarray:
    """Turn a loaded PIL image of any mode into a uint8 {0,1} (H, W) mask."""
    if img.mode == "1":
        return np.asarray(img).astype(np.uint8)
    if img.mode in _SIXTEEN_BIT_MODES:
        return _binarise(_pil_int_values(img, label), 32767.5)
    if img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        _check_unit_float(values, f"{label} (mode F)")
        return (values > 0.5).astype(np.uint8)
    if img.mode == "L":
        return _binarise(np.asarray(img), 127)
    return _binarise(_pil_to_rgb(img, label).max(axis=2), 127)


def _expected_hw(shape: Iterable[int], label: str) -> tuple[int, int]:
    """(H, W) from a (H, W) or (H, W, C) shape."""
    dims = tuple(int(s) for s in shape)
    if len(dims) not in (2, 3):
        raise DataError(f"{label}: expected shape must be (H, W) or (H, W, C), got {dims}")
    return dims[0], dims[1]


def read_mask(path: str | os.PathLike, shape: Iterable[int] | None = None) -> np.ndarray:
    """Read a mask as uint8 {0,1} (H, W); a size other than ``shape`` (H, W[, C]) is an error.

    A pixel is defective when its value exceeds half the range (>127 of 255, robust to JPEG noise;
    colour masks use the largest channel); a mask holding only 0 and 1 is taken as a label image.
    """
    img, p = _open_loaded(path)
    mask = _pil_to_mask(img, str(p))
    if shape is not None:
        h, w = _expected_hw(shape, str(p))
        if mask.shape != (h, w):
            raise DataError(
                f"{p}: mask size {mask.shape[1]}x{mask.shape[0]} (WxH) differs from the expected "
                f"{w}x{h}; masks are never resized silently"
            )
    return mask


def as_mask(values: np.ndarray, name: str = "mask") -> np.ndarray:
    """A user's mask array as uint8 {0,1} (H, W), by ``read_mask``'s rules: bool as is, a 0/1
    array as a label image, other integers above half their range (8 or 16 bit), floats in
    [0, 1] above 0.5."""
    a = np.asarray(values)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 2 or 0 in a.shape:
        raise ImageReadError(f"{name}: a mask must be a non-empty (H, W) array, got shape "
                             f"{tuple(a.shape)}")
    if a.dtype == np.bool_:
        return a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        if a.min() < 0:
            raise ImageReadError(f"{name}: mask values must not be negative (min {a.min()})")
        return _binarise(a, 127 if a.max() <= 255 else 32767.5)
    if np.issubdtype(a.dtype, np.floating):
        _check_unit_float(a, name)
        return (a > 0.5).astype(np.uint8)
    raise ImageReadError(f"{name}: unsupported mask dtype {a.dtype}; use bool, integers or "
                         "float in [0, 1]")


# --------------------------------------------------------------------------------------------
# folders


def is_image_file(path: Path) -> bool:
    """True for a regular, non-hidden file whose extension is one of IMAGE_EXTENSIONS, or a
    broken link with such a name: it is listed so that reading it reports it (a folder walk
    must not drop an image without a word)."""
    return (
        not path.name.startswith(".")
        and path.suffix.lower() in IMAGE_EXTENSIONS
        and (path.is_file() or (path.is_symlink() and not path.exists()))
    )


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files in a folder, sorted by relative path; hidden files and hidden folders skipped."""
    root = Path(folder)
    if not root.exists():
        raise DataError(f"{root}: image folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: is not a folder")
    if not recursive:
        found = [p for p in root.iterdir() if is_image_file(p)]
    else:
        found = []
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            base = Path(dirpath)
            found.extend(base / f for f in filenames if is_image_file(base / f))
    return sorted(found, key=lambda p: p.relative_to(root).parts)
