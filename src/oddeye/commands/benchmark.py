"""``oddeye benchmark``: run benchmark suites; each writes its section of benchmarks/RESULTS.md."""

from __future__ import annotations

import argparse
import importlib

from oddeye.commands._common import check_output_file, parse_params

NAME = "benchmark"
HELP = "run benchmark suites and write benchmarks/RESULTS.md"

#: Per suite, the options it reads besides --out (which every suite takes) and the keyword of its
#: run function each one is given to. Any other option is refused; the refusal, the help strings'
#: suite lists and the forwarding all come from this one table.
SUITE_FLAGS: dict[str, dict[str, str]] = {
    "detection": {"--methods": "methods", "--datasets": "datasets", "--backbone": "backbone",
                  "--param": "params", "--section": "section"},
    "adbench": {"--datasets": "data_root"},
    "anoonly-image": {"--datasets": "datasets", "--param": "params", "--section": "section",
                      "--seed": "seed"},
    "rd4ad": {"--datasets": "datasets", "--param": "params"},
    "selection": {"--datasets": "datasets", "--section": "section"},
    "onnx": {"--methods": "methods", "--section": "section"},
    "serving": {"--section": "section"},
}

#: What ``--datasets`` names to each suite that reads it; suites with different meanings cannot
#: share one ``--datasets`` (the adbench suite's .npz data are no image data sets).
DATASETS_MEANING: dict[str, str] = {
    "detection": "image data sets", "anoonly-image": "image data sets",
    "rd4ad": "image data sets", "selection": "image data sets",
    "adbench": ".npz data",
}

FLAGS = ("--methods", "--datasets", "--backbone", "--param", "--section", "--seed")


def readers(flag: str) -> list[str]:
    """The suites that read ``flag``, in table order."""
    return [s for s, flags in SUITE_FLAGS.items() if flag in flags]


def _for(flag: str) -> str:
    return ", ".join(readers(flag))


def add_arguments(p: argparse.ArgumentParser) -> None:
    from oddeye.bench import SUITES

    p.add_argument("--suite", nargs="+", default=["detection"], choices=sorted(SUITES),
                   help="suites to run (default: detection)")
    p.add_argument("--methods", nargs="+",
                   help=f"read by: {_for('--methods')}; methods to fit (default patchcore padim; "
                        "onnx: exportable methods only)")
    p.add_argument("--datasets", nargs="+",
                   help=f"read by: {_for('--datasets')}; detection: synthetic, tire, "
                        "magnetic_tile, deeppcb or folders; anoonly-image, rd4ad, selection: "
                        "tire, magnetic_tile, deeppcb; adbench: .npz files or folders of them "
                        "(default: $ODDEYE_SHARED_DATA/adbench, else ../shared/data/adbench)")
    p.add_argument("--backbone", help=f"read by: {_for('--backbone')}; backbone for every method")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help=f"read by: {_for('--param')}; method hyper-parameter")
    p.add_argument("--section",
                   help=f"read by: {_for('--section')}; results section name (default: the "
                        "suite's own; one such suite at a time)")
    p.add_argument("--seed", type=int,
                   help=f"read by: {_for('--seed')}; which labelled defects are drawn and the "
                        "heads' seed (default 0; another names the section -seed<S>)")
    p.add_argument("--out", help="results file (default benchmarks/RESULTS.md)")


def _given(args: argparse.Namespace) -> list[str]:
    return [f for f in FLAGS if getattr(args, f[2:]) is not None]


def check_flags(args: argparse.Namespace) -> None:
    """Refuse options none of the chosen suites reads (they would be ignored silently),
    ``--datasets`` for suites it means different data to (detection and adbench), and
    ``--section`` for several suites at once (they would overwrite one section)."""
    from oddeye.errors import DataError

    suites = list(dict.fromkeys(args.suite))
    given = _given(args)
    for flag in given:
        if not any(flag in SUITE_FLAGS.get(s, {}) for s in suites):
            raise DataError(f"{flag} is not used by the {', '.join(suites)} suite"
                            f"{'s' if len(suites) > 1 else ''} (only by: {_for(flag)}); "
                            f"leave it out")
    if "--datasets" in given:
        meanings: dict[str, list[str]] = {}
        for s in suites:
            if "--datasets" in SUITE_FLAGS.get(s, {}):
                meanings.setdefault(DATASETS_MEANING[s], []).append(s)
        if len(meanings) > 1:
            parts = [f"{m} to the {', '.join(ss)} suite{'s' if len(ss) > 1 else ''}"
                     for m, ss in meanings.items()]
            raise DataError(f"--datasets means {' and '.join(parts)}; run them separately")
    if "--section" in given:
        takers = [s for s in suites if "--section" in SUITE_FLAGS.get(s, {})]
        if len(takers) > 1:
            raise DataError(f"--section would name the section of each of the {', '.join(takers)} "
                            "suites (each would overwrite the other); run them separately")


def check_datasets(suites: list[str], datasets: list[str] | None) -> None:
    """Refuse a ``--datasets`` name that a chosen suite reading named sets does not know
    (anoonly-image, rd4ad, selection: the keys of ``detection_suite.DATASETS``)."""
    from oddeye.bench.detection_suite import DATASETS
    from oddeye.errors import DataError

    for s in suites:
        if s in ("detection", "adbench") or "--datasets" not in SUITE_FLAGS.get(s, {}):
            continue  # detection and adbench check their own (folders, files)
        for ds in datasets or []:
            if ds not in DATASETS:
                raise DataError(f"--datasets {ds}: not a data set of the {s} suite (it reads "
                                f"the named sets {', '.join(DATASETS)})")


def check_methods(suites: list[str], methods: list[str] | None) -> None:
    """Refuse ``--methods`` names the onnx suite cannot fit and export (detection checks its
    own)."""
    if "onnx" not in suites or not methods:
        return
    from oddeye.errors import DataError
    from oddeye.export.onnx import method_can_export
    from oddeye.methods import available_methods

    known = available_methods()
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise DataError(f"--methods: unknown method(s) {', '.join(map(repr, unknown))} for the "
                        f"onnx suite; available: {', '.join(known)}")
    fixed = [m for m in methods if not method_can_export(m)]
    if fixed:
        raise DataError(f"--methods: {', '.join(map(repr, fixed))} cannot be exported to ONNX "
                        "(the onnx suite)")


def check_args(args: argparse.Namespace) -> dict[str, object]:
    """Every argument check of the chosen suites, before any suite runs (one-line errors).
    Returns the given options by flag, ``--param`` parsed (once, here) into a dict."""
    from oddeye.bench.results import DEFAULT_RESULTS

    suites = list(dict.fromkeys(args.suite))
    check_flags(args)
    options: dict[str, object] = {f: getattr(args, f[2:]) for f in _given(args)}
    if "--param" in options:
        options["--param"] = parse_params(args.param)
    if "detection" in suites:
        from oddeye.bench.detection_suite import check_args as check_detection

        check_detection(args.methods, args.datasets)
    if "adbench" in suites:
        from oddeye.bench.adbench_suite import data_files

        data_files(args.datasets)
    check_datasets(suites, args.datasets)
    check_methods(suites, args.methods)
    check_output_file(args.out or DEFAULT_RESULTS, "--out")
    return options


def suite_kwargs(suite: str, options: dict[str, object], out: str | None = None) -> dict:
    """The keyword arguments for ``suite``'s run function: ``out_path`` and each given option
    (``options``, from ``check_args``) the suite reads, under its keyword in ``SUITE_FLAGS``;
    options not given keep the suite's defaults."""
    kwargs: dict[str, object] = {"out_path": out} if out else {}
    for flag, keyword in SUITE_FLAGS.get(suite, {}).items():
        if flag in options:
            kwargs[keyword] = options[flag]
    return kwargs


def run(args: argparse.Namespace) -> int:
    """Check every option up front, then run the suites in the order given."""
    from oddeye.bench import SUITES

    options = check_args(args)
    for suite in dict.fromkeys(args.suite):
        mod_name, fn_name = SUITES[suite].split(":")
        fn = getattr(importlib.import_module(mod_name), fn_name)
        print(fn(**suite_kwargs(suite, options, args.out)))
    return 0
