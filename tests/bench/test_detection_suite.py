"""The detection suite's driver, with its per-pair child process stubbed out (no fit)."""

from __future__ import annotations

import json

from oddeye.bench import detection_suite

ROW = {"image_auroc": 0.9, "pixel_auroc": 0.95, "pixel_aupro": 0.8, "image_ap": 0.9,
       "pixel_ap": 0.5, "fit_seconds": 1.0, "ms_per_image": 10.0, "peak_rss_mb": 100.0}


def test_repeated_methods_and_data_sets_run_once(synth_root, tmp_path, monkeypatch):
    calls = []

    def child(cmd, method, dataset):
        calls.append((method, cmd[cmd.index("--data") + 1]))
        out = cmd[cmd.index("--json") + 1]
        with open(out, "w") as f:
            json.dump(ROW, f)

    monkeypatch.setattr(detection_suite, "_run_child", child)
    results = tmp_path / "RESULTS.md"
    data = str(synth_root)
    body = detection_suite.run(methods=["patchcore", "padim", "patchcore"],
                               datasets=[data, data], out_path=results, section="t")
    assert calls == [("patchcore", data), ("padim", data)]
    rows = [ln for ln in body.splitlines() if ln.startswith(("| patchcore", "| padim"))]
    assert len(rows) == 2
    assert "Partial" not in results.read_text()


def test_a_backbone_among_the_params_reaches_the_detector(synth_root, monkeypatch):
    """``--params '{"backbone": ...}'`` (how the fusion study names its backbone) used to clash
    with the ``backbone`` argument (a TypeError: two values for one keyword)."""
    import oddeye.api

    seen = []

    class Stop(Exception):
        pass

    def fake(**kwargs):
        seen.append(kwargs)
        raise Stop

    monkeypatch.setattr(oddeye.api, "Detector", fake)
    for backbone, params in ((None, {"backbone": "a+b", "seed": 1}),
                             ("c", {"seed": 1})):
        try:
            detection_suite.run_one("patchcore", str(synth_root), backbone, params, threads=1)
        except Stop:
            pass
    assert seen == [{"method": "patchcore", "backbone": "a+b", "seed": 1},
                    {"method": "patchcore", "backbone": "c", "seed": 1}]
