"""``oddeye benchmark``: run benchmark suites; each writes its section of benchmarks/RESULTS.md."""

from __future__ import annotations

import argparse
import importlib

from oddeye.commands._common import parse_params

NAME = "benchmark"
HELP = "run benchmark suites and write benchmarks/RESULTS.md"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from oddeye.bench import SUITES

    p.add_argument("--suite", nargs="+", default=["detection"], choices=sorted(SUITES),
                   help="suites to run (default: detection)")
    p.add_argument("--methods", nargs="+", help="detection: methods (default patchcore padim)")
    p.add_argument("--datasets", nargs="+",
                   help="detection: synthetic, tire, magnetic_tile, deeppcb or folders")
    p.add_argument("--backbone", help="detection: backbone for every method")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="method hyper-parameter")
    p.add_argument("--section", help="detection: results section name (default: detection)")
    p.add_argument("--out", help="results file (default benchmarks/RESULTS.md)")


def run(args: argparse.Namespace) -> int:
    from oddeye.bench import SUITES

    for suite in args.suite:
        mod_name, fn_name = SUITES[suite].split(":")
        fn = getattr(importlib.import_module(mod_name), fn_name)
        kwargs = {"out_path": args.out} if args.out else {}
        if suite == "detection":
            kwargs.update(methods=args.methods, datasets=args.datasets, backbone=args.backbone,
                          params=parse_params(args.param), section=args.section or "detection")
        print(fn(**kwargs))
    return 0
