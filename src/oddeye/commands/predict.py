"""``oddeye predict``: score images, write overlays, masks and a results table."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from oddeye.commands._common import add_device_flag

NAME = "predict"
HELP = "score images: overlays, masks, results.csv / results.jsonl"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model file (.oddeye or .onnx)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (walked)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--refs", nargs="+", metavar="REF",
                   help="reference good images (few-shot methods)")
    p.add_argument("--batch-size", type=int, default=4)
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
        else:
            raise DataError(f"{p} does not exist")
    return out


def out_name(path: Path) -> str:
    """A file-system safe, unique-enough stem for a result file."""
    parts = [x for x in path.resolve().parts[-3:]]
    return "__".join(parts).rsplit(".", 1)[0].replace(" ", "_")


def run(args: argparse.Namespace) -> int:
    from oddeye.errors import OddeyeError
    from oddeye.io.images import read_image
    from oddeye.report.overlay import overlay

    if args.model.endswith(".onnx"):
        from oddeye.export.onnx import OnnxDetector

        det = OnnxDetector(args.model)
    else:
        import oddeye

        det = oddeye.load(args.model, device=args.device)
    if getattr(det, "needs_references", False):
        if not args.refs:
            raise OddeyeError(f"model {args.model} ({det.method}) needs --refs with good images")
        det.set_references(gather(args.refs))
    files = gather(args.paths)
    out = Path(args.out)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rows, errors = [], []
    for start in range(0, len(files), args.batch_size):
        batch, images = [], []
        for f in files[start:start + args.batch_size]:
            try:
                images.append(read_image(f))
                batch.append(f)
            except OddeyeError as exc:
                errors.append({"path": str(f), "error": str(exc)})
                print(f"skipped: {exc}", file=sys.stderr)
        if not batch:
            continue
        pred = det.predict(images)
        for i, f in enumerate(batch):
            amap = pred.map_at_original_size(i)
            name = out_name(f)
            ov = overlay(images[i], amap, det.threshold_, det.score_scale_)
            Image.fromarray(ov).save(out / "overlays" / f"{name}.png")
            mask = ((amap > det.threshold_) * 255).astype(np.uint8)
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
    return 0 if rows or not files else 2
