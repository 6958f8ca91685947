"""The one model-file format of every oddeye method.

A ``.oddeye`` file is a torch zip archive holding only plain types and tensors (so it loads with
``weights_only=True``; no pickled code): a magic string, the format version, the library version, a
JSON metadata document (method, hyper-parameters, pre-processing, post-processing, thresholds, ...)
and a flat ``name -> tensor`` dict.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from oddeye import __version__
from oddeye.errors import ModelFileError

MAGIC = "oddeye-model"
FORMAT_VERSION = 1


def save_model(path: str | Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
    """Write ``meta`` (JSON-able) and ``tensors`` atomically to ``path``."""
    path = Path(path)
    try:
        meta_json = json.dumps(meta, sort_keys=True)
    except TypeError as exc:
        raise ModelFileError(f"model metadata is not JSON-serialisable: {exc}") from exc
    payload = {
        "magic": MAGIC,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "meta_json": meta_json,
        "tensors": {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_model(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a model file; any problem is a ModelFileError naming the file, never a pickle trace."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] != b"PK":
        raise ModelFileError(f"{path} is not an oddeye model file (not a torch zip archive)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/corrupt archives
        raise ModelFileError(
            f"{path} is corrupt or truncated and cannot be read ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else 'no detail'})"
        ) from None
    if not isinstance(payload, dict) or payload.get("magic") != MAGIC:
        raise ModelFileError(f"{path} is a torch file but not an oddeye model file")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path} uses model-file format version {version} (written by oddeye "
            f"{payload.get('library_version', '?')}); this oddeye {__version__} reads version "
            f"{FORMAT_VERSION}: retrain the model or use a matching oddeye version"
        )
    try:
        meta = json.loads(payload["meta_json"])
        tensors = dict(payload["tensors"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path} has a damaged metadata section: {exc}") from None
    meta["library_version"] = payload.get("library_version")
    return meta, tensors
