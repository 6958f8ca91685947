"""``oddeye benchmark --config FILE``: a TOML or JSON file of the same options as the flags.
Its options reach the suites as the flags' do, flags override it, bad files are refused up
front naming the file and the key, and the results record the equivalent flags. No suite runs:
their ``run`` functions are replaced by recorders."""

from __future__ import annotations

import json
import shlex

import pytest

from oddeye.bench.results import command_line, write_section
from oddeye.cli import main
from oddeye.commands import benchmark

from .test_benchmark_flags import _one_error_line, _record

DETECTION_TOML = """
suite = "detection"
methods = ["patchcore"]
datasets = ["synthetic", "tire"]
backbone = "resnet18"
section = "d1"

[params]
max_bank = 20000
grid = "last"
"""


def _detection_call(out: str, **changed) -> tuple[str, dict]:
    """The detection suite's recorded call for ``DETECTION_TOML``, with ``changed`` keys."""
    kwargs = {"out_path": out, "methods": ["patchcore"], "datasets": ["synthetic", "tire"],
              "backbone": "resnet18", "params": {"max_bank": 20000, "grid": "last"},
              "section": "d1"}
    return "detection", {**kwargs, **changed}


def _write(tmp_path, text: str, name: str = "bench.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_toml_config_reaches_the_suite_as_the_flags_would(tmp_path, monkeypatch):
    calls = _record(monkeypatch, "detection")
    out = str(tmp_path / "R.md")
    config = _write(tmp_path, f'out = "{out}"\n' + DETECTION_TOML)  # before the [params] table
    assert main(["benchmark", "--config", config]) == 0
    flags = _record(monkeypatch, "detection")
    assert main(["benchmark", "--suite", "detection", "--methods", "patchcore", "--datasets",
                 "synthetic", "tire", "--backbone", "resnet18", "--section", "d1", "--param",
                 "max_bank=20000", "--param", "grid=last", "--out", out]) == 0
    assert calls == flags == [_detection_call(out)]


def test_a_json_config_and_a_single_name_for_a_list(tmp_path, monkeypatch):
    calls = _record(monkeypatch, "anoonly-image")
    out = str(tmp_path / "R.md")
    config = _write(tmp_path, json.dumps({"suite": "anoonly-image", "datasets": "tire",
                                          "seed": 2, "params": {"pad": None}, "out": out}),
                    "bench.json")
    assert main(["benchmark", "--config", config]) == 0
    assert calls == [("anoonly-image", {"out_path": out, "datasets": ["tire"], "seed": 2,
                                        "params": {"pad": None}})]


def test_flags_override_the_config_and_params_merge_key_by_key(tmp_path, monkeypatch):
    calls = _record(monkeypatch, "detection")
    out = str(tmp_path / "R.md")
    config = _write(tmp_path, DETECTION_TOML)
    assert main(["benchmark", "--config", config, "--backbone", "mobilenet_v2", "--param",
                 "grid=first", "--out", out]) == 0
    assert calls == [_detection_call(out, backbone="mobilenet_v2",
                                     params={"max_bank": 20000, "grid": "first"})]


def test_a_config_without_suite_runs_the_default_suite(tmp_path, monkeypatch):
    calls = _record(monkeypatch, "detection")
    out = str(tmp_path / "R.md")
    assert main(["benchmark", "--config", _write(tmp_path, 'methods = "padim"\n'),
                 "--out", out]) == 0
    assert calls == [("detection", {"out_path": out, "methods": ["padim"]})]


@pytest.mark.parametrize("text,name,words", [
    ('sute = "detection"\n', "bench.toml", ["unknown key 'sute'", "known keys: suite"]),
    ('[param]\nk = 1\n', "bench.toml", ["unknown key 'param'", "the key is params"]),
    ('suite = "nosuch"\n', "bench.toml", ["suite", "'nosuch'", "available: "]),
    ('suite = []\n', "bench.toml", ["suite must be a name or a non-empty list"]),
    ('methods = [1, 2]\n', "bench.toml", ["methods must be a name or a non-empty list"]),
    ('seed = "1"\n', "bench.toml", ["seed must be an integer"]),
    ('seed = true\n', "bench.toml", ["seed must be an integer"]),
    ('backbone = ""\n', "bench.toml", ["backbone must be a non-empty string"]),
    ('params = 3\n', "bench.toml", ["params must be a table"]),
    ('[params]\nwhen = 1979-05-27\n', "bench.toml", ["params.when", "date"]),
    ('suite = "detection\n', "bench.toml", ["not valid TOML", "line 1"]),
    ('{"suite": ', "bench.json", ["not valid JSON"]),
    ('["detection"]', "bench.json", ["expected a table of options", "list"]),
])
def test_a_bad_config_is_refused_naming_the_file_and_the_key(text, name, words, tmp_path,
                                                             monkeypatch, capsys):
    calls = _record(monkeypatch, "detection")
    config = _write(tmp_path, text, name)
    assert main(["benchmark", "--config", config, "--out", str(tmp_path / "R.md")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"--config {config}" in line
    for word in words:
        assert word in line, (word, line)
    assert calls == []


def test_a_missing_or_binary_config_is_refused(tmp_path, monkeypatch, capsys):
    calls = _record(monkeypatch, "detection")
    missing = str(tmp_path / "nope.toml")
    assert main(["benchmark", "--config", missing]) == 2
    assert f"--config {missing}: no such file" in _one_error_line(capsys.readouterr().err)
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe\x00suite")
    assert main(["benchmark", "--config", str(binary)]) == 2
    assert "not valid TOML" in _one_error_line(capsys.readouterr().err)
    assert calls == []


def test_an_option_its_suite_does_not_read_is_refused_naming_the_config(tmp_path, monkeypatch,
                                                                        capsys):
    calls = _record(monkeypatch, "rd4ad")
    config = _write(tmp_path, 'suite = "rd4ad"\nsection = "x"\n')
    assert main(["benchmark", "--config", config, "--out", str(tmp_path / "R.md")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--section is not used by the rd4ad suite" in line
    assert f"(options read from --config {config})" in line
    assert calls == []


def test_the_results_record_the_equivalent_flags(tmp_path, monkeypatch):
    """A section written under --config says what ran, not only the file's name; and the
    recorded command is the flags form, which runs the same suites with the same options."""
    out = tmp_path / "R.md"
    config = _write(tmp_path, DETECTION_TOML)
    import oddeye.bench.detection_suite as detection_suite

    def fake(out_path=None, **kwargs):
        write_section("d1", "body", out_path)
        return "(written)"

    monkeypatch.setattr(detection_suite, "run", fake)
    assert main(["benchmark", "--config", config, "--out", str(out)]) == 0
    footer = [ln for ln in out.read_text().splitlines() if ln.startswith("_Command:")][0]
    recorded = footer.split("`")[1]
    assert recorded.endswith(f"  # from --config {config}")
    flags = shlex.split(recorded.split("  # ")[0])
    assert flags[:4] == ["oddeye", "benchmark", "--suite", "detection"]
    assert flags[flags.index("--datasets") + 1:flags.index("--datasets") + 3] == [
        "synthetic", "tire"]
    assert "max_bank=20000" in flags and "grid=last" in flags
    calls = _record(monkeypatch, "detection")
    assert main(flags[1:]) == 0  # the recorded flags run the same thing
    assert calls[0][1]["params"] == {"max_bank": 20000, "grid": "last"}
    assert calls[0][1]["methods"] == ["patchcore"] and calls[0][1]["backbone"] == "resnet18"
    assert command_line() != recorded  # the override ends with the command


def test_every_config_key_is_an_option_of_the_command():
    from oddeye.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["benchmark"]
    dests = {a.dest for a in sub._actions}
    for key in benchmark.CONFIG_KEYS:
        assert ("param" if key == "params" else key) in dests, key
