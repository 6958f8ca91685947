"""The image AnoOnly suite on a generated set: parameters reach every model, section named."""

from __future__ import annotations

import pytest

import oddeye.api
from oddeye.bench import anoonly_image_suite, detection_suite
from oddeye.data.synth import generate
from oddeye.methods import create_method


def test_parameters_reach_patchcore_and_both_heads_and_name_the_section(tmp_path, monkeypatch):
    root = generate(tmp_path / "data", seed=3, classes=["disc"], n_train=16, n_test_good=6,
                    n_test_defect=5, size=96)
    monkeypatch.setenv("ODDEYE_SHARED_DATA", str(root))
    monkeypatch.setattr(detection_suite, "DATASETS", {"deeppcb": "disc"})
    made: list[dict] = []
    fitted: list[list] = []

    class Spy(oddeye.api.Detector):
        def __init__(self, **kw):
            made.append(dict(kw))
            if kw["method"] == "anoonly-head":  # plumbing only: a few steps, no gate choice
                kw.update(steps=3, gate="max")
            super().__init__(**kw)

        def fit(self, images, **kw):
            labels = kw.get("labels") or [0] * len(images)
            fitted.append([p for p, y in zip(images, labels, strict=True) if y == 0])
            return super().fit(images, **kw)

    monkeypatch.setattr(oddeye.api, "Detector", Spy)
    out = tmp_path / "RESULTS.md"
    body = anoonly_image_suite.run(out, ks=(2,), datasets=["deeppcb"],
                                   params={"size": 64, "grid": "last"}, section="head-grid",
                                   seed=4)
    assert [k["method"] for k in made] == ["patchcore", "anoonly-head", "anoonly-head"]
    assert all(k["size"] == 64 and k["grid"] == "last" for k in made)
    # paired: PatchCore has the heads' seed and fits on their good images, none held out
    assert all(k["seed"] == 4 for k in made) and made[0]["holdout"] == 0
    # ... and their features: both at their defaults, which agree (cosine since session 28)
    assert "cosine" not in made[0] and "cosine" not in made[1]
    assert create_method("patchcore").cosine == create_method("anoonly-head").cosine
    assert fitted[0] == fitted[1] == fitted[2] and len(fitted[0]) == 16
    text = out.read_text()
    assert "<!-- section:head-grid -->" in text and body in text
    assert 'parameters {"size": 64, "grid": "last"} for all' in body
    row = next(line for line in body.splitlines() if line.startswith("| deeppcb | 2 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    for cell in cells[2:5]:  # three metric cells, each image / pixel / AUPRO in [0, 1]
        assert all(0.0 <= float(v) <= 1.0 for v in cell.split(" / "))


@pytest.mark.parametrize("key", ["seed", "holdout"])
def test_params_the_suite_sets_itself_are_refused(key, tmp_path):
    from oddeye.errors import DataError

    with pytest.raises(DataError, match=f"--param {key}: set by the anoonly-image suite"):
        anoonly_image_suite.run(tmp_path / "R.md", ks=(2,), datasets=["tire"],
                                params={key: 1})
    assert not (tmp_path / "R.md").exists()


def test_a_missing_shared_set_is_skipped_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ODDEYE_SHARED_DATA", str(tmp_path / "nothing"))
    body = anoonly_image_suite.run(tmp_path / "R.md", ks=(2,), datasets=["tire"])
    assert "| tire |" not in body


def test_another_seed_names_its_own_section(tmp_path, monkeypatch):
    """A seed-1 run must not replace the seed-0 section (``--seed`` without ``--section``), and
    runs on the cosine default never replace the raw-feature sections the docs quote."""
    monkeypatch.setenv("ODDEYE_SHARED_DATA", str(tmp_path / "nothing"))
    out = tmp_path / "R.md"
    anoonly_image_suite.run(out, ks=(2,), datasets=["tire"], seed=1)
    anoonly_image_suite.run(out, ks=(2,), datasets=["tire"])
    text = out.read_text()
    assert "<!-- section:anoonly-image-cosine-seed1 -->" in text and "Seed 1;" in text
    assert "<!-- section:anoonly-image-cosine -->" in text and "Seed 0;" in text
    assert "<!-- section:anoonly-image -->" not in text


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
