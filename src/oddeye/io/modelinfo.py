"""What a loaded model is: the summary ``GET /v1/model`` serves and the fuller one of
``oddeye info`` (training data, parameters that differ from today's defaults, what the fit chose).

Works on both kinds of loaded model, ``oddeye.api.Detector`` (a ``.oddeye`` file) and
``oddeye.export.onnx.OnnxDetector`` (a ``.onnx`` export), by their common attributes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oddeye import __version__


def _is_onnx(detector: Any) -> bool:
    return type(detector).__name__ == "OnnxDetector"


def describe_model(detector: Any, path: str | Path | None = None) -> dict[str, Any]:
    """Method, backbone, versions, threshold, input size and input frame of a loaded model (what
    ``GET /v1/model`` answers)."""
    meta = getattr(detector, "meta_", None) or {}
    is_onnx = _is_onnx(detector)
    backbone = getattr(detector, "backbone", None) if is_onnx else None
    if not backbone:
        method_obj = getattr(detector, "method_", None)
        backbone = getattr(method_obj, "backbone", None) or getattr(detector, "backbone", None)
    trained = meta.get("trained_with_oddeye") if is_onnx else meta.get("oddeye_version")
    train = meta.get("train", {}) if isinstance(meta.get("train"), dict) else {}
    return {
        "file": Path(path).name if path else None,
        "format": "onnx" if is_onnx else "oddeye",
        "method": detector.method,
        "backbone": backbone,
        "input_size": int(detector.size),
        "input_frame": int(getattr(detector, "pad_", 0) or 0),
        "threshold": float(detector.threshold_),
        "score_scale": float(detector.score_scale_),
        "threshold_info": dict(getattr(detector, "threshold_info_", {}) or {}),
        "categories": list(getattr(detector, "categories_", []) or []),
        "n_train_images": train.get("n_images"),
        # good images the maps were standardised on: per position (map_norm), per fused
        # backbone (fusion); 0 = not standardised that way
        "map_norm_images": (_onnx_entry(meta, "map_norm_images", int, 0) if is_onnx
                            else int(getattr(detector, "map_norm_", 0) or 0)),
        "fusion_images": (_onnx_entry(meta, "fusion_images", int, 0) if is_onnx
                          else int(getattr(detector, "fusion_images_", 0) or 0)),
        "model_version": trained or __version__,
        "server_version": __version__,
    }


def _onnx_entry(meta: dict[str, str], key: str, kind: type, default: Any) -> Any:
    """An ONNX metadata string read as JSON of type ``kind``; ``default`` when it is absent or
    damaged (describing a model must not fail on an entry inference never reads)."""
    try:
        value = json.loads(meta.get(key, "null"))
    except ValueError:
        return default
    return value if isinstance(value, kind) and not isinstance(value, bool) else default


def method_params_of(detector: Any) -> dict[str, Any]:
    """The method's hyper-parameters as the file stores them (an ONNX export keeps them as a
    JSON string in its metadata; {} when it is unreadable or absent)."""
    if not _is_onnx(detector):
        return dict(detector.method_.get_params())
    return _onnx_entry(getattr(detector, "meta_", None) or {}, "method_params", dict, {})


def non_defaults(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters of ``params`` whose value differs from the method's default in this
    version of oddeye ({} for a method this version does not know)."""
    from oddeye.errors import OddeyeError
    from oddeye.methods import get_method

    try:
        defaults = get_method(method)().get_params()
    except OddeyeError:  # a method this version does not know
        return {}
    return {k: v for k, v in params.items() if k in defaults and defaults[k] != v}


def model_details(detector: Any, path: str | Path) -> dict[str, Any]:
    """``describe_model`` plus what ``oddeye info`` shows: taps, every method parameter and
    those that differ from today's defaults, the training record (data folders, shots, seed,
    labelled defects, seconds), what the fit chose, the scoring settings and the file size."""
    info = describe_model(detector, path)
    meta = getattr(detector, "meta_", None) or {}
    params = method_params_of(detector)
    if _is_onnx(detector):
        layers = _onnx_entry(meta, "layers", list, [])
        train: dict[str, Any] = _onnx_entry(meta, "train", dict, {})  # exports since 25th session
        scoring = {"sigma": _onnx_entry(meta, "sigma", float | int, None),
                   "reduce": meta.get("reduce"), "score_from": meta.get("score_from"),
                   "map_norm_images": _onnx_entry(meta, "map_norm_images", int, 0),
                   "fusion_images": _onnx_entry(meta, "fusion_images", int, 0)}
        n_refs = _onnx_entry(meta, "n_references", int, 0)
        choices = ""
    else:
        layers = list(detector.method_.layers)
        train = dict(meta.get("train", {}) or {})
        post = meta.get("postprocess", {}) or {}
        scoring = {"sigma": post.get("sigma"), "reduce": post.get("reduce"),
                   "score_from": post.get("score_from"),
                   "map_norm_images": int(post.get("map_norm_images") or 0),
                   "fusion_images": int((meta.get("backbone") or {}).get("fusion_images") or 0)}
        n_refs = int(getattr(detector, "n_references_", 0) or 0)
        choices = detector.fit_choices_
    labelled = train.get("labelled_defects") or []
    info.pop("server_version")  # a file's description, not a server's
    return {
        **info,
        "file": str(path),
        "file_bytes": Path(path).stat().st_size,
        "layers": layers,
        "method_params": params,
        "non_default_params": non_defaults(info["method"], params),
        "scoring": scoring,
        "train": {
            "n_images": train.get("n_images", info["n_train_images"]),
            "fit_seconds": train.get("fit_seconds"),
            "data": train.get("data"),
            "shots": train.get("shots"),
            "seed": train.get("seed"),
            "n_labelled_defects": len(labelled),
            "labelled_defects": labelled,
        },
        "needs_references": bool(getattr(detector, "needs_references", False)),
        "n_references": n_refs,
        "fit_choices": choices,
        **({"onnx_input": {"dtype": meta.get("input_dtype"), "batch": meta.get("batch")}}
           if _is_onnx(detector) else {}),
    }


def _value(v: Any) -> str:
    return json.dumps(v) if isinstance(v, list | dict | bool) or v is None else str(v)


def format_details(d: dict[str, Any]) -> str:
    """``model_details`` as a few aligned lines for people."""
    rows = [("format", f"{d['format']} model written by oddeye {d['model_version']}, "
                       f"{d['file_bytes'] / 1e6:.1f} MB")]
    rows.append(("method", f"{d['method']} on {d['backbone']}, taps {' '.join(d['layers'])}, "
                           f"input {d['input_size']} px, frame {d['input_frame']} px"))
    changed = d["non_default_params"]
    rows.append(("parameters", (", ".join(f"{k}={_value(v)}" for k, v in changed.items())
                                + " (others at today's defaults)") if changed
                 else "today's defaults"))
    t = d["train"]
    what = (f"{t['n_images']} images" if t["n_images"] is not None
            else "an unrecorded number of images")
    if d["categories"]:
        what += " of " + ", ".join(d["categories"])
    if t["fit_seconds"] is not None:
        what += f" in {float(t['fit_seconds']):.1f} s"
    if t["shots"]:
        what += f", {t['shots']} shots drawn with seed {t['seed']}"
    if t["n_labelled_defects"]:
        what += f", {t['n_labelled_defects']} labelled defects"
    rows.append(("trained on", what))
    if t["data"]:
        rows.append(("data", ", ".join(map(str, t["data"]))))
    src = d["threshold_info"].get("source")
    rule = d["threshold_info"].get("rule")
    how = "; ".join(x for x in (rule, src) if x)
    rows.append(("threshold", f"{d['threshold']:.6g}" + (f" ({how})" if how else "")
                 + f", score scale {d['score_scale']:.4g}"))
    s = d["scoring"]
    rows.append(("scoring", f"image score {s['reduce']} of the {s['score_from']} map, "
                            f"Gaussian sigma {s['sigma']}"
                 + (f", maps standardised per position on {s['map_norm_images']} good images "
                    f"(map_norm)" if s.get("map_norm_images") else "")
                 + (f", the backbones' maps each standardised on {s['fusion_images']} good "
                    f"images and summed" if s.get("fusion_images") else "")))
    if "onnx_input" in d:
        i = d["onnx_input"]
        batch = i["batch"] or "not recorded (an export from before oddeye recorded it)"
        size = d["input_size"]
        rows.append(("ONNX input", f"{i['dtype'] or 'uint8'} (N, 3, {size}, {size}), "
                                   f"batch {batch}"))
    if d["needs_references"]:
        rows.append(("references", "scores against good images of the part given at test "
                                   "time (--refs / set_references)"))
    elif d["n_references"]:
        rows.append(("references", f"{d['n_references']} good images, inside the model"))
    if d["fit_choices"]:
        rows.append(("fit chose", d["fit_choices"]))
    width = max(len(k) for k, _ in rows)
    return "\n".join([d["file"], *(f"  {k:<{width}}  {v}" for k, v in rows)])
