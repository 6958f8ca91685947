"""RESULTS.md sections: each suite replaces only its own, with the command that made it."""

from __future__ import annotations

import sys

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
