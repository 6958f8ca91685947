"""The one model-file format of every oddeye method.

A ``.oddeye`` file is a torch zip archive holding only plain types and tensors (so it loads with
``weights_only=True``; no pickled code): a magic string, the format version, the library version, a
JSON metadata document (method, hyper-parameters, pre-processing, post-processing, thresholds, ...)
and a flat ``name -> tensor`` dict.

Reading checks the metadata of a detector file section by section (``check_detector_meta``), so a
damaged or foreign file is one ``ModelFileError`` naming the file and the problem, never a raw
``KeyError`` or ``ValueError`` from deep inside ``Detector.load``. Entries that older versions did
not write (e.g. ``detector_params.map_norm``, ``backbone.pad``) stay optional.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from oddeye import __version__
from oddeye.errors import ModelFileError

MAGIC = "oddeye-model"
FORMAT_VERSION = 1
#: Metadata sections ``Detector.save`` writes; a file holding any of them is read as a detector.
DETECTOR_SECTIONS = ("method_params", "detector_params", "backbone", "preprocess", "postprocess",
                     "threshold", "train")
#: Entries every detector file since format version 1 has, per section (others are optional).
REQUIRED_ENTRIES = {
    "backbone": ("name", "layers"),
    "preprocess": ("size", "mean", "std"),
    "postprocess": ("sigma", "reduce"),
    "threshold": ("value", "scale"),
    "train": ("n_images", "fit_seconds"),
}


def _new_temp(path: Path) -> Path:
    """A new, empty temporary file next to ``path``, created with mode 0666 minus the umask (as
    ``open(path, "w")`` would), not ``mkstemp``'s 0600: the renamed file keeps that mode."""
    for _ in range(100):
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name next to {path}")


def _first_sentence(text: str, limit: int = 160) -> str:
    """A library message's first line, cut at a sentence or clause end before ``limit``
    characters (torch's zip errors run on), with "..." where it was cut."""
    line = text.strip().splitlines()[0] if text.strip() else "no detail"
    if len(line) <= limit:
        return line
    cut = max(line.rfind(". ", 0, limit), line.rfind(": ", 0, limit), line.rfind(", ", 0, limit))
    return line[:cut if cut > 0 else limit].rstrip(" .,:") + "..."


def _numpy_scalar(value: Any) -> Any:
    """JSON for a numpy scalar hyper-parameter (``np.int64(256)`` from a grid): its Python
    number; anything else is still refused."""
    item = getattr(value, "item", None)
    if type(value).__module__ == "numpy" and callable(item) and getattr(value, "ndim", 1) == 0:
        return item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def save_model(path: str | Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
    """Write ``meta`` (JSON-able) and ``tensors`` atomically to ``path``.

    The file gets the permissions a plain ``open()`` would give it (0666 minus the umask; an
    overwritten file keeps its own). A folder, or a place that cannot be written, is a
    ``ModelFileError`` naming the path; no temporary file is ever left behind.
    """
    path = Path(path)
    try:
        meta_json = json.dumps(meta, sort_keys=True, default=_numpy_scalar)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"model metadata is not JSON-serialisable: {exc}") from exc
    if path.is_dir():
        raise ModelFileError(f"cannot save the model to {path}: it is a folder; give a file name "
                             f"such as {path / 'model.oddeye'}")
    payload = {
        "magic": MAGIC,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "meta_json": meta_json,
        "tensors": {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
    }
    try:
        atomic_write(path, lambda tmp: torch.save(payload, tmp))
    except (OSError, RuntimeError) as exc:  # torch's zip writer raises RuntimeError (disk full)
        why = (exc.strerror if isinstance(exc, OSError) else None) or _first_sentence(str(exc))
        raise ModelFileError(f"cannot save the model to {path}: {why}") from None
    return path


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Have ``write`` fill a temporary file next to ``path``, then rename it onto ``path``: a
    failed write (a full disk) leaves the earlier file whole and no temporary behind. An
    overwritten file keeps its permissions, as ``open()`` would."""
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_temp(path)
        write(tmp)
        if path.is_file():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        os.replace(tmp, path)
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


def load_model(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a model file; any problem is a ModelFileError naming the file, never a pickle trace.

    A detector file (metadata with any of ``DETECTOR_SECTIONS``) also has its metadata and
    tensors checked by ``check_detector_meta``, so ``Detector.load`` gets well-formed input.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.oddeye"))[:3]
        hint = f" (it holds {', '.join(found)})" if found else ""
        raise ModelFileError(f"{path} is a folder, not a model file: give the path of a .oddeye "
                             f"file{hint}")
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise ModelFileError(f"model file {path} cannot be read: {exc.strerror or exc}") from None
    if head[:2] != b"PK":
        raise ModelFileError(f"{path} is not an oddeye model file (not a torch zip archive)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/corrupt archives
        raise ModelFileError(
            f"{path} is corrupt or truncated and cannot be read ({type(exc).__name__}: "
            f"{_first_sentence(str(exc))})"
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
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path} has a damaged metadata section: a JSON "
                             f"{type(meta).__name__}, not an object")
    bad = [k for k, v in tensors.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise ModelFileError(f"{path} has a damaged tensor section: {_summary(bad)} "
                             "not named tensors")
    meta["library_version"] = payload.get("library_version")
    if any(k in meta for k in DETECTOR_SECTIONS):
        check_detector_meta(path, meta, tensors)
    return meta, tensors


# --------------------------------------------------------------------- detector metadata
def _summary(items: list[Any], first: int = 3) -> str:
    """``'a', 'b', 'c' and 7 more`` (with the count): one line however many there are."""
    shown = ", ".join(repr(i) for i in items[:first])
    return shown + (f" and {len(items) - first} more" if len(items) > first else "")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return _is_real(v) and math.isfinite(v)


def _problem(meta: dict[str, Any], tensors: Mapping[str, torch.Tensor]) -> str | None:
    """What is wrong with a detector file's metadata and tensors, in a few words; None if
    nothing is. Checks structure and value types only (what ``Detector.load`` relies on)."""
    from oddeye.methods import available_methods, get_method, method_param_names
    from oddeye.postprocess import PostProcess, image_score

    missing = [s for s in ("method", *DETECTOR_SECTIONS) if s not in meta]
    if missing:
        return f"its metadata lacks the section(s) {_summary(missing)}"
    not_dict = [s for s in DETECTOR_SECTIONS if not isinstance(meta[s], dict)]
    if not_dict:
        return f"metadata section(s) {_summary(not_dict)} are not JSON objects"
    for section, keys in REQUIRED_ENTRIES.items():
        lacking = [k for k in keys if k not in meta[section]]
        if lacking:
            return f"metadata section '{section}' lacks {_summary(lacking)}"

    name = meta["method"]
    if not isinstance(name, str) or name not in available_methods():
        written = meta.get("oddeye_version") or meta.get("library_version") or "?"
        return (f"it is a model of method {name!r}, which this oddeye {__version__} does not have "
                f"(it has {', '.join(available_methods())}); the file was written by oddeye "
                f"{written}: load it with that version or a newer one")
    cls = get_method(name)
    unknown = sorted(set(meta["method_params"]) - set(method_param_names(cls)))
    if unknown:
        written = meta.get("oddeye_version") or meta.get("library_version") or "?"
        return (f"its {name} model has parameter(s) {', '.join(map(repr, unknown))} that this "
                f"oddeye {__version__} does not know; the file was written by oddeye {written}: "
                f"load it with that version or a newer one")
    try:
        method = cls(**{**getattr(cls, "legacy_defaults", {}), **meta["method_params"]})
        method.check_params()
    except Exception as exc:  # TypeError, ValueError, DataError: a parameter it cannot take
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"bad method parameters for {name!r} ({why})"

    dp = meta["detector_params"]
    for key, ok, want in (("size", lambda v: _is_int(v) and v >= 1, "a positive integer"),
                          ("batch_size", lambda v: _is_int(v) and v >= 1, "a positive integer"),
                          ("sigma", _is_number, "a number"),
                          ("holdout", _is_real, "a number"),
                          ("threshold_sigmas", _is_real, "a number"),
                          ("seed", _is_int, "an integer"),
                          ("pad", lambda v: v is None or _is_int(v), "null or an integer"),
                          ("score", lambda v: isinstance(v, str), "a string"),
                          ("map_norm", lambda v: v is None or isinstance(v, str),
                           "null or a string")):
        if key in dp and not ok(dp[key]):
            return f"detector_params.{key} is {dp[key]!r}, not {want}"

    bb = meta["backbone"]
    if not isinstance(bb["name"], str):
        return f"backbone.name is {bb['name']!r}, not a backbone name"
    if not isinstance(bb["layers"], list) or not bb["layers"] or not all(
            isinstance(x, str) for x in bb["layers"]):
        return f"backbone.layers is {bb['layers']!r}, not a list of layer names"
    if not _is_int(bb.get("pad", 0)):
        return f"backbone.pad is {bb['pad']!r}, not an integer"
    if not _is_int(bb.get("fusion_images", 0)) or bb.get("fusion_images", 0) < 0:
        return f"backbone.fusion_images is {bb['fusion_images']!r}, not a count"

    pre = meta["preprocess"]
    if not _is_int(pre["size"]) or pre["size"] < 1:
        return f"preprocess.size is {pre['size']!r}, not a positive integer"
    if "size" in dp and dp["size"] != pre["size"]:
        return f"detector_params.size {dp['size']!r} disagrees with preprocess.size {pre['size']!r}"
    for key in ("mean", "std"):
        v = pre[key]
        if not isinstance(v, list) or len(v) != 3 or not all(_is_number(x) for x in v):
            return f"preprocess.{key} is {v!r}, not three numbers (one per RGB channel)"
    if not all(x > 0 for x in pre["std"]):
        return f"preprocess.std is {pre['std']!r}: every channel's must be > 0"

    post = meta["postprocess"]
    if not _is_number(post["sigma"]):
        return f"postprocess.sigma is {post['sigma']!r}, not a number"
    if not _is_int(post.get("map_norm_images", 0)) or post.get("map_norm_images", 0) < 0:
        return f"postprocess.map_norm_images is {post['map_norm_images']!r}, not a count"
    try:
        PostProcess(pre["size"], post["sigma"], post["reduce"],
                    score_from=post.get("score_from", "smoothed"))
        image_score(torch.zeros(1, 4), post["reduce"])
    except (TypeError, ValueError) as exc:
        return f"bad postprocess record ({exc})"

    thr = meta["threshold"]
    for key in ("value", "scale"):
        if not _is_real(thr[key]):
            return f"threshold.{key} is {thr[key]!r}, not a number"
    train = meta["train"]
    if not _is_int(train["n_images"]) or train["n_images"] < 0:
        return f"train.n_images is {train['n_images']!r}, not a count"
    if not _is_real(train["fit_seconds"]):
        return f"train.fit_seconds is {train['fit_seconds']!r}, not a number"
    cats = train.get("categories", [])
    if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
        return f"train.categories is {cats!r}, not a list of names"

    if not tensors:
        return "it holds no tensors (no backbone weights, no fitted head)"
    if not any(k.startswith("extractor.") for k in tensors):
        return (f"it holds no backbone weights ('extractor.*' tensors; it has "
                f"{_summary(sorted(tensors))})")
    return None


def check_detector_meta(path: str | Path, meta: dict[str, Any],
                        tensors: Mapping[str, torch.Tensor]) -> None:
    """A ``ModelFileError`` naming ``path`` and the first problem of a detector file's metadata
    (a missing section or entry, a value of the wrong type, a method this version lacks) or
    tensors; entries older versions did not write are optional, as ``Detector.load`` reads them."""
    problem = _problem(meta, tensors)
    if problem:
        raise ModelFileError(f"{path}: damaged or incompatible model file: {problem}")
