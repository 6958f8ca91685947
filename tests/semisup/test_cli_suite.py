"""``oddeye semisup`` JSON output and the adbench suite on tiny .npz files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oddeye.cli import main

from .conftest import FAST, blobs


@pytest.fixture()
def npz_root(tmp_path):
    """Two tiny data sets in ADBench-like group folders."""
    for folder, name, seed in [("Classical", "1_tiny", 0), ("CV_by_ResNet18", "tiny_cv", 1)]:
        (tmp_path / folder).mkdir()
        X, y = blobs(seed, n_normal=120, n_anom=14, d=6)
        np.savez(tmp_path / folder / f"{name}.npz", X=X, y=y)
    return tmp_path


def test_cli_writes_json_with_means_and_per_dataset(npz_root, tmp_path, capsys):
    out = tmp_path / "res" / "out.json"
    code = main(["semisup", "--data", str(npz_root), "--method", "knn", "--labeled", "0.1",
                 "--seeds", "2", "--json", str(out)])
    assert code == 0
    res = json.loads(out.read_text())
    for key in ("mean_auroc", "mean_aupr", "per_dataset", "method", "anoonly", "labeled", "seeds",
                "contamination"):
        assert key in res
    assert set(res["per_dataset"]) == {"1_tiny", "tiny_cv"}
    row = res["per_dataset"]["tiny_cv"]
    assert {"auroc", "aupr", "seconds"} <= set(row) and row["group"] == "CV"
    assert res["seeds"] == [0, 1] and len(row["runs"]) == 2
    assert res["mean_auroc"] == pytest.approx(np.mean([r["auroc"] for r in
                                                       res["per_dataset"].values()]))
    assert "mean" in capsys.readouterr().out


def test_cli_anoonly_on_one_file_and_errors(npz_root, tmp_path, capsys):
    f = npz_root / "Classical" / "1_tiny.npz"
    out = tmp_path / "ao.json"
    assert main(["semisup", "--data", str(f), "--method", "devnet", "--anoonly", "--seeds", "1",
                 "--contamination", "0.05", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["anoonly"] is True and res["contamination"] == 0.05
    assert main(["semisup", "--data", str(f), "--method", "knn", "--anoonly"]) == 2
    bad = tmp_path / "bad.npz"
    np.savez(bad, X=np.zeros((10, 2)), y=np.zeros(10, int))
    assert main(["semisup", "--data", str(bad), "--method", "knn"]) == 2
    assert "one class only" in capsys.readouterr().err


def test_suite_writes_its_section(npz_root, tmp_path):
    from oddeye.bench import adbench_suite

    results = tmp_path / "RESULTS.md"
    results.write_text("# results\n\n<!-- section:other -->\nkeep me\n<!-- /section:other -->\n")
    body = adbench_suite.run(npz_root, seeds=1, methods=("devnet", "knn"),
                             contamination_methods=("devnet",), contamination_groups=("CV",),
                             diagnostics=(), workers=1, hparams={"devnet": FAST["devnet"]},
                             out_path=results, cache=tmp_path / "cache.jsonl", progress=False)
    text = results.read_text()
    assert "keep me" in text and "<!-- section:adbench -->" in text
    for needle in ("DevNet +AnoOnly", "kNN", "Label noise", "AUROC 10%", "tiny_cv"):
        assert needle in body
    n_cached = len((tmp_path / "cache.jsonl").read_text().splitlines())
    assert n_cached == 2 * (2 + 1) + 6  # two sets x (devnet x2, knn) + CV noise study (2 x 3)
    again = adbench_suite.run(npz_root, seeds=1, methods=("devnet", "knn"),
                              contamination_methods=("devnet",), contamination_groups=("CV",),
                              diagnostics=(), workers=1, hparams={"devnet": FAST["devnet"]},
                              write=False, cache=tmp_path / "cache.jsonl", progress=False)
    assert "12 fits, 12 of them reused from the cache" in again  # resumed: nothing refitted

    def table(text: str) -> str:
        return text.split("### AUROC (%)")[1].split("### AUPR")[0]

    assert table(again) == table(body)
