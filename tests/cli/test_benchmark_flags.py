"""``oddeye benchmark`` options forwarded from the one table ``SUITE_FLAGS``: each given option
reaches every chosen suite that reads it, under its run function's keyword; the rest are refused
up front. No suite runs: their ``run`` functions are replaced by recorders."""

from __future__ import annotations

import importlib
import inspect

import pytest

from oddeye.bench import SUITES
from oddeye.cli import build_parser, main
from oddeye.commands import benchmark


def _record(monkeypatch, *suites: str) -> list[tuple[str, dict]]:
    """Replace each suite's run function by a recorder; returns the (suite, kwargs) calls."""
    calls: list[tuple[str, dict]] = []
    for suite in suites:
        mod_name, fn_name = SUITES[suite].split(":")

        def fake(_suite=suite, **kwargs):
            calls.append((_suite, kwargs))
            return "(recorded)"

        monkeypatch.setattr(importlib.import_module(mod_name), fn_name, fake)
    return calls


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("oddeye benchmark: error: ")
    assert "Traceback" not in err
    return lines[0]


# -- the table itself ------------------------------------------------------------------------------
def test_table_keywords_are_parameters_of_the_run_functions():
    for suite, flags in benchmark.SUITE_FLAGS.items():
        mod_name, fn_name = SUITES[suite].split(":")
        params = inspect.signature(getattr(importlib.import_module(mod_name), fn_name)).parameters
        assert "out_path" in params, suite
        for flag, keyword in flags.items():
            assert flag in benchmark.FLAGS, (suite, flag)
            assert keyword in params, (suite, flag, keyword)


def test_every_param_reader_names_the_methods_it_fits():
    readers = set(benchmark.readers("--param"))
    assert readers - {"detection"} == set(benchmark.PARAM_METHODS)


def test_every_datasets_reader_has_a_meaning():
    assert set(benchmark.DATASETS_MEANING) == set(benchmark.readers("--datasets"))


def test_help_names_the_suites_that_read_each_option():
    sub = build_parser()._subparsers._group_actions[0].choices["benchmark"]
    helps = {a.option_strings[0]: a.help for a in sub._actions if a.option_strings}
    for flag in benchmark.FLAGS:
        assert helps[flag].startswith(f"read by: {', '.join(benchmark.readers(flag))};"), flag


# -- forwarding ------------------------------------------------------------------------------------
@pytest.mark.parametrize("suite,extra,expected", [
    ("anoonly-image",
     ["--datasets", "tire", "deeppcb", "--param", "grid=last", "--param", "pad=32", "--section",
      "a1"],
     {"datasets": ["tire", "deeppcb"], "params": {"grid": "last", "pad": 32}, "section": "a1"}),
    ("rd4ad", ["--datasets", "magnetic_tile", "--param", "epochs=2"],
     {"datasets": ["magnetic_tile"], "params": {"epochs": 2}}),
    ("onnx", ["--methods", "patchcore", "--section", "o1"],
     {"methods": ["patchcore"], "section": "o1"}),
    ("serving", ["--section", "s1"], {"section": "s1"}),
    ("selection", ["--datasets", "tire", "--section", "sel1"],
     {"datasets": ["tire"], "section": "sel1"}),
    ("detection",
     ["--methods", "patchcore", "--datasets", "synthetic", "tire", "--backbone", "resnet18",
      "--param", "max_bank=None", "--section", "d1"],
     {"methods": ["patchcore"], "datasets": ["synthetic", "tire"], "backbone": "resnet18",
      "params": {"max_bank": None}, "section": "d1"}),
    ("detection", [], {}),
    ("anoonly-image", [], {}),
    ("anoonly-image", ["--seed", "1"], {"seed": 1}),
])
def test_each_option_reaches_the_suites_keyword(suite, extra, expected, tmp_path, monkeypatch):
    calls = _record(monkeypatch, suite)
    out = str(tmp_path / "R.md")
    assert main(["benchmark", "--suite", suite, *extra, "--out", out]) == 0
    assert calls == [(suite, {"out_path": out, **expected})]


def test_shared_datasets_and_params_reach_every_reader(tmp_path, monkeypatch):
    calls = _record(monkeypatch, "detection", "anoonly-image", "rd4ad", "metrics")
    parsed = []
    real = benchmark.parse_params

    def counting(items, *a, **k):
        parsed.append(items)
        return real(items, *a, **k)

    monkeypatch.setattr(benchmark, "parse_params", counting)
    out = str(tmp_path / "R.md")
    assert main(["benchmark", "--suite", "rd4ad", "detection", "metrics", "anoonly-image",
                 "--datasets", "tire", "--param", "size=128", "--out", out]) == 0
    common = {"out_path": out, "datasets": ["tire"], "params": {"size": 128}}
    assert calls == [("rd4ad", common), ("detection", common), ("metrics", {"out_path": out}),
                     ("anoonly-image", common)]
    assert parsed == [["size=128"]]  # parsed once for every suite


# -- refusals --------------------------------------------------------------------------------------
@pytest.mark.parametrize("suite,extra", [
    ("rd4ad", ["--section", "x"]), ("rd4ad", ["--methods", "rd4ad"]),
    ("rd4ad", ["--backbone", "resnet18"]), ("serving", ["--datasets", "tire"]),
    ("serving", ["--param", "k=1"]), ("selection", ["--methods", "padim"]),
    ("selection", ["--param", "k=1"]), ("onnx", ["--param", "k=1"]),
    ("onnx", ["--datasets", "tire"]), ("anoonly-image", ["--methods", "patchcore"]),
    ("anoonly-image", ["--backbone", "resnet18"]), ("coreset", ["--section", "x"]),
    ("detection", ["--seed", "1"]), ("adbench", ["--seed", "1"]),
])
def test_an_option_no_chosen_suite_reads_is_refused(suite, extra, tmp_path, monkeypatch, capsys):
    calls = _record(monkeypatch, suite)
    assert main(["benchmark", "--suite", suite, *extra, "--out", str(tmp_path / "R.md")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    flag = extra[0]
    assert f"{flag} is not used by the {suite} suite" in line
    assert f"only by: {', '.join(benchmark.readers(flag))}" in line
    assert calls == []


@pytest.mark.parametrize("suites,bad,blamed", [
    (["metrics", "rd4ad"], ["tire", "nosuch"], "rd4ad"),
    (["anoonly-image"], ["mvtec3d_tire"], "anoonly-image"),
    (["selection"], ["nosuch"], "selection"),
    (["detection", "rd4ad"], ["synthetic"], "rd4ad"),  # detection's own name, not rd4ad's
    (["detection", "anoonly-image"], ["/nonexistent/oddeye-x"], "detection"),
])
def test_a_bad_dataset_name_is_refused_before_any_suite(suites, bad, blamed, tmp_path,
                                                        monkeypatch, capsys):
    calls = _record(monkeypatch, *suites)
    assert main(["benchmark", "--suite", *suites, "--datasets", *bad, "--out",
                 str(tmp_path / "R.md")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert bad[-1] in line and blamed in line
    assert calls == []


@pytest.mark.parametrize("suites", [["detection", "adbench"], ["adbench", "rd4ad"],
                                    ["anoonly-image", "adbench", "selection"]])
def test_datasets_with_two_meanings_refused(suites, tmp_path, monkeypatch, capsys):
    calls = _record(monkeypatch, *suites)
    assert main(["benchmark", "--suite", *suites, "--datasets", "tire", "--out",
                 str(tmp_path / "R.md")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--datasets" in line and "adbench" in line and "separately" in line
    assert calls == []


def test_section_for_two_suites_refused(tmp_path, monkeypatch, capsys):
    calls = _record(monkeypatch, "onnx", "serving")
    assert main(["benchmark", "--suite", "onnx", "serving", "--section", "x", "--out",
                 str(tmp_path / "R.md")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--section" in line and "onnx, serving" in line
    assert calls == []
    # one section-reading suite among others is fine
    calls = _record(monkeypatch, "onnx", "metrics")
    out = str(tmp_path / "R.md")
    assert main(["benchmark", "--suite", "metrics", "onnx", "--section", "x", "--out", out]) == 0
    assert calls == [("metrics", {"out_path": out}), ("onnx", {"out_path": out, "section": "x"})]


def test_onnx_methods_checked_up_front(tmp_path, monkeypatch, capsys):
    import oddeye.export.onnx as onnx_export

    calls = _record(monkeypatch, "onnx", "metrics")
    out = str(tmp_path / "R.md")
    assert main(["benchmark", "--suite", "metrics", "onnx", "--methods", "patchcore", "nosuch",
                 "--out", out]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "'nosuch'" in line and "onnx" in line
    monkeypatch.setattr(onnx_export, "method_can_export", lambda name: name != "padim")
    assert main(["benchmark", "--suite", "onnx", "--methods", "padim", "--out", out]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "'padim'" in line and "ONNX" in line
    assert calls == []


def test_bad_param_refused_before_any_suite(tmp_path, monkeypatch, capsys):
    calls = _record(monkeypatch, "rd4ad")
    assert main(["benchmark", "--suite", "rd4ad", "--param", "novalue", "--out",
                 str(tmp_path / "R.md")]) == 2
    assert "--param expects key=value" in _one_error_line(capsys.readouterr().err)
    assert calls == []


def test_a_param_the_image_suite_sets_itself_is_refused_before_any_suite(tmp_path, monkeypatch,
                                                                          capsys):
    calls = _record(monkeypatch, "metrics", "anoonly-image")
    assert main(["benchmark", "--suite", "metrics", "anoonly-image", "--param", "holdout=0.2",
                 "--out", str(tmp_path / "R.md")]) == 2
    assert "--param holdout: set by the anoonly-image suite" in _one_error_line(
        capsys.readouterr().err)
    assert calls == []


@pytest.mark.parametrize("suites,extra,words", [
    (["metrics", "detection"], ["--param", "nosuch=1"], ["'nosuch'", "detection suite fits"]),
    (["detection"], ["--methods", "padim", "--param", "max_bank=100"], ["'max_bank'", "padim"]),
    (["rd4ad"], ["--param", "epochs=-1"], ["epochs", "rd4ad suite fits rd4ad"]),
    # the suite hands its settings to PatchCore and both heads: a head-only one breaks PatchCore
    (["anoonly-image"], ["--param", "gate=max"], ["'gate'", "suite fits patchcore"]),
    (["detection"], ["--param", "size=8"], ["size", "patchcore"]),
    # values a method used to check only when it built its head, after the backbone
    (["metrics", "detection"], ["--param", "grid=middle"], ["grid", "detection suite fits"]),
    # a backbone checked without any --param too; a device this machine lacks; the backbone twice
    (["metrics", "detection"], ["--backbone", "nosuchnet"], ["--backbone", "nosuchnet"]),
    (["detection"], ["--param", "device=cuda:7"], ["device", "cuda:7"]),
    (["detection"], ["--param", "backbone=resnet18", "--backbone", "mobilenet_v2"],
     ["give the backbone once"]),
    # a section name that would break its comment markers, or an empty one
    (["detection"], ["--section", "a -->"], ["--section", "letters, digits"]),
    (["detection"], ["--section", ""], ["--section", "letters, digits"]),
    (["anoonly-image"], ["--param", "kernel=0"], ["kernel", "suite fits patchcore"]),
])
def test_a_bad_hyper_parameter_is_refused_before_any_suite(suites, extra, words, tmp_path,
                                                           monkeypatch, capsys):
    calls = _record(monkeypatch, *suites)
    assert main(["benchmark", "--suite", *suites, *extra, "--out", str(tmp_path / "R.md")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    for word in words:
        assert word in line, (word, line)
    assert calls == []

