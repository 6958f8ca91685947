"""Test helper: a model file as an older oddeye wrote it, to check that it still loads."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch


def older_file(path: str | Path, out: str | Path, drop: Iterable[str] = (),
               tensors: Iterable[str] = ()) -> Path:
    """Copy of the ``.oddeye`` file ``path`` at ``out`` without the metadata entries ``drop``
    (dotted, e.g. ``"method_params.pad"``) and the named ``tensors``: what a version from before
    those entries wrote."""
    payload = torch.load(path, weights_only=True)
    meta = json.loads(payload["meta_json"])
    for dotted in drop:
        section, key = dotted.split(".", 1)
        del meta[section][key]
    payload["meta_json"] = json.dumps(meta)
    for key in tensors:
        del payload["tensors"][key]
    torch.save(payload, out)
    return Path(out)
