"""``oddeye benchmark``: run benchmark suites; each writes its section of benchmarks/RESULTS.md."""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
from pathlib import Path
from typing import Any

from oddeye.commands._common import check_output_file, parse_params, parse_value

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

#: The keys a ``--config`` file may hold: each stands for the option of the same name
#: (``params`` for the repeated ``--param``); what kind of value each takes.
CONFIG_KEYS: dict[str, str] = {
    "suite": "names", "methods": "names", "datasets": "names", "backbone": "name",
    "params": "table", "section": "name", "seed": "integer", "out": "name",
}


def readers(flag: str) -> list[str]:
    """The suites that read ``flag``, in table order."""
    return [s for s, flags in SUITE_FLAGS.items() if flag in flags]


def _for(flag: str) -> str:
    return ", ".join(readers(flag))


def add_arguments(p: argparse.ArgumentParser) -> None:
    from oddeye.bench import SUITES

    p.add_argument("--config", metavar="FILE",
                   help="a TOML or JSON file of options (keys: "
                        f"{', '.join(CONFIG_KEYS)}); an option also given as a flag takes the "
                        "flag's value, --param entries override its params key by key")
    p.add_argument("--suite", nargs="+", choices=sorted(SUITES),
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
        from oddeye.bench.results import check_section_name

        try:
            check_section_name(args.section)
        except ValueError as exc:
            raise DataError(f"--section: {exc}") from None
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


#: The methods a suite fits with the ``--param`` settings (detection: ``--methods``)
PARAM_METHODS: dict[str, list[str]] = {"anoonly-image": ["patchcore", "anoonly-head"],
                                       "rd4ad": ["rd4ad"]}


def check_suite_params(suites: list[str], options: dict[str, object]) -> None:
    """Build each Detector a chosen suite would fit with the ``--param`` (and ``--backbone``)
    settings and run its checks, so a name a method does not take, or a value the Detector's
    or the method's checks refuse, stops the command before any suite runs, not inside a
    suite after earlier ones took their time. (Values a method checks only when it builds its
    head, such as PatchCore's ``grid``, still fail in the suite, with its one-line error.)"""
    from oddeye.api import Detector
    from oddeye.errors import DataError, OddeyeError

    params = dict(options.get("--param") or {})
    if "backbone" in params and options.get("--backbone"):
        raise DataError(f"--param backbone={params['backbone']} and --backbone "
                        f"{options['--backbone']}: give the backbone once")
    for suite in suites:
        if "--param" not in SUITE_FLAGS.get(suite, {}) or not (params or
                                                                options.get("--backbone")):
            continue
        extra: dict[str, object] = {}
        if suite == "detection":
            from oddeye.bench.detection_suite import DEFAULT_METHODS

            methods = list(options.get("--methods") or DEFAULT_METHODS)
            if options.get("--backbone"):
                extra["backbone"] = options["--backbone"]
        else:
            methods = PARAM_METHODS[suite]
        for method in methods:
            try:
                det = Detector(method=method, **extra, **params)
                det.check_params()
                if "device" in params:  # a device this machine lacks, before any suite
                    from oddeye.device import resolve_device

                    resolve_device(det.device)
            except (OddeyeError, TypeError) as exc:
                flag = "--param" if params else "--backbone"
                raise DataError(f"{flag}: {exc} (the {suite} suite fits {method} with "
                                "these settings)") from None


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
    if "anoonly-image" in suites:
        from oddeye.bench.anoonly_image_suite import check_params

        check_params(options.get("--param"))
    check_datasets(suites, args.datasets)
    check_methods(suites, args.methods)
    check_suite_params(suites, options)
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


def _read_config(path: Path) -> Any:
    """The parsed content of a ``--config`` file (TOML by default, JSON for ``.json``)."""
    from oddeye.errors import DataError

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"--config {path}: no such file") from None
    except OSError as exc:
        raise DataError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"--config {path}: not valid JSON ({exc})") from None
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise DataError(f"--config {path}: reading TOML needs Python 3.11 or the tomli "
                            "package; or write the options as JSON (a .json file)") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"--config {path}: not valid TOML ({exc})") from None


def load_config(path: str | Path) -> dict[str, Any]:
    """The options of a ``--config`` file, checked key by key: names (a string or a list of
    strings), a name, an integer seed, and ``params`` as a table of hyper-parameters. Errors
    name the file and the key."""
    from oddeye.bench import SUITES
    from oddeye.errors import DataError

    path = Path(path)
    data = _read_config(path)
    if not isinstance(data, dict):
        raise DataError(f"--config {path}: expected a table of options (keys: "
                        f"{', '.join(CONFIG_KEYS)}), got a {type(data).__name__}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        kind = CONFIG_KEYS.get(key)
        where = f"--config {path}: {key}"
        if kind is None:
            hint = " (the key is params)" if key in ("param", "parameters") else ""
            raise DataError(f"--config {path}: unknown key {key!r}{hint}; known keys: "
                            f"{', '.join(CONFIG_KEYS)}")
        if kind == "names":
            value = [value] if isinstance(value, str) else value
            if (not isinstance(value, list) or not value
                    or not all(isinstance(v, str) and v for v in value)):
                raise DataError(f"{where} must be a name or a non-empty list of names")
            if key == "suite":
                unknown = [v for v in value if v not in SUITES]
                if unknown:
                    raise DataError(f"{where}: unknown suite(s) {', '.join(map(repr, unknown))}; "
                                    f"available: {', '.join(sorted(SUITES))}")
        elif kind == "name" and (not isinstance(value, str) or not value):
            raise DataError(f"{where} must be a non-empty string")
        elif kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
            raise DataError(f"{where} must be an integer")
        elif kind == "table":
            if not isinstance(value, dict):
                raise DataError(f"{where} must be a table of hyper-parameters (key = value)")
            for name, v in value.items():
                try:
                    json.dumps(v)
                except (TypeError, ValueError):
                    raise DataError(f"{where}.{name}: a {type(v).__name__} is not a "
                                    "hyper-parameter value (numbers, strings, booleans, "
                                    "lists and tables are)") from None
        out[key] = value
    return out


def _param_text(value: Any) -> str:
    """``value`` as ``--param`` would take it: a string as typed where that reads back as the
    same string (``grid=last``), anything else as JSON (``max_bank=20000``, ``pad=null``)."""
    if isinstance(value, str) and parse_value(value) == value:
        return value
    return json.dumps(value)


def apply_config(args: argparse.Namespace) -> None:
    """Fill the options not given as flags from ``--config`` (if any); ``--suite`` defaults to
    detection. Config ``params`` come before the ``--param`` flags, so a flag wins per key."""
    config = load_config(args.config) if args.config else {}
    for key in ("suite", "methods", "datasets", "backbone", "section", "seed", "out"):
        if getattr(args, key) is None and key in config:
            setattr(args, key, config[key])
    if "params" in config:
        args.param = ([f"{k}={_param_text(v)}" for k, v in config["params"].items()]
                      + list(args.param or [])) or None
    if args.suite is None:
        args.suite = ["detection"]


def equivalent_command(args: argparse.Namespace) -> str:
    """The flags-only command that runs what ``args`` (config applied) runs, for the record."""
    parts = ["oddeye", "benchmark", "--suite", *args.suite]
    for flag in ("--methods", "--datasets"):
        parts += [flag, *getattr(args, flag[2:])] if getattr(args, flag[2:]) else []
    for flag in ("--backbone", "--section", "--seed", "--out"):
        value = getattr(args, flag[2:])
        parts += [flag, str(value)] if value is not None else []
    for item in args.param or []:
        parts += ["--param", item]
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    """Read ``--config``, check every option up front, then run the suites in the order given.
    With a config file the results record the equivalent flags, so a section says what ran."""
    from contextlib import nullcontext

    from oddeye.bench import SUITES
    from oddeye.bench.results import recorded_command
    from oddeye.errors import DataError

    apply_config(args)
    try:
        options = check_args(args)
    except DataError as exc:
        if not args.config:
            raise
        raise DataError(f"{exc} (options read from --config {args.config})") from None
    record = (recorded_command(f"{equivalent_command(args)}  # from --config {args.config}")
              if args.config else nullcontext())
    with record:
        for suite in dict.fromkeys(args.suite):
            mod_name, fn_name = SUITES[suite].split(":")
            fn = getattr(importlib.import_module(mod_name), fn_name)
            print(fn(**suite_kwargs(suite, options, args.out)))
    return 0
