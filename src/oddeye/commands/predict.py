"""``oddeye predict``: score images, write overlays, masks and a results table."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from oddeye.commands._common import add_device_flag, int_at_least

NAME = "predict"
HELP = "score images: overlays, masks, results.csv / results.jsonl"

_UNSAFE = re.compile(r"[^\w.-]")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model file (.oddeye or .onnx)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (walked)")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--refs", nargs="+", metavar="REF",
                   help="reference good images, only for models that score against reference "
                        "shots (e.g. resad; see `oddeye methods`)")
    p.add_argument("--batch-size", type=int_at_least(1), default=4, metavar="N",
                   help="images per forward pass (default: 4)")
    add_device_flag(p)


def gather(paths: list[str]) -> list[Path]:
    """Files given directly plus the images found by walking folders (sorted)."""
    from oddeye.errors import DataError
    from oddeye.io.images import list_images

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += list_images(p, recursive=True)
        elif p.exists():
            out.append(p)
        elif p.is_symlink():
            raise DataError(f"{p} is a broken link (to {os.readlink(p)}, which does not exist)")
        else:
            raise DataError(f"{p} does not exist")
    return out


def outside(files: list[Path], folder: Path) -> tuple[list[Path], int]:
    """``files`` without those under ``folder`` (predict's own output folder, when it lies
    inside a walked input folder: its overlays and masks are not new images), and how many
    were left out."""
    root = folder.resolve()
    kept = [f for f in files if root not in f.resolve().parents]
    return kept, len(files) - len(kept)


def out_name(path: Path) -> str:
    """A file-system safe stem for a result file: the last 3 path parts, extension kept
    (``good/a.png`` and ``good/a.jpg`` must not share an overlay). Not unique on its own
    (two roots can end alike); ``out_names`` makes a whole run's names unique."""
    parts = list(path.resolve().parts[-3:])
    p = Path(parts[-1])
    parts[-1] = f"{p.stem}_{p.suffix[1:]}" if p.suffix else p.name
    return _UNSAFE.sub("_", "__".join(parts))


def out_names(paths: Sequence[Path]) -> list[str]:
    """One distinct stem per input, in input order: a repeat of an earlier stem gets ``-2``,
    ``-3``... (compared case-insensitively, for case-insensitive file systems), so the same
    inputs always get the same names and no result file overwrites another."""
    used: set[str] = set()
    names = []
    for path in paths:
        base = name = out_name(path)
        k = 1
        while name.lower() in used:
            k += 1
            name = f"{base}-{k}"
        used.add(name.lower())
        names.append(name)
    return names


def decode_or_skip(files: Sequence[Path]) -> tuple[list[np.ndarray], list[int], list[dict]]:
    """Decode ``files``: the images, the positions of those that decoded, and for the others
    ``{"path", "error"}``, each also reported on stderr as ``skipped: ...`` (one bad file must
    not stop the rest from being scored)."""
    from oddeye.errors import OddeyeError
    from oddeye.io.images import read_image

    images, kept, errors = [], [], []
    for k, f in enumerate(files):
        try:
            images.append(read_image(f))
            kept.append(k)
        except OddeyeError as exc:
            errors.append({"path": str(f), "error": str(exc)})
            print(f"skipped: {exc}", file=sys.stderr)
    return images, kept, errors


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that is a file before any work (mkdir would raise a traceback)."""
    from oddeye.errors import DataError

    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file, not a folder")


def prepare_out(out: Path) -> None:
    """Create the output folders, or fail in one line (a file in the way, no permission)."""
    from oddeye.errors import DataError

    check_out(out)
    try:
        (out / "overlays").mkdir(parents=True, exist_ok=True)
        (out / "masks").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"--out {out}: cannot create the output folders ({exc})") from None


def clear_earlier_results(out: Path) -> int:
    """Remove the overlays and masks an earlier ``predict`` into ``out`` wrote (those its
    ``results.jsonl`` lists, nothing else), so the new table and the folder agree; returns how
    many files went."""
    listing = out / "results.jsonl"
    if not listing.is_file():
        return 0
    removed = 0
    root = out.resolve()
    with open(listing) as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            for key in ("overlay", "mask"):
                rel = row.get(key) if isinstance(row, dict) else None
                f = (out / rel) if isinstance(rel, str) else None
                # only files inside --out, as a results file written by predict names them
                if f is not None and root in f.resolve().parents and f.is_file():
                    f.unlink()
                    removed += 1
    return removed


def load_detector(args: argparse.Namespace) -> Any:
    """The model of ``--model`` with its references set; ``--refs`` is refused for a model
    that does not use them (silently ignoring them would score without what the user gave)."""
    from oddeye.commands._common import is_onnx_path, open_model
    from oddeye.errors import OddeyeError

    onnx = is_onnx_path(args.model)
    det = open_model(args.model, device=args.device)
    if getattr(det, "needs_references", False):
        if not args.refs:
            raise OddeyeError(f"model {args.model} ({det.method}) needs --refs with good images")
        det.set_references(gather(args.refs))
    elif args.refs:
        if onnx:
            raise OddeyeError(f"model {args.model}: an exported model takes no --refs (any "
                              "references are fixed inside it; re-export with other --refs)")
        raise OddeyeError(f"model {args.model} ({det.method}) does not use reference images; "
                          "drop --refs")
    return det


def run(args: argparse.Namespace) -> int:
    from oddeye.errors import DataError
    from oddeye.io.images import IMAGE_EXTENSIONS
    from oddeye.report.overlay import overlay

    if args.batch_size < 1:  # callers that build the namespace themselves (demo, scripts)
        raise DataError(f"--batch-size must be >= 1, got {args.batch_size}")
    out = Path(args.out)
    check_out(out)
    files, own = outside(gather(args.paths), out)
    if own:
        print(f"oddeye predict: left out {own} file(s) under --out {out} (results of an "
              f"earlier run, not inputs)", file=sys.stderr)
    if not files:
        raise DataError(f"no images found under {', '.join(args.paths)} (supported: "
                        f"{', '.join(sorted(IMAGE_EXTENSIONS))})")
    det = load_detector(args)
    prepare_out(out)
    replaced = clear_earlier_results(out)
    if replaced:
        print(f"oddeye predict: replaced an earlier run's results in {out} ({replaced} overlay "
              f"and mask files removed)", file=sys.stderr)
    names = out_names(files)
    rows, errors = [], []
    for start in range(0, len(files), args.batch_size):
        images, kept, failed = decode_or_skip(files[start:start + args.batch_size])
        errors += failed
        batch = [start + k for k in kept]
        if not batch:
            continue
        pred = det.predict(images)
        for i, j in enumerate(batch):
            f, name = files[j], names[j]
            amap = pred.map_at_original_size(i)
            ov = overlay(images[i], amap, det.threshold_, det.score_scale_)
            # zlib level 1: 5x faster than the default on a 24-megapixel overlay, ~12% larger
            Image.fromarray(ov).save(out / "overlays" / f"{name}.png", compress_level=1)
            mask = (amap > det.threshold_).astype(np.uint8) * 255
            Image.fromarray(mask).save(out / "masks" / f"{name}_mask.png")
            rows.append({"path": str(f), "score": float(pred.scores[i]),
                         "normalized_score": float(pred.normalized_scores[i]),
                         "label": int(pred.labels[i]), "threshold": float(det.threshold_),
                         "overlay": f"overlays/{name}.png", "mask": f"masks/{name}_mask.png"})
    fields = ["path", "score", "normalized_score", "label", "threshold", "overlay", "mask"]
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    with open(out / "results.jsonl", "w") as fh:
        for r in rows + errors:
            fh.write(json.dumps(r) + "\n")
    n_def = sum(r["label"] for r in rows)
    print(f"scored {len(rows)} images ({n_def} defective), {len(errors)} skipped; wrote {out}")
    return 0 if rows else 2
