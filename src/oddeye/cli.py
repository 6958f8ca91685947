"""The ``oddeye`` command line: parse arguments and hand over to a command module.

Each command lives in ``oddeye/commands/<name>.py`` and defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; they are discovered here, so adding a command
touches no other file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TextIO

from oddeye import __version__
from oddeye.errors import OddeyeError


def _command_modules() -> list:
    import oddeye.commands as pkg

    mods = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"oddeye.commands.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return mods


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per command module."""
    parser = argparse.ArgumentParser(
        prog="oddeye",
        description="Anomaly detection for visual inspection: learn normal, score and localise "
        "defects.",
    )
    parser.add_argument("--version", action="version", version=f"oddeye {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP,
                           description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def warning_printer(command: str) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints one line, ``oddeye <cmd>: warning: <message>``,
    like the CLI's errors: a user needs the message, not Python's source line and file path."""

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        text = " ".join(str(message).split())
        if not issubclass(category, UserWarning):  # e.g. a library's DeprecationWarning
            text = f"{text} ({category.__name__})"
        try:
            print(f"oddeye {command}: warning: {text}", file=file or sys.stderr)
        except OSError:  # stderr gone (closed pipe): a warning must not end the command
            pass

    return show


class ClosedPipeSafe:
    """A stdout that drops what it cannot write once its reader has gone (``oddeye test ... |
    head``): the command still finishes and writes its ``--json`` and report files instead of
    ending in a BrokenPipeError traceback."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self.broken = True
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self.broken = True

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``oddeye`` script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    stdout = sys.stdout = ClosedPipeSafe(sys.stdout)
    try:
        with warnings.catch_warnings():  # the one-line format only while a command runs
            warnings.showwarning = warning_printer(args.command)
            return int(args._run(args) or 0)
    except OddeyeError as exc:
        print(f"oddeye {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stdout = stdout._stream
        if stdout.broken:  # the interpreter's last flush at exit must not complain either
            _silence(sys.stdout)


def _silence(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at the null device (a reader-less pipe)."""
    import os

    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):  # no real descriptor (a test's capture)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
