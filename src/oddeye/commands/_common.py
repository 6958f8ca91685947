"""Small helpers shared by the CLI commands (argument parsing, JSON output, data selection)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from oddeye.errors import DataError

_PY_CONSTANTS: dict[str, Any] = {"None": None, "True": True, "False": False}


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs from ``--param``; values parsed as JSON when possible (numbers...).

    Python's spellings ``None``, ``True`` and ``False`` mean what they say (as JSON's ``null``,
    ``true``, ``false`` do): ``--param max_bank=None`` must not arrive as the string "None".
    """
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise DataError(f"--param expects key=value, got {item!r}")
        key, _, raw = item.partition("=")
        if raw.strip() in _PY_CONSTANTS:
            out[key.strip()] = _PY_CONSTANTS[raw.strip()]
            continue
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return None if math.isnan(f) else f
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, payload: dict) -> Path:
    """Write machine-readable output (NaN becomes null so every JSON parser accepts it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(payload), indent=2, sort_keys=False) + "\n")
    return path


def pick_shots(items: list, shots: int | None, seed: int) -> list:
    """``shots`` items drawn without replacement with ``seed`` (all items when shots is None)."""
    if shots is None or shots >= len(items):
        if shots is not None and shots > len(items):
            raise DataError(f"--shots {shots} but only {len(items)} good training images")
        return list(items)
    if shots < 1:
        raise DataError(f"--shots must be >= 1, got {shots}")
    idx = np.random.default_rng(seed).choice(len(items), size=shots, replace=False)
    return [items[i] for i in sorted(idx)]


def add_progress_flag(parser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_device_flag(parser) -> None:
    """``--device``: where a torch model fits and predicts (ONNX models always run on the CPU)."""
    parser.add_argument("--device", default="auto",
                        help="auto ($ODDEYE_DEVICE if set, else a CUDA GPU when torch sees "
                             "one, else the CPU), cpu, cuda, cuda:N (default: auto)")
