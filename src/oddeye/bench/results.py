"""Write benchmark sections into ``benchmarks/RESULTS.md``.

Every suite owns one section between markers; running a suite replaces only its own section, so
the file is always the output of the benchmark command, never edited by hand.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

DEFAULT_RESULTS = Path("benchmarks") / "RESULTS.md"
_HEADER = (
    "# oddeye benchmark results\n\n"
    "Written by `oddeye benchmark`; each section is replaced when its suite runs again.\n"
)


def cpu_name() -> str:
    """The processor's model name from /proc/cpuinfo (Linux), else ``platform.processor()``,
    else ``"CPU"``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return " ".join(line.partition(":")[2].split()) or "CPU"
    except OSError:
        pass
    return platform.processor() or "CPU"


def machine_line() -> str:
    """One line describing the machine and load, for the record. It names the processor and
    the instruction set torch's CPU kernels use (AVX2, AVX512, ...): fits that are
    bit-reproducible on one machine diverge on another whose kernels round differently
    (docs/rd4ad.md), so rows are only comparable bit for bit where these match."""
    try:
        load = os.getloadavg()
        load_s = f"load {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}"
    except OSError:  # pragma: no cover - platform without getloadavg
        load_s = "load n/a"
    import torch

    gpus = ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available() else [])
    kernels = torch.backends.cpu.get_cpu_capability()
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs ({cpu_name()}, torch kernels {kernels}), "
        f"Python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        + (f"GPU {', '.join(gpus)}, " if gpus else "") + load_s
    )


#: What ``command_line`` reports instead of ``sys.argv`` while set (``recorded_command``)
_COMMAND: ContextVar[str | None] = ContextVar("oddeye_results_command", default=None)


@contextmanager
def recorded_command(text: str) -> Iterator[None]:
    """Record ``text`` as the command of every section written inside the block: for commands
    whose options do not all show in ``sys.argv`` (``oddeye benchmark --config FILE``)."""
    token = _COMMAND.set(text)
    try:
        yield
    finally:
        _COMMAND.reset(token)


def command_line() -> str:
    """The command that is running now, as a user would type it."""
    if _COMMAND.get() is not None:
        return _COMMAND.get()
    argv = list(sys.argv)
    if argv[:1] == ["-c"]:  # `python -c` keeps no trace of its code: say so, not just "-c"
        return "python -c ... (an inline call of a suite; the docs quote it)"
    argv[0] = Path(argv[0]).name
    if argv[0] in {"__main__.py", "-m"}:
        argv[0] = "oddeye"
    return " ".join(shlex.quote(a) for a in argv)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``'s sidecar ``.<name>.lock`` (POSIX ``flock``; no lock
    where the platform has none): two benchmark runs writing their sections at once each read
    the file the other has just written, so neither section is lost."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path.with_name(f".{path.name}.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


#: What a section name may hold: it sits inside an HTML comment marker (``-->`` in a name
#: would end it, and a name that is a prefix of another's marker text would match both).
SECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_section_name(name: str) -> None:
    """A ``ValueError`` unless ``name`` is a usable section name (``SECTION_NAME``)."""
    if not isinstance(name, str) or not SECTION_NAME.fullmatch(name):
        raise ValueError(f"section name {name!r}: use letters, digits, '.', '_' and '-' (not "
                         f"starting with a sign), e.g. detection-bank-20k")


def write_section(name: str, body: str, path: str | Path = DEFAULT_RESULTS) -> Path:
    """Replace (or append) section ``name`` of the results file with ``body`` plus provenance;
    safe against a concurrent writer and an interrupted write (``_locked``, ``atomic_write``)."""
    check_section_name(name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        return _write_section(name, body, path)


def _write_section(name: str, body: str, path: Path) -> Path:
    text = path.read_text() if path.exists() else _HEADER
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = (
        f"<!-- section:{name} -->\n{body.rstrip()}\n\n"
        f"_Command: `{command_line()}`; {stamp}; {machine_line()}._\n"
        f"<!-- /section:{name} -->"
    )
    tag = re.escape(name)
    pattern = re.compile(rf"<!-- section:{tag} -->.*?<!-- /section:{tag} -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    from oddeye.io.modelfile import atomic_write

    # the results file holds every earlier section: a write cut short must not truncate it
    data = text if text.endswith("\n") else text + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(data))
    return path
