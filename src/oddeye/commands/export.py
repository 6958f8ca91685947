"""``oddeye export``: write a trained model as one ONNX graph usable without the training stack."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

NAME = "export"
HELP = "export a .oddeye model to ONNX (whole inference path, metadata included)"
DESCRIPTION = (
    "Export the whole inference path (normalisation, backbone, method head, upsampling, blur, "
    "image score) as one ONNX graph taking resized RGB images (N, 3, S, S) with values 0..255. "
    "Threshold and model description are stored in the ONNX metadata; `oddeye predict --model "
    "M.onnx` and `oddeye serve --model M.onnx` use it through onnxruntime."
)


#: The nearest-neighbour search's float32 floor: its expanded distance form rounds to about
#: 1e-3 of the vectors' length after the square root, so a patch matching a bank entry almost
#: exactly (a training image's) scores a few 1e-4 apart in torch and in ONNX Runtime.
NEAR_ZERO_FLOOR = 2e-3


def parity_within(diff: dict[str, float], tolerance: float) -> bool:
    """Whether both largest differences are finite and within ``tolerance``: a NaN difference
    (a model whose outputs are not numbers) is a failure, not a pass."""
    return all(math.isfinite(diff[k]) and diff[k] <= tolerance
               for k in ("max_map_diff", "max_score_diff"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="trained model file (.oddeye)")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format (onnx)")
    p.add_argument("--out", required=True, help="output file, e.g. model.onnx")
    p.add_argument("--input-dtype", default="uint8", choices=["uint8", "float32"],
                   help="graph input type; values 0..255 either way (default uint8)")
    p.add_argument("--batch", type=int, help="fix the batch size (default: dynamic batch axis)")
    p.add_argument("--opset", type=int, default=17,
                   help="ONNX opset, 12 to 20 with torch 2.13 (default 17)")
    p.add_argument("--refs", nargs="+", metavar="REF",
                   help="reference good images baked into the graph (few-shot methods)")
    p.add_argument("--check", nargs="*", metavar="IMAGE",
                   help="images to compare torch and ONNX outputs on (default: 2 synthetic "
                        "images); pass --no-check to skip")
    p.add_argument("--no-check", action="store_true", help="skip the parity check")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest allowed map/score difference in the check (default 1e-4)")


def check_refs(det: Any, model: str, refs: list[str] | None) -> None:
    """Refuse ``--refs`` for a model that does not use references, and require them for one that
    does, in one line as ``oddeye predict`` does (not a NotImplementedError traceback)."""
    from oddeye.errors import OddeyeError

    if getattr(det, "needs_references", False):
        if not refs:
            raise OddeyeError(f"model {model} ({det.method}) needs --refs with good images "
                              "to bake into the exported graph")
    elif refs:
        raise OddeyeError(f"model {model} ({det.method}) does not use reference images; "
                          "drop --refs")


def run(args: argparse.Namespace) -> int:
    import oddeye
    from oddeye.commands._common import check_output_file, is_onnx_path
    from oddeye.commands.predict import gather
    from oddeye.export.onnx import (
        ExportError,
        OnnxDetector,
        check_opset,
        check_out_path,
        compare,
        export_onnx,
        random_images,
    )
    from oddeye.preprocess import load_rgb

    # arguments that can only fail the export are checked before the model is loaded and traced
    check_opset(args.opset)
    check_out_path(args.out)
    if not is_onnx_path(args.out):  # predict, info and serve tell the formats by this name
        raise ExportError(f"--out {args.out}: give a .onnx file name")
    check_output_file(args.out, "--out", {"--model": args.model})
    if args.batch is not None and args.batch < 1:
        raise ExportError(f"--batch must be >= 1 (omit it for a dynamic batch axis), got "
                          f"{args.batch}")
    if not args.tolerance >= 0:
        raise ExportError(f"--tolerance must be a number >= 0, got {args.tolerance:g}")
    det = oddeye.load(args.model, device="cpu")  # traced and compared on the CPU
    check_refs(det, args.model, args.refs)
    if args.refs:
        det.set_references(gather(args.refs))
    images = None
    if args.check and not args.no_check:  # decoded before the export: no file for a bad image
        images = gather(args.check)
        if not images:
            raise ExportError(f"--check: no images found under {', '.join(args.check)}")
        images = [load_rgb(p) for p in images]
    out = export_onnx(det, args.out, input_dtype=args.input_dtype, batch=args.batch,
                      opset=args.opset)
    size_mb = Path(out).stat().st_size / 1e6
    print(f"exported {det.method} ({det.method_.backbone}, {det.size}px) to {out} "
          f"({size_mb:.1f} MB, input {args.input_dtype} "
          f"{'batch ' + str(args.batch) if args.batch else 'dynamic batch'})")
    if args.no_check:
        return 0
    images = images or random_images(2, det.size)
    diff = compare(det, OnnxDetector(out), images)
    print(f"parity on {int(diff['n_images'])} images: max map diff {diff['max_map_diff']:.2e}, "
          f"max score diff {diff['max_score_diff']:.2e}, label flips {int(diff['label_flips'])}")
    if not parity_within(diff, args.tolerance):
        hint = ""
        if all(math.isfinite(diff[k]) and diff[k] <= NEAR_ZERO_FLOOR
               for k in ("max_map_diff", "max_score_diff")) and not diff["label_flips"]:
            hint = (f" (differences under {NEAR_ZERO_FLOOR:g} with no label flipped are what "
                    f"float32 rounding gives where an image's patches match the bank almost "
                    f"exactly, as its own training images do: check on images it did not "
                    f"train on, or pass --tolerance {NEAR_ZERO_FLOOR:g})")
        raise ExportError(f"{out}: ONNX output differs from the torch model by more than "
                          f"{args.tolerance:g}; the file was written but should not be used"
                          + hint)
    return 0
