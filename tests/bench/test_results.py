"""RESULTS.md sections: each suite replaces only its own, with the command that made it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from oddeye.bench import results


def test_write_section_replaces_only_its_own_section(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/x/benchmarks/some_script.py", "--seed", "1"])
    path = tmp_path / "RESULTS.md"
    results.write_section("a", "first a", path)
    results.write_section("b", "only b", path)
    results.write_section("a", "second a", path)
    text = path.read_text()
    assert text.startswith("# oddeye benchmark results")
    assert "first a" not in text and text.count("second a") == 1 and "only b" in text
    assert text.index("second a") < text.index("only b")  # replaced in place, not appended
    assert text.count("<!-- section:a -->") == 1 and text.count("<!-- /section:a -->") == 1
    assert "_Command: `some_script.py --seed 1`;" in text


def test_command_line_names_what_a_user_would_type(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/lib/oddeye/__main__.py", "benchmark", "--suite",
                                      "detection"])
    assert results.command_line() == "oddeye benchmark --suite detection"
    monkeypatch.setattr(sys, "argv", ["-c"])
    assert results.command_line().startswith("python -c ")


def test_machine_line_names_the_processor_and_torchs_cpu_kernels():
    import torch

    line = results.machine_line()
    assert results.cpu_name() in line
    assert f"torch kernels {torch.backends.cpu.get_cpu_capability()}" in line
    assert results.cpu_name().strip() and "\n" not in line


def _write_many(path: str, prefix: str, n: int) -> None:
    from oddeye.bench.results import write_section

    for i in range(n):
        write_section(f"{prefix}{i}", f"body {prefix}{i}", path)


def test_concurrent_writers_lose_no_section_and_a_failed_write_keeps_the_file(tmp_path,
                                                                             monkeypatch):
    """Two benchmark runs writing at once each read the file the other just wrote (a lock);
    a write cut short leaves the earlier file whole (a temporary renamed into place)."""
    import multiprocessing as mp

    path = tmp_path / "R.md"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(str(path), p, 25)) for p in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    text = path.read_text()
    assert all(f"<!-- section:{p}{i} -->" in text for p in "ab" for i in range(25))
    before = path.read_bytes()

    real = Path.write_text

    def cut_short(self, data, *a, **k):  # a full disk: part of the text, then the error
        real(self, data[:40])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", cut_short)
    with pytest.raises(OSError):
        results.write_section("late", "x", path)
    assert path.read_bytes() == before


def test_section_names_that_would_break_their_markers_are_refused(tmp_path):
    for bad in ("a -->", "", "-x", "a b", "x<!--"):
        with pytest.raises(ValueError, match="section name"):
            results.write_section(bad, "body", tmp_path / "R.md")
    results.write_section("detection-bank.20k_v2", "ok", tmp_path / "R.md")


def test_a_partial_detection_table_says_so():
    from oddeye.bench.detection_suite import _table

    row = ("patchcore", "synthetic", {"image_auroc": 1.0, "pixel_auroc": 1.0, "pixel_aupro": 1.0,
                                      "image_ap": 1.0, "pixel_ap": 1.0, "fit_seconds": 1.0,
                                      "ms_per_image": 1.0, "peak_rss_mb": 1.0})
    assert "**Partial: 1 of 2 rows" in _table([row], None, None, 2, "detection", planned=2)
    assert "Partial" not in _table([row, row], None, None, 2, "detection", planned=2)
