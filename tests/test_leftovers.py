"""Small user-facing defects: ``export --refs`` on a model without references, a model file
missing some tensors, PIL images in ``predict``, a singular PaDiM covariance and .gif files
(all one-line errors or the same result as a file on disk; tiny images and 64 px models)."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from oddeye.cli import main
from oddeye.errors import DataError, ModelFileError, OddeyeError


def _one_line(err: str, *needles: str) -> str:
    """The single error line of a CLI run (no traceback), checked to hold every needle."""
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _good_image(synth_root: Path) -> Path:
    """One good test image of the synthetic grid class."""
    return sorted((synth_root / "grid" / "test" / "good").glob("*.png"))[0]


def _palette_image(size: tuple[int, int] = (40, 24)) -> Image.Image:
    """A colourful "P" image whose palette indices differ from its colours."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(rgb).quantize(colors=16)


# ------------------------------------------------------------------- 1. export --refs
def test_export_refuses_refs_for_a_model_without_references(patchcore_file, synth_root,
                                                            tmp_path, capsys):
    out = tmp_path / "m.onnx"
    rc = main(["export", "--model", str(patchcore_file), "--refs", str(_good_image(synth_root)),
               "--out", str(out), "--no-check"])
    assert rc == 2
    _one_line(capsys.readouterr().err, "oddeye export: error:", str(patchcore_file),
              "(patchcore) does not use reference images; drop --refs")
    assert not out.exists()


def test_export_still_requires_refs_for_a_model_that_needs_them():
    from oddeye.commands.export import check_refs

    det = SimpleNamespace(needs_references=True, method="resad")
    with pytest.raises(OddeyeError, match=r"m\.oddeye \(resad\) needs --refs"):
        check_refs(det, "m.oddeye", None)
    check_refs(det, "m.oddeye", ["good.png"])  # given: accepted
    check_refs(SimpleNamespace(needs_references=False, method="padim"), "m.oddeye", None)


# ------------------------------------------------------- 2. model file missing tensors
def _edited_copy(src: Path, dst: Path, drop: int = 0, add: str | None = None,
                 prefix: str = "extractor.") -> tuple[Path, list[str]]:
    """A copy of a model file without its first ``drop`` ``prefix`` tensors (and with an extra
    one named ``add``); returns the path and the names dropped."""
    from oddeye.io.modelfile import load_model, save_model

    meta, tensors = load_model(src)
    meta.pop("library_version", None)  # added by load_model, written by save_model itself
    gone = sorted(k for k in tensors if k.startswith(prefix))[:drop]
    for k in gone:
        del tensors[k]
    if add:
        tensors[add] = torch.zeros(1)
    return save_model(dst, meta, tensors), gone


def test_model_missing_one_backbone_tensor_is_one_line(patchcore_file, tmp_path):
    from oddeye.api import Detector

    path, gone = _edited_copy(patchcore_file, tmp_path / "broken.oddeye", drop=1)
    with pytest.raises(ModelFileError) as exc:
        Detector.load(path, device="cpu")
    msg = str(exc.value)
    assert "\n" not in msg and "\t" not in msg, msg
    assert str(path) in msg and "backbone tensors 1 missing" in msg and repr(gone[0]) in msg
    assert "Error(s) in loading" not in msg


def test_model_missing_many_and_extra_tensors_counts_them(patchcore_file, tmp_path):
    from oddeye.api import Detector

    path, gone = _edited_copy(patchcore_file, tmp_path / "broken.oddeye", drop=5,
                              add="extractor.bogus.weight")
    with pytest.raises(ModelFileError) as exc:
        Detector.load(path, device="cpu")
    msg = str(exc.value)
    assert "\n" not in msg, msg
    assert "5 missing" in msg and "and 2 more" in msg and repr(gone[0]) in msg
    assert "1 unexpected ('extractor.bogus.weight')" in msg


def test_model_missing_a_head_tensor_is_one_line(patchcore_file, tmp_path):
    from oddeye.api import Detector

    path, _ = _edited_copy(patchcore_file, tmp_path / "broken.oddeye", add="head.bogus")
    with pytest.raises(ModelFileError) as exc:
        Detector.load(path, device="cpu")
    msg = str(exc.value)
    assert "\n" not in msg and "\t" not in msg, msg
    assert str(path) in msg and "bogus" in msg


# ------------------------------------------------------------------ 3. PIL images
def test_palette_pil_image_reads_like_its_png(tmp_path):
    from oddeye.preprocess import load_resized, load_rgb

    pal = _palette_image()
    png = tmp_path / "pal.png"
    pal.save(png)
    from_file = load_rgb(png)
    np.testing.assert_array_equal(load_rgb(pal), from_file)
    np.testing.assert_array_equal(from_file, np.asarray(pal.convert("RGB")))  # colours
    np.testing.assert_array_equal(load_resized([pal], 16)[0], load_resized([png], 16)[0])


def test_palette_pil_image_predicts_like_its_png(patchcore_file, synth_root, tmp_path):
    import oddeye

    pal = Image.open(_good_image(synth_root)).convert("RGB").quantize(colors=64)
    png = tmp_path / "pal.png"
    pal.save(png)
    det = oddeye.load(patchcore_file, device="cpu")
    a, b = det.predict([pal]), det.predict([png])
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.maps, b.maps)


def test_pil_image_gets_its_exif_orientation(tmp_path):
    from oddeye.preprocess import load_rgb

    rgb = np.zeros((10, 30, 3), np.uint8)
    rgb[:, :5] = 255  # a bright left edge, to see the rotation
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rot.png"
    Image.fromarray(rgb).save(path, exif=exif)
    with Image.open(path) as opened:  # as decoded, not yet oriented
        assert opened.size == (30, 10)
        got = load_rgb(opened)
    assert got.shape == (30, 10, 3)
    np.testing.assert_array_equal(got, load_rgb(path))


def test_zero_size_pil_image_is_refused():
    from oddeye.errors import ImageReadError
    from oddeye.preprocess import load_rgb

    with pytest.raises(ImageReadError, match="zero size"):
        load_rgb(Image.new("RGB", (0, 4)), name="images[0]")


# ------------------------------------------------------- 4. singular PaDiM covariance
def test_padim_singular_covariance_is_a_data_error():
    from oddeye.methods.padim import Padim
    from tests.methods.fakes import FeatureBatches

    method = Padim(layers=["a"], n_features=4, eps=0)
    head = method.build_head({"a": 4}, {"a": 4})
    same = torch.ones(3, 4, 2, 2)  # identical images: zero variance everywhere
    with pytest.raises(DataError, match=r"covariance .* singular .* raise eps .* more"):
        method.fit_head(head, FeatureBatches([{"a": same}]))


def test_padim_detector_on_identical_images_fails_in_one_line(synth_root):
    from oddeye.api import Detector

    img = str(_good_image(synth_root))
    det = Detector(method="padim", eps=0, size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="singular") as exc:
            det.fit([img] * 3, progress=False)
    assert "\n" not in str(exc.value)


# ------------------------------------------------------------------------- 5. GIF
def test_gif_reads_first_frame_with_palette_colours(tmp_path):
    from oddeye.io.images import IMAGE_EXTENSIONS, is_image_file, read_image

    first, second = _palette_image(), _palette_image().transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    path = tmp_path / "anim.GIF"
    first.save(path, save_all=True, append_images=[second], duration=100, loop=0)
    assert ".gif" in IMAGE_EXTENSIONS and is_image_file(path)
    np.testing.assert_array_equal(read_image(path), np.asarray(first.convert("RGB")))


def test_gif_is_scored_in_a_folder_and_given_directly(patchcore_file, synth_root, tmp_path,
                                                      capsys):
    folder = tmp_path / "gifs"
    folder.mkdir()
    gif = folder / "a.gif"
    Image.open(_good_image(synth_root)).convert("RGB").quantize(colors=64).save(gif)
    scores = []
    for name, given in (("walked", folder), ("direct", gif)):
        out = tmp_path / name
        assert main(["predict", "--model", str(patchcore_file), str(given), "--out",
                     str(out)]) == 0
        assert "scored 1 images" in capsys.readouterr().out
        rows = list(csv.DictReader(open(out / "results.csv")))
        assert [Path(r["path"]).name for r in rows] == ["a.gif"]
        scores.append(float(rows[0]["score"]))
    assert scores[0] == scores[1]
