"""Small helpers shared by the CLI commands (argument parsing, JSON output, data selection)."""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from oddeye.errors import DataError

_PY_CONSTANTS: dict[str, Any] = {"None": None, "True": True, "False": False}


def parse_value(raw: str) -> Any:
    """One ``--param`` value: Python constants, then JSON, else the string as written."""
    if raw.strip() in _PY_CONSTANTS:
        return _PY_CONSTANTS[raw.strip()]
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_params(items: list[str] | None,
                 reserved: dict[str, str] | None = None) -> dict[str, Any]:
    """``key=value`` pairs from ``--param``; values parsed as JSON when possible (numbers...).

    Python's spellings ``None``, ``True`` and ``False`` mean what they say (as JSON's ``null``,
    ``true``, ``false`` do): ``--param max_bank=None`` must not arrive as the string "None".
    ``reserved`` maps names the command sets from its own flags to that flag (``size`` ->
    ``--size``): such a key is refused with the flag to use instead of colliding later.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise DataError(f"--param expects key=value, got {item!r}")
        key, _, raw = item.partition("=")
        key = key.strip()
        flag = (reserved or {}).get(key.replace("-", "_"))
        if flag is not None:
            raise DataError(f"--param {key}=... is set with the option {flag}, not --param "
                            f"(e.g. {flag} {raw.strip() or 'VALUE'})")
        out[key] = parse_value(raw)
    return out


def _is_sequence_annotation(annotation: Any) -> bool:
    """True for parameter annotations such as ``Sequence[str] | None`` or ``tuple[int, ...]``."""
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return any(t in text for t in ("Sequence[", "list[", "tuple[", "List[", "Tuple["))


def coerce_list_params(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with a bare value of a list-valued method parameter made a list.

    ``--param layers=s8`` arrives as the string "s8", which a method would iterate character by
    character; a parameter its constructor declares as a sequence (``layers: Sequence[str]``)
    gets ``["s8"]`` instead, and ``layers=s8,s16`` gets ``["s8", "s16"]`` (each item parsed like
    a ``--param`` value). Lists given as JSON (``layers=["s8"]``) are left as they are.
    """
    import inspect

    from oddeye.methods import get_method

    seq_names: set[str] = set()
    for cls in get_method(method).__mro__:
        if cls is object or "__init__" not in cls.__dict__:
            continue
        for name, prm in inspect.signature(cls.__init__).parameters.items():
            if _is_sequence_annotation(prm.annotation):
                seq_names.add(name)
    out = dict(params)
    for name, value in params.items():
        if name not in seq_names or value is None or isinstance(value, (list, tuple)):
            continue
        if isinstance(value, str):
            out[name] = [parse_value(v.strip()) for v in value.split(",") if v.strip()]
        else:
            out[name] = [value]
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
    """Write machine-readable output (NaN becomes null so every JSON parser accepts it).

    A path that cannot be written is a one-line ``DataError``, not a traceback (commands check
    their output paths up front with ``check_output_file``; this is the last resort).
    """
    path = Path(path)
    text = json.dumps(_clean(payload), indent=2, sort_keys=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (where missing folders would be created)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe_writable(folder: Path, flag: str, target: Path) -> None:
    """Refuse ``target`` unless a file can be created in ``folder`` (its nearest existing
    ancestor): permission bits alone miss read-only and virtual file systems such as /proc."""
    if not folder.is_dir():
        raise DataError(f"{flag} {target}: {folder} is a file, so no folder can be made there")
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".oddeye-write-check-"):
            pass
    except OSError as exc:
        raise DataError(f"{flag} {target}: cannot write in {folder} "
                        f"({exc.strerror or exc})") from None


def check_output_file(path: str | Path, flag: str,
                      inputs: dict[str, Any] | None = None) -> Path:
    """Check, before any work, that ``flag``'s output file ``path`` can be written.

    Refused with a one-line ``DataError``: an existing folder, an existing file that cannot be
    written, a parent that is a file or lies where nothing can be created, and the same file as
    one of ``inputs`` ({flag or role: path}: the model or data read, another output), which the
    write would destroy. Creates nothing.
    """
    target = Path(path)
    if str(path).strip() == "":
        raise DataError(f"{flag}: empty file name")
    if target.is_dir():
        raise DataError(f"{flag} {target}: is a folder; give a file name (e.g. {target}/out.json)")
    if target.exists():
        for role, other in (inputs or {}).items():
            if other is not None and _same_file(target, Path(other)):
                raise DataError(f"{flag} {target}: is the same file as {role} {other}; writing "
                                f"there would destroy it: give another name")
        if not os.access(target, os.W_OK):
            raise DataError(f"{flag} {target}: file exists and cannot be written")
        return target
    _probe_writable(_nearest_existing(target.parent), flag, target)
    return target


def _same_file(a: Path, b: Path) -> bool:
    """Whether two existing paths are one file (links and ``..`` included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def check_output_dir(path: str | Path, flag: str) -> Path:
    """Check, before any work, that ``flag``'s output folder ``path`` can be made and written.

    Refused with a one-line ``DataError``: an existing file where the folder should be, or a
    place where nothing can be created. Creates nothing.
    """
    target = Path(path)
    if str(path).strip() == "":
        raise DataError(f"{flag}: empty folder name")
    if target.exists() and not target.is_dir():
        raise DataError(f"{flag} {target}: is a file, not a folder; give a folder name")
    _probe_writable(_nearest_existing(target), flag, target)
    return target


def pick_shots(items: list, shots: int | None, seed: int, flag: str = "--shots",
               what: str = "good training images") -> list:
    """``shots`` items drawn without replacement with ``seed`` (all items when shots is None).

    ``flag`` and ``what`` name the option and the images in errors (``--labeled-defects`` draws
    defective test images with this function too).
    """
    if shots is None or shots >= len(items):
        if shots is not None and shots > len(items):
            raise DataError(f"{flag} {shots} but only {len(items)} {what}")
        return list(items)
    if shots < 1:
        raise DataError(f"{flag} must be >= 1, got {shots}")
    idx = np.random.default_rng(seed).choice(len(items), size=shots, replace=False)
    return [items[i] for i in sorted(idx)]


def add_progress_flag(parser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_device_flag(parser) -> None:
    """``--device``: where a torch model fits and predicts (ONNX models always run on the CPU)."""
    parser.add_argument("--device", default="auto",
                        help="auto ($ODDEYE_DEVICE if set, else a CUDA GPU when torch sees "
                             "one, else the CPU), cpu, cuda, cuda:N (default: auto)")


def load_categories(roots: list[str], categories: list[str] | None,
                    require_train: bool = True) -> list:
    """The categories of every ``--data`` root, each with a name no other one has.

    Two roots may hold a category of the same name (``data/grid`` and ``data2/grid``): the names
    then become the shortest distinguishing path tails (``data/grid``, ``data2/grid``), so no
    table row, JSON entry or model file of one replaces the other's. The same folder given twice
    is refused, naming both arguments.
    """
    from oddeye.data.mvtec import load_dataset

    datasets, seen = [], {}
    for root in roots:
        for cat in load_dataset(root, categories, require_train=require_train):
            key = cat.root.resolve()
            if key in seen:
                raise DataError(f"category folder {key} is given twice (--data {seen[key]} and "
                                f"--data {root}); give each folder once")
            seen[key] = root
            datasets.append(cat)
    names = [c.name for c in datasets]
    for name in {n for n in names if names.count(n) > 1}:
        clash = [c for c in datasets if c.name == name]
        parts = [c.root.resolve().parts for c in clash]
        depth = 2
        while len({p[-depth:] for p in parts}) < len(parts):
            depth += 1
        for cat, p in zip(clash, parts, strict=True):
            cat.name = "/".join(p[-depth:])
    return datasets


def int_at_least(low: int, note: str = "") -> Callable[[str], int]:
    """An argparse ``type`` for whole numbers >= ``low`` (``note`` explains a special value):
    a bad count is refused while parsing, not by a traceback or an empty run later."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}{note}, got {value}")
        return value

    return parse


def is_onnx_path(path: str) -> bool:
    """True for an ONNX export's file name (``.onnx``, any case)."""
    return str(path).lower().endswith(".onnx")


def open_model(path: str, device: str = "auto", threads: int | None = None) -> Any:
    """A ``.onnx`` export through onnxruntime (``threads`` intra-op threads) or a ``.oddeye``
    file onto ``device``: the one place the commands choose the loader by the file's suffix."""
    if is_onnx_path(path):
        from oddeye.export.onnx import OnnxDetector

        return OnnxDetector(path, threads=threads)
    import oddeye

    return oddeye.load(path, device=device)
