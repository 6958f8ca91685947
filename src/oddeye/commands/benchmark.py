"""``oddeye benchmark``: run benchmark suites; each writes its section of benchmarks/RESULTS.md."""

from __future__ import annotations

import argparse
import importlib

from oddeye.commands._common import check_output_file, parse_params

NAME = "benchmark"
HELP = "run benchmark suites and write benchmarks/RESULTS.md"

#: The options each suite reads besides --out (which every suite takes); any other is refused.
SUITE_FLAGS: dict[str, tuple[str, ...]] = {
    "detection": ("--methods", "--datasets", "--backbone", "--param", "--section"),
    "adbench": ("--datasets",),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from oddeye.bench import SUITES

    p.add_argument("--suite", nargs="+", default=["detection"], choices=sorted(SUITES),
                   help="suites to run (default: detection)")
    p.add_argument("--methods", nargs="+", help="detection: methods (default patchcore padim)")
    p.add_argument("--datasets", nargs="+",
                   help="detection: synthetic, tire, magnetic_tile, deeppcb or folders; "
                        "adbench: .npz files or folders of them (default: "
                        "$ODDEYE_SHARED_DATA/adbench, else ../shared/data/adbench)")
    p.add_argument("--backbone", help="detection: backbone for every method")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="detection: method hyper-parameter")
    p.add_argument("--section", help="detection: results section name (default: detection)")
    p.add_argument("--out", help="results file (default benchmarks/RESULTS.md)")


def check_flags(args: argparse.Namespace) -> None:
    """Refuse options none of the chosen suites reads (they would be ignored silently), and
    ``--datasets`` for detection and adbench together (it means different data to each)."""
    from oddeye.errors import DataError

    suites = list(dict.fromkeys(args.suite))
    given = [f for f in ("--methods", "--datasets", "--backbone", "--param", "--section")
             if getattr(args, f[2:]) is not None]
    for flag in given:
        if not any(flag in SUITE_FLAGS.get(s, ()) for s in suites):
            users = [s for s, flags in SUITE_FLAGS.items() if flag in flags]
            raise DataError(f"{flag} is not used by the {', '.join(suites)} suite"
                            f"{'s' if len(suites) > 1 else ''} (only by: {', '.join(users)}); "
                            f"leave it out")
    if "--datasets" in given and {"detection", "adbench"} <= set(suites):
        raise DataError("--datasets means image folders to the detection suite and .npz data to "
                        "the adbench suite; run the two suites separately")


def check_args(args: argparse.Namespace) -> None:
    """Every argument check of the chosen suites, before any suite runs (one-line errors)."""
    from oddeye.bench.results import DEFAULT_RESULTS

    check_flags(args)
    parse_params(args.param)
    if "detection" in args.suite:
        from oddeye.bench.detection_suite import check_args as check_detection

        check_detection(args.methods, args.datasets)
    if "adbench" in args.suite:
        from oddeye.bench.adbench_suite import data_files

        data_files(args.datasets)
    check_output_file(args.out or DEFAULT_RESULTS, "--out")


def run(args: argparse.Namespace) -> int:
    """Check every option up front, then run the suites in the order given."""
    from oddeye.bench import SUITES

    check_args(args)
    for suite in dict.fromkeys(args.suite):
        mod_name, fn_name = SUITES[suite].split(":")
        fn = getattr(importlib.import_module(mod_name), fn_name)
        kwargs = {"out_path": args.out} if args.out else {}
        if suite == "detection":
            kwargs.update(methods=args.methods, datasets=args.datasets, backbone=args.backbone,
                          params=parse_params(args.param), section=args.section or "detection")
        elif suite == "adbench" and args.datasets:
            kwargs.update(data_root=args.datasets)
        print(fn(**kwargs))
    return 0
