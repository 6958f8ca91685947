"""The benchmark tables render from partial results (suites rewrite their section as they go)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oddeye.bench import detection_suite, rd4ad_suite
from oddeye.methods import create_method

#: one PatchCore candidate that names its patch comparison (no ``-cosine`` in the section)
ONE = {"a": {"cosine": True}}

METRICS = {"image_auroc": 0.9, "pixel_auroc": 0.95, "pixel_aupro": 0.8, "image_ap": 0.7,
           "pixel_ap": 0.3}


def test_rd4ad_render_with_categories_only_then_unified():
    p = create_method("rd4ad").get_params()
    cat = {**METRICS, "s_per_epoch": 2.0, "epochs": 40, "fit_seconds": 90.0,
           "ms_per_image_b1": 30.0, "n_train": 10, "peak_rss_mb": 500.0}
    partial = rd4ad_suite._render(p, ["tire"], {"tire": cat}, None, [], 2, 1.0)
    assert "| tire | 0.900 | 0.950 | 0.800 | 2.0 | 40 | 90 | 30.0 | 10 | 500 |" in partial
    assert "Unified" not in partial
    uni = {"per_category": {"tire": {**METRICS, "image_auroc": 0.85}}, "fit_seconds": 100.0,
           "s_per_epoch": 3.0, "epochs": 40, "n_train": 10, "peak_rss_mb": 600.0}
    full = rd4ad_suite._render(p, ["tire", "deeppcb"], {"tire": cat}, uni, [], 2, 2.0)
    assert "| tire | 0.850 | 0.950 | 0.800 | 0.900 | -0.050 |" in full
    assert "2500 optimiser steps (rounded up to whole epochs) fixed in advance" in full
    fixed = create_method("rd4ad", epochs=60).get_params()
    by_epochs = rd4ad_suite._render(fixed, ["tire"], {"tire": cat}, None, [], 2, 1.0)
    assert "60 epochs fixed in advance" in by_epochs and "optimiser steps" not in by_epochs


def test_rd4ad_speed_rows_show_onnx_runtime_or_dash_for_runs_from_before_it():
    p = create_method("rd4ad").get_params()
    run = {"head_params_m": 3.9, "epoch_seconds": [33.3, 21.0], "s_per_epoch": 21.0,
           "ms_per_image_b1": 43.5}
    speeds = [(rd4ad_suite.SPEED_VARIANTS[0][0], {**run, "ms_per_image_onnx_b1": 29.0}),
              (rd4ad_suite.SPEED_VARIANTS[1][0], run)]
    rows = [r for r in rd4ad_suite._render(p, [], {}, None, speeds, 2, 1.0).splitlines()
            if r.startswith("| authors'")]
    assert rows[0].endswith("| 43.5 | 2.00x | 29.0 | 3.00x |")  # 87 ms / ours
    assert rows[1].endswith("| 43.5 | 2.00x | - | - |")


def test_rd4ad_speed_part_skips_onnx_runtime_when_it_is_not_installed(monkeypatch):
    import importlib.util

    def no_export(*args, **kwargs):
        raise AssertionError("must not export without the runtime")

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    monkeypatch.setattr(rd4ad_suite, "time_onnx_inference", no_export)
    assert rd4ad_suite.onnx_ms_per_image(object(), [], 2) is None


def test_rd4ad_speed_ratios_within_the_run_are_against_its_first_row():
    p = create_method("rd4ad").get_params()
    base = {"head_params_m": 15.4, "epoch_seconds": [12.0], "s_per_epoch": 12.0,
            "ms_per_image_b1": 36.0, "ms_per_image_onnx_b1": 24.0}
    light = {**base, "s_per_epoch": 4.0, "ms_per_image_b1": 24.0, "ms_per_image_onnx_b1": 18.0}
    names = [label for label, _ in rd4ad_suite.SPEED_VARIANTS]
    text = rd4ad_suite._render(p, [], {}, None, [(names[0], base), (names[2], light)], 2, 1.0)
    assert f"| {names[2]} | 3.00x | 1.50x | 2.00x |" in text
    assert f"| {names[0]}, exported | 1.00x | 1.00x | 1.50x |" in text
    alone = rd4ad_suite._render(p, [], {}, None, [(names[0], base)], 2, 1.0)
    assert "same run against its first row" not in alone  # nothing to compare with


def test_detection_table_shows_bank_size_or_dash():
    rows = [("patchcore", "tire", {**METRICS, "fit_seconds": 1.0, "ms_per_image": 2.0,
                                   "peak_rss_mb": 3.0, "bank": 1234, "pad": 16}),
            ("padim", "tire", {**METRICS, "fit_seconds": 1.0, "ms_per_image": 2.0,
                               "peak_rss_mb": 3.0, "bank": 0})]
    table = detection_suite._table(rows, None, {}, 2, "detection")
    assert table.splitlines()[-2].endswith("| 1234 |")
    assert table.splitlines()[-2].startswith("| patchcore | tire | 16 |")
    assert table.splitlines()[-1].endswith("| - |")
    assert table.splitlines()[-1].startswith("| padim | tire | - |")  # a run from before pad


def test_rd4ad_part_with_the_same_arguments_is_reused_not_rerun(tmp_path, monkeypatch):
    args = ["--part", "category", "--data", "tire", "--params", "{}", "--threads", "2"]
    (tmp_path / "category-tire.json").write_text(json.dumps({"per_category": {}, "args": args}))

    def no_run(*a, **k):
        raise AssertionError("a finished part was run again")

    monkeypatch.setattr(rd4ad_suite.subprocess, "run", no_run)
    assert rd4ad_suite.spawn_part(tmp_path, "category-tire", args)["args"] == args
    with pytest.raises(AssertionError, match="run again"):
        rd4ad_suite.spawn_part(tmp_path, "category-tire", [*args[:-1], "1"])  # other arguments
    # the same arguments under other method defaults ("{}" meant balance=False then)
    old = {**rd4ad_suite.resolved_params(args), "balance": False}
    (tmp_path / "category-tire.json").write_text(json.dumps({"per_category": {}, "args": args,
                                                             "resolved": old}))
    with pytest.raises(AssertionError, match="run again"):
        rd4ad_suite.spawn_part(tmp_path, "category-tire", args)
    now = rd4ad_suite.resolved_params(args)
    (tmp_path / "category-tire.json").write_text(json.dumps({"per_category": {}, "args": args,
                                                             "resolved": now}))
    reused: list[str] = []
    assert rd4ad_suite.spawn_part(tmp_path, "category-tire", args, reused)["resolved"] == now
    assert reused and "defaults not recorded" not in reused[0]


def test_resolved_parameters_send_detector_settings_to_the_detector():
    """``--param device=cuda`` (a Detector setting) beside method parameters must resolve, as a
    fit takes it: the GPU check's runs failed there once, after fitting."""
    from oddeye.bench import rd4ad_suite

    args = ["--part", "category", "--params",
            json.dumps({"device": "cuda", "projection": True, "seed": 2}), "--threads", "2"]
    got = rd4ad_suite.resolved_params(args)
    assert got["projection"] is True and got["seed"] == 2 and "device" not in got
    assert rd4ad_suite.resolved_params(["--params", "{}"])["seed"] == 0


def _resad_fold(name: str, resad: float, patchcore: float) -> dict:
    def runs(v: float) -> dict:
        return {f"4/{s}": {"image_auroc": v, "pixel_auroc": 0.9, "pixel_aupro": 0.8}
                for s in (0, 1)}

    return {"held_out": name, "n_test": 30, "n_test_full": 30, "resad": runs(resad),
            "patchcore": runs(patchcore), "resad_fit_seconds": 60.0,
            "resad_fit_cpu_seconds": 100.0,
            "ms_per_image": {"4": {k: 10.0 for k in ("resad", "patchcore", "resad_cpu1",
                                                       "patchcore_cpu1")}}}


def test_resad_render_reports_the_real_classes_on_their_own():
    from oddeye.bench import resad_suite

    config = {"backbone": "mobilenet_v2", "per_class": 40, "patchcore_params": {},
              "resad_params": {}, "rd4ad_params": None}
    folds = [_resad_fold("mvtec3d_tire", 0.60, 0.62), _resad_fold("grid", 0.95, 0.80)]
    text = resad_suite.render(folds, (4,), (0, 1), config)
    assert "| **mean** | **0.775** ± 0.000 | **0.710** ± 0.000 |" in text
    assert "| **mean, real class** | **0.600** ± 0.000 | **0.620** ± 0.000 |" in text
    assert "), mean: image +0.065, pixel +0.000 -> **met**" in text
    assert "), mean, real class: image -0.020, pixel +0.000 -> **NOT met**" in text
    only_synthetic = resad_suite.render(folds[1:], (4,), (0, 1), config)
    assert "real class" not in only_synthetic


def _seeds_script(tmp_path, monkeypatch):
    """benchmarks/rd4ad_seeds.py as a module, with a shared-data folder holding an empty deeppcb."""
    from tests.bench.scripts import load_script

    mod = load_script("rd4ad_seeds")
    (tmp_path / "data" / "deeppcb").mkdir(parents=True)
    monkeypatch.setenv("ODDEYE_SHARED_DATA", str(tmp_path / "data"))
    return mod


def test_rd4ad_seeds_tabulates_a_variant_from_its_saved_runs(tmp_path, monkeypatch, capsys):
    """benchmarks/rd4ad_seeds.py --param/--section/--cached-only: a variant's runs are found by
    their file tag and arguments, missing seeds are not fitted, the section names the variant."""
    mod = _seeds_script(tmp_path, monkeypatch)
    work = tmp_path / "work"
    work.mkdir()
    for seed, img in [(0, 0.70), (1, 0.80)]:
        args = ["--part", "category", "--data", "deeppcb", "--params",
                json.dumps({"pseudo": 0.5, "seed": seed}), "--threads", "2"]
        res = {"image_auroc": img, "pixel_auroc": 0.9, "pixel_aupro": 0.6}
        (work / f"category-deeppcb-pseudo0.5-seed{seed}.json").write_text(
            json.dumps({"args": args, "per_category": {"deeppcb": res}}))
    out = tmp_path / "R.md"
    assert mod.main(["--seeds", "0", "1", "2", "--datasets", "deeppcb", "--threads", "2",
                     "--work", str(work), "--out", str(out), "--param", "pseudo=0.5",
                     "--section", "rd4ad-x", "--cached-only", "--note", "Fitted elsewhere."]) == 0
    text = out.read_text()
    assert "<!-- section:rd4ad-x -->" in text and 'parameters {"pseudo": 0.5}' in text
    assert "not comparable).\n\nFitted elsewhere.\n\n| data |" in text  # before the table
    # the quoted command is this call's, without the note (printed once, as its paragraph)
    assert "`python benchmarks/rd4ad_seeds.py --seeds 0 1 2 --datasets deeppcb" in text
    assert text.count("Fitted elsewhere.") == 1 and "--note" not in text
    assert "pseudo-defect draws" in text
    assert ("| deeppcb | 0.700 / 0.900 / 0.600 | 0.800 / 0.900 / 0.600 | 0.750 / 0.900 / 0.600 "
            "| 0.071 | 0.100 |") in text
    assert "seed 2" not in text  # not fitted under --cached-only, not tabulated
    assert ("Runs read from `--work`, fitted by an earlier invocation: "
            "category-deeppcb-pseudo0.5-seed0 (an earlier run") in text


def test_selection_table_has_means_seconds_and_the_best_candidate():
    from oddeye.bench.selection_suite import render

    def r(img, px, sec):
        return {"image_auroc": img, "pixel_auroc": px, "seconds": sec}

    results = {"a": {"tire": r(0.8, 0.9, 10.0), "nut": r(0.6, 0.9, 5.0)},
               "b": {"tire": r(0.9, 0.95, 30.0), "nut": r(0.7, 0.9, 12.4)}}
    text = render("rd4ad", "selection-x", {"a": {}, "b": {"steps": 5}}, results, ("nut",),
                  False, None)
    assert "| candidate | tire | nut | mean img | mean px | seconds |" in text
    assert "| a | 0.800 / 0.900 | 0.600 / 0.900 | 0.700 | 0.900 | 15 |" in text
    assert "| b | 0.900 / 0.950 | 0.700 / 0.900 | 0.800 | 0.925 | 42 |" in text
    assert 'Best by mean image + pixel AUROC: **b** (`{"steps": 5}`).' in text
    assert text.startswith("## Selection of rd4ad defaults (no test split used): `selection-x`")
    ablation = render("rd4ad", "rd4ad-ablation-x", {"a": {}, "b": {"steps": 5}}, results,
                      ("nut",), False, None, title="RD4AD ablation")
    assert ablation.startswith("## RD4AD ablation (no test split used): `rd4ad-ablation-x`")


def test_seeded_candidates_carry_the_seed_and_name_their_section():
    from oddeye.bench.selection_suite import seeded

    cands = {"a": {}, "b": {"layers": ["s8"]}}
    assert seeded(cands, "selection-x", 0) == (cands, "selection-x")
    got, section = seeded(cands, "selection-x", 2)
    assert section == "selection-x-seed2"
    assert got == {"a": {"seed": 2}, "b": {"layers": ["s8"], "seed": 2}}
    assert cands == {"a": {}, "b": {"layers": ["s8"]}}  # the caller's dict is left alone


def test_fitting_cap_reaches_the_suite_and_names_the_section(monkeypatch):
    """--max-fit 0 fits on every training image and names the section -full (after the seed
    and placement parts as the other suffixes); 100 is the earlier runs' cap, unnamed."""
    from oddeye.bench import selection_suite

    calls = []
    monkeypatch.setattr(selection_suite, "run", lambda **kw: calls.append(kw) or "")
    args = selection_suite.seed_parser("x").parse_args(["--max-fit", "0", "--seed", "1"])
    selection_suite.run_seeded("patchcore", "selection-x", ONE, args.seed, args.placement,
                               kinds=args.kinds, max_fit=args.max_fit)
    selection_suite.run_seeded("patchcore", "selection-x", ONE, 0, "anywhere",
                               max_fit=40)
    selection_suite.run_seeded("patchcore", "selection-x", ONE, 0)
    assert [(c["section"], c["max_fit"]) for c in calls] == [
        ("selection-x-full-seed1", None), ("selection-x-anywhere-fit40", 40),
        ("selection-x", 100)]
    assert selection_suite.seed_parser("x").parse_args([]).max_fit == 100


def test_rd4ad_seeds_reuses_seed_0_only_when_fitted_under_the_current_defaults(tmp_path,
                                                                              monkeypatch):
    """--reuse takes a default run's seed 0, unless its recorded parameters are another default's
    (e.g. plain epochs before ``balance`` became the default)."""
    mod = _seeds_script(tmp_path, monkeypatch)
    args = ["--part", "category", "--data", "deeppcb", "--params", "{}", "--threads", "2"]
    res = {"image_auroc": 0.7, "pixel_auroc": 0.9, "pixel_aupro": 0.6}
    now = rd4ad_suite.resolved_params(args)
    for resolved, reused in [({**now, "balance": False}, False), (now, True)]:
        old = tmp_path / f"old-{reused}"
        old.mkdir()
        (old / "category-deeppcb.json").write_text(json.dumps(
            {"args": args, "per_category": {"deeppcb": res}, "resolved": resolved}))
        out = tmp_path / f"R-{reused}.md"
        rc = mod.main(["--seeds", "1", "--datasets", "deeppcb", "--work", str(tmp_path / "w"),
                       "--reuse", str(old), "--out", str(out), "--cached-only"])
        assert (rc == 0 and "0.700 / 0.900 / 0.600" in out.read_text()) == reused


def test_only_and_device_reach_the_suite_and_name_the_section(monkeypatch):
    from oddeye.bench import selection_suite

    calls = []
    monkeypatch.setattr(selection_suite, "run", lambda **kw: calls.append(kw) or "")
    args = selection_suite.seed_parser("x").parse_args(
        ["--only", "b", "--device", "cuda:1", "--sets", "s.npz", "--out", "o.md", "--seed", "2"])
    selection_suite.run_seeded("rd4ad", "selection-x", {"a": {}, "b": {"steps": 5}}, args.seed,
                               args.placement, **selection_suite.seed_kwargs(args))
    (call,) = calls
    assert call["section"] == "selection-x-cuda1-seed2"
    assert call["candidates"] == {"b": {"steps": 5, "device": "cuda:1", "seed": 2}}
    assert (call["sets_file"], call["out_path"]) == ("s.npz", "o.md")
    with pytest.raises(SystemExit, match="unknown candidate"):
        selection_suite.run_seeded("rd4ad", "selection-x", {"a": {}}, 0, only=["z"])


def test_saved_sets_give_back_the_same_pixels_and_refuse_other_settings(tmp_path):
    from PIL import Image

    from oddeye.bench.selection_suite import load_sets, save_sets

    rng = np.random.default_rng(0)
    files = []
    for i in range(2):  # a fitting image that is not 256 px: saved resized, as a fit sees it
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png")
        files.append(tmp_path / f"{i}.png")
    imgs = [rng.integers(0, 255, (256, 256, 3), dtype=np.uint8) for _ in range(3)]
    masks = np.zeros((3, 256, 256), np.uint8)
    sets = {"a (pseudo)": (files, imgs, np.array([0, 1, 1]), masks)}
    save_sets(tmp_path / "s.npz", sets, "settings A")
    got = load_sets(tmp_path / "s.npz", "settings A")
    fit, g_imgs, y, ms = got["a (pseudo)"]
    from oddeye.preprocess import load_resized

    np.testing.assert_array_equal(np.stack(fit), np.stack(load_resized(files, 256)))
    np.testing.assert_array_equal(np.stack(g_imgs), np.stack(imgs))
    np.testing.assert_array_equal(y, [0, 1, 1])
    np.testing.assert_array_equal(ms, masks)
    with pytest.raises(ValueError, match="settings A"):
        load_sets(tmp_path / "s.npz", "settings B")


def test_split_seed_and_real_only_reach_the_suite_and_name_the_section(monkeypatch):
    from oddeye.bench import selection_suite

    calls = []
    monkeypatch.setattr(selection_suite, "run", lambda **kw: calls.append(kw) or "")
    args = selection_suite.seed_parser("x").parse_args(
        ["--seed", "1", "--split-seed", "1", "--real-only"])
    selection_suite.run_seeded("rd4ad", "selection-x", {"a": {}}, args.seed, args.placement,
                               **selection_suite.seed_kwargs(args))
    selection_suite.run_seeded("rd4ad", "selection-x", {"a": {}}, 0)
    new, old = calls
    assert new["section"] == "selection-x-split1-real-seed1"
    assert new["split_seed"] == 1 and new["synthetic"] == ()
    assert old["section"] == "selection-x" and old["split_seed"] == 0 and "synthetic" not in old


def test_build_sets_draws_other_validation_images_with_another_split_seed(tmp_path, monkeypatch):
    """A real set held out with another seed validates on other good images; ``synthetic=()``
    generates no class."""
    from PIL import Image

    from oddeye.bench import detection_suite, selection_suite

    rng = np.random.default_rng(0)
    good = tmp_path / "data" / "tire" / "train" / "good"
    good.mkdir(parents=True)
    for i in range(30):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(good / f"{i}.png")
    (tmp_path / "data" / "tire" / "test" / "good").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
        tmp_path / "data" / "tire" / "test" / "good" / "0.png")
    monkeypatch.setattr(detection_suite, "shared_root", lambda: tmp_path / "data")
    monkeypatch.setattr(detection_suite, "DATASETS", {"tire": "tire"})
    a = selection_suite.build_sets(tmp_path / "t", ["tire"], synthetic=())
    b = selection_suite.build_sets(tmp_path / "t", ["tire"], synthetic=(), split_seed=1)
    assert list(a) == list(b) == ["tire (pseudo)"]
    assert set(a["tire (pseudo)"][0]) != set(b["tire (pseudo)"][0])
    assert not (tmp_path / "t" / "s").exists()


def test_rd4ad_section_names_the_teacher_given_as_a_detector_setting(tmp_path, monkeypatch):
    """``--param backbone=efficientnet_lite0`` reaches the fits through the Detector; the
    section's text must name that teacher, not the method's default."""
    cat = {**METRICS, "s_per_epoch": 2.0, "epochs": 40, "fit_seconds": 90.0,
           "ms_per_image_b1": 30.0, "n_train": 10}
    monkeypatch.setattr(rd4ad_suite, "spawn_part", lambda tmp, tag, args, reused=None: {
        "per_category": {"tire": dict(cat)}, "peak_rss_mb": 500.0})
    monkeypatch.setattr(rd4ad_suite, "shared_root", lambda: tmp_path)
    (tmp_path / rd4ad_suite.DATASETS["tire"]).mkdir(parents=True)
    body = rd4ad_suite.run(tmp_path / "R.md", ["tire"], {"backbone": "efficientnet_lite0"},
                           unified=False, speed=False)
    assert "Teacher `efficientnet_lite0` taps s4, s8, s16" in body


def test_patchcore_runs_on_the_cosine_default_get_their_own_sections(monkeypatch):
    """Selection scripts written for raw features leave ``cosine`` unset: run since the cosine
    default they would overwrite the raw sections the docs quote, so they name ``-cosine``."""
    from oddeye.bench import selection_suite

    calls = []
    monkeypatch.setattr(selection_suite, "run", lambda **kw: calls.append(kw) or "")
    selection_suite.run_seeded("patchcore", "selection-x", {"a": {}, "b": {"grid": "last"}}, 1)
    selection_suite.run_seeded("patchcore", "selection-x", {"a": {}}, 0, max_fit=0)
    selection_suite.run_seeded("patchcore", "selection-x", {"a": {}, "b": {"cosine": False}}, 0)
    selection_suite.run_seeded("padim", "selection-x", {"a": {}}, 0)
    assert [c["section"] for c in calls] == ["selection-x-cosine-seed1", "selection-x-cosine-full",
                                             "selection-x", "selection-x"]
