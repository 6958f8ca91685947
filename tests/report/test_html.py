"""The HTML test report: written by `oddeye test --report`, has every section, images embedded."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("matplotlib")

from oddeye.report.html import (  # noqa: E402
    defect_breakdown,
    ground_truth_mask,
    metric_table,
    threshold_counts,
    threshold_point,
    worst_cases,
    write_test_report,
)

DATA_URI = re.compile(r'src="data:(image/(?:png|jpeg));base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def evaluated(patchcore_file, synth_root):
    """The tiny model, its per-category metrics and per-image details on both synthetic classes."""
    import oddeye
    from oddeye.data.mvtec import load_dataset
    from oddeye.evaluation import evaluate_category

    det = oddeye.load(patchcore_file)
    per, details = {}, {}
    for cat in load_dataset(synth_root):
        d: dict = {}
        per[cat.name] = evaluate_category(det, cat, progress=False, details=d)
        details[cat.name] = d
    return det, per, details


@pytest.fixture(scope="module")
def report(evaluated, tmp_path_factory):
    det, per, details = evaluated
    path = write_test_report(tmp_path_factory.mktemp("report"), det, per, details,
                             title="unit <report>")
    return path, path.read_text(encoding="utf-8")


def test_report_has_every_section(report, evaluated):
    path, text = report
    _, per, details = evaluated
    assert path.name == "index.html" and text.startswith("<!doctype html>")
    for anchor in ("id='metrics'", "id='curves'", "id='defects'", "id='cat-grid'",
                   "id='cat-disc'"):
        assert anchor in text
    for heading in ("Good images scored highest", "Defective images scored lowest",
                    "Clearest detections", "Image AUROC", "AUPRO@0.3", "ground-truth mask"):
        assert heading in text
    assert "unit &lt;report&gt;" in text and "<report>" not in text  # title escaped
    assert "fit: position weight 0 (fewer than 40 images" in text  # what the fit chose
    assert "input 64×64 px in a 16-px frame" in text  # PatchCore's default input frame
    n = sum(len(d["scores"]) for d in details.values())
    assert f"<div class='v'>{n}</div>" in text  # the "images tested" tile
    for name, r in per.items():
        assert f"<td>{r['image_auroc']:.3f}</td>" in text
        for t in set(details[name]["defect_types"]):
            assert f"<td class='t'>{t}</td>" in text


def test_report_images_are_embedded_and_decode(report, evaluated):
    _, text = report
    _, _, details = evaluated
    found = DATA_URI.findall(text)
    kinds = [k for k, _ in found]
    assert kinds.count("image/png") == 1  # the curves figure
    cases = worst_cases(details)
    n_cards = sum(len(v) for idx in cases.values() for v in idx.values())
    assert kinds.count("image/jpeg") == 2 * n_cards  # overlay + original per card
    for mime, b64 in found[:3] + found[-2:]:
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        img.load()
        assert img.format == ("PNG" if mime == "image/png" else "JPEG")
        assert min(img.size) > 16
    assert "src=\"http" not in text and "<script" not in text  # one self-contained file


def test_threshold_counts_and_worst_cases():
    scores = np.array([0.1, 0.9, 0.4, 0.2, 0.8, 0.7, 0.3])
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    assert threshold_counts(scores, labels, 0.5) == {"tp": 2, "fn": 2, "fp": 1, "tn": 2}
    cases = worst_cases({"c": {"scores": scores, "labels": labels}}, k=2)["c"]
    assert cases["fp"] == [1, 2]  # good images, highest score first
    assert cases["fn"] == [3, 6]  # defective images, lowest score first
    assert cases["best"] == [4, 5]  # clearest detections, never repeating a low-scored one


def test_threshold_point_with_nothing_flagged_sits_where_the_pr_curve_starts():
    scores, labels = np.array([0.1, 0.9, 0.4, 0.2]), np.array([0, 1, 0, 1])
    assert threshold_point(threshold_counts(scores, labels, 0.5)) == (0.0, 0.5, 1.0)
    assert threshold_point(threshold_counts(scores, labels, 0.3)) == (0.5, 0.5, 0.5)
    assert threshold_point(threshold_counts(scores, labels, 5.0)) == (0.0, 0.0, 1.0)


def test_defect_breakdown_and_metric_table():
    details = {"c": {"scores": np.array([0.1, 0.6, 0.9, 0.2]), "labels": np.array([0, 0, 1, 1]),
                     "defect_types": ["good", "good", "crack", "crack"]}}
    table = defect_breakdown(details, {"c": 0.5})
    assert "50% false alarms" in table and "50% detected" in table
    assert table.index(">good<") < table.index(">crack<")  # good rows first
    assert "AUROC vs good" in table and "<td>0.750</td>" in table  # crack: 3 of 4 pairs ranked
    per = {"a": {"image_auroc": 1.0, "n_images": 4, "seconds": 1.0},
           "b": {"image_auroc": 0.5, "n_images": 6, "seconds": 1.0}}
    counts = {"a": {"tp": 1, "fn": 1, "fp": 0, "tn": 2}, "b": {"tp": 3, "fn": 0, "fp": 1, "tn": 2}}
    html = metric_table(per, counts)
    assert "mean · total" in html and "<td>0.750</td>" in html and "<td>4/5</td>" in html
    assert "<td>10</td>" in html and "n/a" in html  # missing metrics are n/a, not a crash
    # a category may be named "mean": it keeps its own counts, the summary row stays one row
    per["mean"] = per.pop("a")
    counts["mean"] = counts.pop("a")
    html = metric_table(per, counts)
    assert html.count("mean · total") == 1 and "<td class='t'>mean</td><td>1.000</td>" in html
    assert "<td>1/2</td>" in html and "<td>4/5</td>" in html


def test_ground_truth_mask_from_mvtec_layout(synth_root):
    from oddeye.data.mvtec import load_dataset

    cat = next(c for c in load_dataset(synth_root) if c.name == "grid")
    defect = next(s for s in cat.test if s.label == 1)
    good = next(s for s in cat.test if s.label == 0)
    shape = np.asarray(Image.open(defect.path)).shape[:2]
    mask = ground_truth_mask(defect.path, {}, 0, shape)
    assert mask is not None and mask.shape == shape and mask.any()
    assert ground_truth_mask(good.path, {}, 0, shape) is None
    given = {"mask_paths": [None]}
    assert ground_truth_mask(defect.path, given, 0, shape) is None  # explicit paths win


def test_test_command_writes_report(patchcore_file, synth_root, tmp_path, capsys):
    """The user's path: `oddeye test --report DIR` on a data set."""
    from oddeye.cli import main

    out = tmp_path / "rep"
    rc = main(["test", "--model", str(patchcore_file), "--data", str(synth_root),
               "--category", "grid", "--report", str(out), "--no-progress"])
    assert rc == 0
    text = (out / "index.html").read_text(encoding="utf-8")
    assert "id='cat-grid'" in text and "id='cat-disc'" not in text
    assert "model: position weight 0 (fewer than 40" in capsys.readouterr().out


def test_report_renders_in_a_browser(report, tmp_path):
    """Every embedded image loads in headless Chromium (skips without a browser)."""
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="the `playwright` Python package is not installed")
    from tests.serve.test_browser import CHROMIUM_FLAGS, chromium_path

    exe = chromium_path()
    path, _ = report
    with sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path / "profile"),
                                                    executable_path=exe, headless=True,
                                                    args=CHROMIUM_FLAGS)
        try:
            page = ctx.new_page()
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || "
                                   "i.naturalWidth === 0).length")
            total = page.evaluate("document.images.length")
            assert total > 0 and broken == 0
        finally:
            ctx.close()


def test_one_detector_per_category(evaluated, patchcore_file, tmp_path):
    """The demo's form: a dict of detectors, one threshold per category in tables and plots."""
    import oddeye

    det, per, details = evaluated
    other = oddeye.load(patchcore_file)
    other.threshold_ = det.threshold_ + 1.0
    dets = {name: (det if name == "grid" else other) for name in details}
    text = write_test_report(tmp_path, dets, per, details).read_text(encoding="utf-8")
    assert "one model and threshold per category" in text
    for d in (det, other):
        assert f"(threshold {d.threshold_:.4g})" in text


def test_mean_tiles_say_how_many_categories_they_average():
    from oddeye.report.html import _over

    per = {"a": {"image_auroc": 0.5}, "b": {"image_auroc": float("nan")}, "c": {}}
    assert _over(per, "image_auroc") == "mean over the 1 of 3 categories where it is defined"
    assert _over({"a": {"image_auroc": 0.5}, "b": {"image_auroc": 0.7}}, "image_auroc") == \
        "mean over categories"
