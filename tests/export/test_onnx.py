"""ONNX export: parity with the torch path for every exportable method, metadata, batch axes,
the PatchCore fixed-block head, OnnxDetector errors and the export/predict commands."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from oddeye.errors import ModelFileError
from oddeye.methods import available_methods, get_method
from tests.conftest import SHARED_DATA
from tests.export.models import fitted_model, sample_images

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TOL = 1e-4


def shared_images(n: int = 2) -> list:
    """A few real images from ../shared/data when it is present (none otherwise)."""
    if not SHARED_DATA.exists():
        return []
    from oddeye.io.images import list_images

    out = []
    for sub in sorted(p for p in SHARED_DATA.iterdir() if p.is_dir()):
        hits = [p for p in list_images(sub, recursive=True) if "test" in p.parts][:1]
        out += hits
        if len(out) >= n:
            break
    return out


@pytest.fixture(scope="module")
def exported(patchcore_file, tmp_path_factory):
    """The tiny PatchCore model, loaded, and its ONNX export with a dynamic batch axis."""
    import oddeye
    from oddeye.export.onnx import export_onnx

    det = oddeye.load(patchcore_file)
    path = export_onnx(det, tmp_path_factory.mktemp("onnx") / "m.onnx")
    return det, path


@pytest.mark.parametrize("method", available_methods())
def test_parity_with_torch_path(method, synth_root, surface_models, tmp_path):
    """Maps and scores of the ONNX graph match the torch model within 1e-4 on real images."""
    import oddeye
    from oddeye.export.onnx import OnnxDetector, export_onnx, method_can_export

    if not method_can_export(method):
        pytest.skip(f"method {method!r} declares exportable = False")
    det = oddeye.load(fitted_model(method, synth_root, surface_models))
    if det.needs_references:
        from oddeye.data.mvtec import load_dataset

        cat = next(c for c in load_dataset(synth_root) if c.name == "grid")
        det.set_references([s.path for s in cat.train[:4]])
    path = export_onnx(det, tmp_path / f"{method}.onnx")
    onnx_det = OnnxDetector(path)
    images = sample_images(synth_root) + shared_images()
    a, b = det.predict(images), onnx_det.predict(images)
    assert a.maps.shape == b.maps.shape == (len(images), det.size, det.size)
    assert np.abs(a.maps - b.maps).max() < TOL
    assert np.abs(a.scores - b.scores).max() < TOL
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.normalized_scores, b.normalized_scores, atol=1e-4)
    assert b.original_sizes == a.original_sizes


def test_dynamic_batch_axis(exported, synth_root):
    """One graph serves batch 1 and batch 5 with the same per-image results."""
    from oddeye.export.onnx import OnnxDetector
    from oddeye.preprocess import load_resized, to_batch

    det, path = exported
    x = to_batch(load_resized(sample_images(synth_root), det.size)).numpy()
    sess = OnnxDetector(path)
    assert sess.session.get_inputs()[0].shape[0] == "batch"
    maps5, scores5 = sess.run_batch(x)
    maps1 = np.concatenate([sess.run_batch(x[i:i + 1])[0] for i in range(len(x))])
    np.testing.assert_allclose(maps1, maps5, atol=1e-5)
    with torch.inference_mode():
        tmaps, tscores = det.model_(torch.from_numpy(x))
    assert np.abs(tmaps.numpy() - maps5).max() < TOL
    assert np.abs(tscores.numpy() - scores5).max() < TOL


def test_onnx_iter_predict_takes_one_array_as_one_image(exported):
    """As ``Detector.iter_predict``: one (H, W, 3) or (H, W) array is one image, not H rows."""
    from oddeye.export.onnx import OnnxDetector

    det, path = exported
    sess = OnnxDetector(path)
    img = np.full((40, 50, 3), 90, np.uint8)
    for one in (img, img[..., 0]):
        preds = list(sess.iter_predict(one))
        assert [len(p.scores) for p in preds] == [1]
        assert preds[0].maps.shape == (1, det.size, det.size)
    assert sum(len(p.scores) for p in sess.iter_predict(np.stack([img] * 3), batch_size=2)) == 3


def test_metadata_props(exported):
    """Threshold, scale, size, method, backbone and version travel in metadata_props."""
    import onnx

    from oddeye import __version__

    det, path = exported
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert float(props["threshold"]) == pytest.approx(det.threshold_, rel=0, abs=0)
    assert float(props["score_scale"]) == det.score_scale_
    assert int(props["size"]) == det.size
    assert props["method"] == "patchcore"
    assert props["backbone"] == det.method_.backbone
    assert props["oddeye_version"] == __version__
    assert props["input_dtype"] == "uint8"
    assert props["score_from"] == det.model_.post.score_from
    assert int(props["pad"]) == det.pad_ == 16  # PatchCore's default input frame


def test_static_batch_and_float_input(exported, synth_root, tmp_path):
    """A fixed-batch float32 graph still predicts any number of images (last batch padded)."""
    from oddeye.export.onnx import OnnxDetector, export_onnx

    det, _ = exported
    path = export_onnx(det, tmp_path / "fixed.onnx", input_dtype="float32", batch=2)
    onnx_det = OnnxDetector(path)
    inp = onnx_det.session.get_inputs()[0]
    assert inp.shape[0] == 2 and inp.type == "tensor(float)"
    images = sample_images(synth_root)[:3]
    a, b = det.predict(images), onnx_det.predict(images, batch_size=3)
    assert len(b.scores) == 3
    assert np.abs(a.maps - b.maps).max() < TOL


def test_patchcore_blocks_match_chunked_head():
    """The fixed-block nearest neighbour equals the torch head's chunk loop (several blocks)."""
    from oddeye.export.onnx import _PatchCoreBlocks
    from oddeye.methods.patchcore import PatchCoreHead

    g = torch.Generator().manual_seed(0)
    head = PatchCoreHead(["a", "b"], dim=6, kernel=3)
    head.set_bank(torch.randn(1000, 6, generator=g))
    feats = {"a": torch.randn(3, 4, 5, 5, generator=g), "b": torch.randn(3, 2, 3, 3, generator=g)}
    blocks = _PatchCoreBlocks(head, block_rows=128)  # 8 blocks, the last one partial
    ref = head(feats)
    out = blocks(feats)
    assert out.shape == ref.shape == (3, 5, 5)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # brute force: the true nearest-neighbour distance
    emb = head.embed(feats).permute(0, 2, 3, 1).reshape(-1, 6)
    brute = torch.cdist(emb, head.bank).amin(1).view(3, 5, 5)
    torch.testing.assert_close(out, brute, atol=1e-4, rtol=1e-4)


def test_patchcore_blocks_search_in_the_projected_space():
    """With ``search_dim`` the exported head projects queries as the torch head does."""
    from oddeye.export.onnx import _PatchCoreBlocks
    from oddeye.methods.patchcore import PatchCoreHead, pca_basis, project_with_residual

    g = torch.Generator().manual_seed(0)
    head = PatchCoreHead(["a", "b"], dim=6, kernel=3)
    train = torch.randn(2000, 6, generator=g)
    head.set_projection(*pca_basis(train, 3))
    head.set_bank(project_with_residual(train[:700], head.proj_mean, head.proj_basis))
    feats = {"a": torch.randn(2, 4, 5, 5, generator=g), "b": torch.randn(2, 2, 3, 3, generator=g)}
    out = _PatchCoreBlocks(head, block_rows=128)(feats)
    torch.testing.assert_close(out, head(feats), atol=1e-5, rtol=1e-5)


def test_refuses_method_declared_not_exportable(exported, monkeypatch, tmp_path):
    """A method class with ``exportable = False`` is refused with a clear ExportError."""
    from oddeye.export.onnx import ExportError, export_onnx

    det, _ = exported
    monkeypatch.setattr(get_method("patchcore"), "exportable", False, raising=False)
    with pytest.raises(ExportError, match="cannot be exported"):
        export_onnx(det, tmp_path / "x.onnx")


def test_refuses_unfitted_detector(tmp_path):
    from oddeye.api import Detector
    from oddeye.export.onnx import ExportError, export_onnx

    with pytest.raises(ExportError, match="not fitted"):
        export_onnx(Detector(), tmp_path / "x.onnx")


def test_onnx_detector_rejects_foreign_files(tmp_path):
    """Missing, garbage and non-oddeye ONNX files are ModelFileErrors naming the file."""
    import onnx
    from onnx import TensorProto, helper

    from oddeye.export.onnx import OnnxDetector

    with pytest.raises(ModelFileError, match="not found"):
        OnnxDetector(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"definitely not protobuf")
    with pytest.raises(ModelFileError, match="junk.onnx"):
        OnnxDetector(junk)
    node = helper.make_node("Identity", ["x"], ["y"])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([node], "g", [x], [y])
    foreign = tmp_path / "foreign.onnx"
    # IR version 8: loadable by every onnxruntime we meet (onnx 1.23's default, 14, is not by
    # onnxruntime 1.30), so the check under test is the metadata, not the runtime's version
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(foreign))
    with pytest.raises(ModelFileError, match="no oddeye metadata"):
        OnnxDetector(foreign)


def test_export_and_predict_commands(patchcore_file, synth_root, tmp_path, capsys):
    """`oddeye export` then `oddeye predict --model M.onnx` gives the .oddeye file's results."""
    from oddeye.cli import main

    onnx_path = tmp_path / "m.onnx"
    assert main(["export", "--model", str(patchcore_file), "--format", "onnx",
                 "--out", str(onnx_path)]) == 0
    assert "parity on 2 images" in capsys.readouterr().out
    folder = synth_root / "grid" / "test" / "crack"
    assert main(["predict", "--model", str(onnx_path), str(folder), "--out",
                 str(tmp_path / "p_onnx")]) == 0
    assert main(["predict", "--model", str(patchcore_file), str(folder), "--out",
                 str(tmp_path / "p_torch")]) == 0

    def rows(name):
        with open(tmp_path / name / "results.csv") as fh:
            return list(csv.DictReader(fh))

    a, b = rows("p_torch"), rows("p_onnx")
    assert len(a) == len(b) > 0
    for ra, rb in zip(a, b, strict=True):
        assert ra["path"] == rb["path"] and ra["label"] == rb["label"]
        assert abs(float(ra["score"]) - float(rb["score"])) < TOL
    assert (tmp_path / "p_onnx" / "overlays").is_dir()


def test_export_command_errors_cleanly(tmp_path, capsys):
    """A missing model file is a one-line CLI error (exit 2), not a traceback."""
    from oddeye.cli import main

    assert main(["export", "--model", str(tmp_path / "none.oddeye"), "--out",
                 str(tmp_path / "x.onnx")]) == 2
    assert "error" in capsys.readouterr().err


def test_a_near_zero_parity_failure_says_what_it_likely_is(patchcore_file, synth_root, tmp_path,
                                                           capsys):
    """A check that fails by less than the search's float32 floor, with no label flipped (what
    training images give: their patches match the bank almost exactly), says so and how to
    check instead; the file is still called unusable under the tolerance given."""
    from oddeye.cli import main

    train = sorted((synth_root / "grid" / "train" / "good").glob("*.png"))[:2]
    code = main(["export", "--model", str(patchcore_file), "--out", str(tmp_path / "m.onnx"),
                 "--tolerance", "0", "--check", *map(str, train)])
    err = capsys.readouterr().err
    assert code == 2 and "should not be used" in err
    assert "float32 rounding" in err and "--tolerance 0.002" in err


@pytest.mark.parametrize("params, width", [({"search_dim": 16}, 17), ({"position": 3.0}, 130),
                                           ({"image_neighbours": 3}, 130),
                                           ({"cosine": True, "position": 3.0}, 130),
                                           ({"magnitude": 1.0, "position": 0.0}, 130)],
                         ids=["projected-search", "position-term", "image-neighbours",
                              "cosine-patches", "magnitude-term"])
def test_parity_with_patchcore_search_options(params, width, synth_root, tmp_path):
    """A PatchCore searched in a projected space (``search_dim``: 16 directions plus the
    residual), with the cell coordinates of its ``position`` term, or against the patches of
    each image's nearest training images (``image_neighbours``), or with unit-length stages
    (``cosine``), or with their lengths' log columns (``magnitude``), exports to the same maps
    and scores: all are part of the graph."""
    from oddeye.api import Detector
    from oddeye.data.mvtec import load_dataset
    from oddeye.export.onnx import OnnxDetector, export_onnx

    cat = next(c for c in load_dataset(synth_root) if c.name == "grid")
    det = Detector(method="patchcore", size=128, **params).fit(
        [s.path for s in cat.train[:8]], progress=False)
    head = det.model_.head
    assert (head.image_patches if head.image_neighbours else head.bank).shape[-1] == width
    onnx_det = OnnxDetector(export_onnx(det, tmp_path / "options.onnx"))
    images = sample_images(synth_root)
    a, b = det.predict(images), onnx_det.predict(images)
    assert np.abs(a.maps - b.maps).max() < TOL
    assert np.abs(a.scores - b.scores).max() < TOL


def test_parity_with_map_norm(synth_root, tmp_path):
    """Per-position map statistics travel inside the exported graph."""
    from oddeye.api import Detector
    from oddeye.data.mvtec import load_dataset
    from oddeye.export.onnx import OnnxDetector, export_onnx

    cat = next(c for c in load_dataset(synth_root) if c.name == "grid")
    paths = [s.path for s in cat.train]
    det = Detector(method="patchcore", size=128, map_norm="position").fit(
        paths[:6], validation=paths[6:16], progress=False)
    assert det.model_.post.standardizes
    onnx_det = OnnxDetector(export_onnx(det, tmp_path / "norm.onnx"))
    images = sample_images(synth_root)
    a, b = det.predict(images), onnx_det.predict(images)
    assert np.abs(a.maps - b.maps).max() < TOL
    assert np.abs(a.scores - b.scores).max() < TOL


@pytest.mark.parametrize(("method", "params", "pad"), [
    ("patchcore", {}, 16), ("patchcore", {"frame_crop": "taps"}, 16), ("padim", {}, 16),
    ("patchcore", {"pool_zeros": True}, 0), ("patchcore", {"grid": "last"}, 16)],
    ids=["patchcore-cut-after-aggregation", "patchcore-taps-cropped", "padim", "zeros-pooled",
         "coarse-grid"])
def test_parity_with_framed_input(method, params, pad, synth_root, tmp_path):
    """The input frame (``pad``), where it is cut (the taps, or PatchCore's aggregated map),
    the border pooling and the patch grid are part of the exported graph."""
    from oddeye.api import Detector
    from oddeye.data.mvtec import load_dataset
    from oddeye.export.onnx import OnnxDetector, export_onnx

    cat = next(c for c in load_dataset(synth_root) if c.name == "grid")
    det = Detector(method=method, size=128, pad=pad, **params).fit(
        [s.path for s in cat.train[:8]], progress=False)
    assert det.model_.extractor.pad == pad
    onnx_det = OnnxDetector(export_onnx(det, tmp_path / "framed.onnx"))
    assert onnx_det.pad_ == pad  # for reports written from the ONNX file
    images = sample_images(synth_root)
    a, b = det.predict(images), onnx_det.predict(images)
    assert np.abs(a.maps - b.maps).max() < TOL
    assert np.abs(a.scores - b.scores).max() < TOL


@pytest.mark.parametrize("variant", ["embedding=oce", "embedding=teacher", "projection=true",
                                     "stage_weights=spread"])
def test_parity_with_rd4ad_variants(variant, synth_root, tmp_path):
    """The ablation's variants, RD++'s projection and the stage weights export too: the teacher
    embedding's extra tap, the projection layers (instance norm) and each stage's offset and
    scale are in the graph."""
    from oddeye.api import Detector
    from oddeye.commands._common import parse_params
    from oddeye.data.mvtec import load_dataset
    from oddeye.export.onnx import OnnxDetector, export_onnx

    cat = next(c for c in load_dataset(synth_root) if c.name == "grid")
    det = Detector(method="rd4ad", size=128, epochs=1, train_batch=4,
                   **parse_params([variant])).fit([s.path for s in cat.train[:8]],
                                                  progress=False)
    onnx_det = OnnxDetector(export_onnx(det, tmp_path / f"{variant.replace('=', '-')}.onnx"))
    images = sample_images(synth_root)
    a, b = det.predict(images), onnx_det.predict(images)
    assert np.abs(a.maps - b.maps).max() < TOL
    assert np.abs(a.scores - b.scores).max() < TOL


@pytest.mark.parametrize("method,params", [
    ("rd4ad", {"epochs": 1, "train_batch": 4, "expanded_targets": True}),
    ("patchcore", {"layers": ["s8x", "s16x"]}),
])
def test_expanded_taps_export_with_parity(method, params, synth_root, tmp_path):
    """Models that read MobileNetV2's expanded taps (a copied expansion layer in the extractor)
    export like the others: same maps and scores from the ONNX graph."""
    from oddeye.api import Detector
    from oddeye.data.mvtec import load_dataset
    from oddeye.export.onnx import OnnxDetector, export_onnx

    cat = next(c for c in load_dataset(synth_root) if c.name == "disc")
    det = Detector(method=method, size=64, **params).fit([s.path for s in cat.train[:8]],
                                                        progress=False)
    onnx_det = OnnxDetector(export_onnx(det, tmp_path / "m.onnx"))
    images = [s.path for s in cat.test[:4]]
    a, b = det.predict(images), onnx_det.predict(images)
    assert np.abs(a.maps - b.maps).max() < TOL
    assert np.abs(a.scores - b.scores).max() < TOL


def test_anoonly_head_exports_with_banks_the_search_chunks(synth_root, tmp_path):
    """The head's two bank searches were traced with query-sized chunks: at 256 px with a
    2,458-patch bank, ONNX maps differed from torch by up to 8 at batches other than the
    traced one (``nearest_sq_distance`` now searches in bank-sized blocks while traced). Banks
    of every patch make the torch search chunk at 128 px too."""
    from PIL import Image

    from oddeye.api import Detector
    from oddeye.data.mvtec import load_dataset, load_sample_mask
    from oddeye.export.onnx import OnnxDetector, export_onnx

    cat = next(c for c in load_dataset(synth_root) if c.name == "grid")
    defects = [s for s in cat.test if s.label == 1]
    paths = [s.path for s in cat.train] + [s.path for s in defects]
    masks = [None] * len(cat.train)
    for s in defects:
        with Image.open(s.path) as im:
            masks.append(load_sample_mask(s, im.size[::-1]))
    det = Detector(method="anoonly-head", size=128, steps=3, coreset_ratio=1.0).fit(
        paths, labels=[0] * len(cat.train) + [1] * len(defects), masks=masks, progress=False)
    assert det.model_.head.bank.shape[0] * 2 * 16 * 16 > 1_000_000  # the torch search chunks
    onnx = OnnxDetector(export_onnx(det, tmp_path / "a.onnx"))
    x = [s.path for s in cat.test]
    for batch in (1, 3, len(x)):
        a, b = det.predict(x, batch_size=batch), onnx.predict(x, batch_size=batch)
        assert np.abs(a.maps - b.maps).max() < 1e-3
        assert np.abs(a.scores - b.scores).max() < TOL


def test_padim_distance_exports_as_a_matmul_not_einsum(synth_root, surface_models, tmp_path):
    """PaDiM's Mahalanobis distance is a batched MatMul in the graph: ONNX Runtime's Einsum
    re-laid out the (L, d, d) inverse covariances on every call (43 against 11 ms per image at
    batch 1, docs/export.md)."""
    onnx = pytest.importorskip("onnx", reason="the export needs the optional 'export' extra")
    import oddeye
    from oddeye.export.onnx import export_onnx

    det = oddeye.load(fitted_model("padim", synth_root, surface_models))
    ops = {n.op_type for n in onnx.load(str(export_onnx(det, tmp_path / "p.onnx"))).graph.node}
    assert "Einsum" not in ops and "MatMul" in ops
