"""``oddeye calibrate``: set a model's threshold from labelled images (the F1-optimal one)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from oddeye.commands._common import add_device_flag, int_at_least

NAME = "calibrate"
HELP = "set a model's threshold to the F1-optimal one on labelled good and defective images"
DESCRIPTION = (
    "Score labelled images with a .oddeye model and write a copy whose threshold is the "
    "F1-optimal one on them (the default threshold needs no labels: mean + 3 std of good "
    "images' scores). The normalised score's scale becomes the spread of the good images' "
    "scores; the model itself is unchanged. Unreadable images are reported and skipped. Use "
    "images kept apart from any test set you report: a threshold chosen on a test split makes "
    "its F1 optimistic."
)

#: why ONNX exports are refused: their threshold is part of the exported graph's metadata
ONNX_NOTE = ("an exported model's threshold is fixed in its metadata: calibrate the .oddeye "
             "file it came from, then export again")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``oddeye calibrate``."""
    p.add_argument("--model", required=True, help="model file (.oddeye)")
    p.add_argument("--good", nargs="+", required=True, metavar="PATH",
                   help="good images: files or folders (walked)")
    p.add_argument("--defective", nargs="+", required=True, metavar="PATH",
                   help="defective images: files or folders (walked)")
    p.add_argument("--out", required=True,
                   help="the calibrated model file (may be --model itself: replaced safely)")
    p.add_argument("--refs", nargs="+", metavar="REF",
                   help="reference good images, only for models that score against reference "
                        "shots (resad): the threshold holds for these references, and the "
                        "written file keeps them")
    p.add_argument("--batch-size", type=int_at_least(1), default=4, metavar="N",
                   help="images per forward pass (default: 4)")
    p.add_argument("--json", metavar="FILE",
                   help="also write the old and new threshold, F1, precision, recall and the "
                        "skipped files as JSON")
    add_device_flag(p)


def check_disjoint(good: list[Path], defective: list[Path]) -> None:
    """Refuse an image listed as both good and defective (a label cannot be both)."""
    from oddeye.errors import DataError

    seen = {p.resolve(): p for p in good}
    both = [p for p in defective if p.resolve() in seen]
    if both:
        more = f" and {len(both) - 1} more" if len(both) > 1 else ""
        raise DataError(f"{both[0]} is given as good and as defective{more}; each image needs "
                        "one label")


def score_labelled(det: Any, files: list[Path], labels: list[int], batch_size: int
                   ) -> tuple[np.ndarray, np.ndarray, list[dict[str, str]]]:
    """Raw scores and labels of every readable file, decoded and scored a batch at a time
    (memory bounded by the batch); unreadable files are reported on stderr and skipped."""
    from oddeye.commands.predict import decode_or_skip

    scores, kept, errors = [], [], []
    for start in range(0, len(files), batch_size):
        images, ok, failed = decode_or_skip(files[start:start + batch_size])
        errors += failed
        kept += [labels[start + k] for k in ok]
        if images:
            scores += [p.scores for p in det.iter_predict(images, batch_size)]
    flat = np.concatenate(scores) if scores else np.zeros(0)
    return flat, np.asarray(kept, dtype=int), errors


def run(args: argparse.Namespace) -> int:
    """Score the labelled images, set the F1-optimal threshold, write the model."""
    from oddeye.commands._common import check_output_file, is_onnx_path, write_json
    from oddeye.commands.predict import gather, load_detector
    from oddeye.errors import DataError
    from oddeye.metrics import precision_recall_f1

    if is_onnx_path(args.model):
        raise DataError(f"--model {args.model}: {ONNX_NOTE}")
    if is_onnx_path(args.out) or Path(args.out).suffix.lower() != ".oddeye":
        raise DataError(f"--out {args.out}: give a .oddeye file name")
    check_output_file(args.out, "--out")  # may be --model itself: replaced atomically
    if args.json:
        check_output_file(args.json, "--json", {"--model": args.model, "--out": args.out})
        if Path(args.json).resolve() == Path(args.out).resolve():
            raise DataError(f"--json {args.json}: is the same file as --out; give another name")
    good, defective = gather(args.good), gather(args.defective)
    for flag, files, given in (("--good", good, args.good),
                               ("--defective", defective, args.defective)):
        if not files:
            raise DataError(f"{flag}: no images found under {', '.join(given)}")
    check_disjoint(good, defective)
    det = load_detector(args)
    scores, y, errors = score_labelled(det, good + defective,
                                       [0] * len(good) + [1] * len(defective), args.batch_size)
    for label, name in ((0, "good"), (1, "defective")):
        if not np.any(y == label):
            raise DataError(f"none of the {name} images could be read ({len(errors)} skipped); "
                            "the threshold was not changed")
    before = {"threshold": float(det.threshold_), **det.threshold_info_}
    det.calibrate_scores(scores, y)
    after = precision_recall_f1(scores, y, det.threshold_)
    old = precision_recall_f1(scores, y, before["threshold"])
    path = det.save(args.out, extra=_train_extra(det))
    report: dict[str, Any] = {
        "model": str(args.model), "out": str(path), "n_good": int(np.sum(y == 0)),
        "n_defective": int(np.sum(y == 1)), "skipped": errors,
        "before": {**before, **old}, "after": {"threshold": float(det.threshold_),
                                               **det.threshold_info_, **after}}
    print(f"threshold {before['threshold']:.6g} (F1 {old['f1']:.3f} on these images) -> "
          f"{det.threshold_:.6g} (F1 {after['f1']:.3f}, precision {after['precision']:.3f}, "
          f"recall {after['recall']:.3f}) from {report['n_good']} good and "
          f"{report['n_defective']} defective images"
          + (f", {len(errors)} skipped" if errors else "") + f"; wrote {path}")
    if args.json:
        write_json(args.json, report)
    return 0


def _train_extra(det: Any) -> dict[str, Any]:
    """What the model file said about its training beyond what ``save`` writes itself (data
    folders, shots, seed, labelled defects): kept, so calibrating loses nothing."""
    train = dict(getattr(det, "meta_", {}).get("train", {}))
    return {k: v for k, v in train.items() if k not in ("n_images", "fit_seconds", "categories")}
