"""``oddeye info``: what a model file is, before anyone deploys it."""

from __future__ import annotations

import argparse
import sys

NAME = "info"
HELP = "describe model files (.oddeye or .onnx): method, parameters, training, threshold"
DESCRIPTION = (
    "Read each model file and print what it is: method, backbone and taps, input size and "
    "frame, the parameters that differ from this version's defaults, what it was trained on "
    "(images, categories, data folders, shots and seed, labelled defects, seconds), the "
    "threshold and where it came from, and what the fit chose from the data. A file that "
    "cannot be read is reported in one line and the others are still described."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``oddeye info``."""
    p.add_argument("models", nargs="+", metavar="MODEL", help="model files (.oddeye or .onnx)")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="also write the descriptions as JSON: {path: details or {error}}")


def run(args: argparse.Namespace) -> int:
    """Describe every model; exit status 2 when any could not be read."""
    from oddeye.commands._common import check_output_file, open_model, write_json
    from oddeye.errors import OddeyeError
    from oddeye.io.modelinfo import format_details, model_details

    if args.json:
        check_output_file(args.json, "--json",
                          {f"model {i + 1}": m for i, m in enumerate(args.models)})
    out: dict[str, dict] = {}
    failed = printed = 0
    for path in args.models:
        try:
            # on the CPU: describing a model needs no GPU
            details = model_details(open_model(path, device="cpu"), path)
        except OddeyeError as exc:
            failed += 1
            out[path] = {"error": str(exc)}
            print(f"oddeye info: error: {exc}", file=sys.stderr)
            continue
        out[path] = details
        print(("\n" if printed else "") + format_details(details))
        printed += 1
    if args.json:
        write_json(args.json, out)
    return 2 if failed else 0
