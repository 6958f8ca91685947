"""ONNX export of the whole inference path, and an onnxruntime detector with Detector's surface.

The exported graph is ``AnomalyModel`` itself: uint8 (or float 0..255) images ``(N, 3, S, S)``,
already resized to the model size, -> ``maps (N, S, S)`` and ``scores (N,)``. Normalisation,
backbone, method head, upsampling, Gaussian blur and the image score are all inside the graph;
decoding and resizing stay outside (``oddeye.preprocess``), exactly as on the torch path. The
threshold, score scale and model description travel in the ONNX ``metadata_props``.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from oddeye import __version__
from oddeye.device import module_device
from oddeye.errors import ModelFileError, OddeyeError
from oddeye.methods.neighbours import EXPORT_BLOCK_ROWS, blockwise_distance
from oddeye.prediction import PredictorMixin, check_batch_size, image_list

#: Value of the ``oddeye_format`` metadata key written by this version of the exporter.
FORMAT_VERSION = "1"
INPUT_NAME = "images"
OUTPUT_NAMES = ("maps", "scores")
DEFAULT_OPSET = 17
#: Lowest opset every method's graph exports at (PaDiM's Mahalanobis distance is an Einsum,
#: opset 12; the others export from 11). Measured with torch 2.13 (docs/export.md).
MIN_OPSET = 12
#: Bank rows per nearest-neighbour block in an exported PatchCore graph (fixed slices).
PATCHCORE_BLOCK_ROWS = EXPORT_BLOCK_ROWS


class ExportError(OddeyeError):
    """A model cannot be exported, or the exported graph does not match the torch path."""


def max_opset() -> int:
    """Highest opset torch's TorchScript exporter (``dynamo=False``, used here) supports: it
    refuses anything above ``ONNX_MAX_OPSET`` and only warns between the two."""
    try:
        from torch.onnx import _constants
    except ImportError:  # a private module: fall back to the value of torch 2.13
        return 20
    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))


def check_opset(opset: Any) -> int:
    """``opset`` as an int, or an ``ExportError`` naming the supported range: an opset outside it
    fails inside torch's exporter with a long trace, or writes a graph it only half supports."""
    hi = max_opset()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= hi:
        raise ExportError(f"opset must be an integer from {MIN_OPSET} to {hi} (what torch "
                          f"{torch.__version__.split('+')[0]}'s exporter and every oddeye graph "
                          f"support; default {DEFAULT_OPSET}), got {opset!r}")
    return opset


def check_out_path(out: str | os.PathLike) -> Path:
    """``out`` as a Path, or an ``ExportError`` when it is an existing folder (the export would
    fail only after tracing, with a raw ``IsADirectoryError``)."""
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"cannot write the ONNX model to {out}: it is a folder; give a file "
                          f"name such as {out / 'model.onnx'}")
    return out


def declare_output_shapes(model: Any, size: int, batch: int | None) -> None:
    """Set the graph outputs' declared shapes to ``maps (B, S, S)`` and ``scores (B,)`` (``B``
    the fixed batch or the symbolic ``batch``). The tracer's own guess for ``maps`` names the
    map's rows ``batch`` too (``[batch, batch, Gathermaps_dim_2]``), which a runtime or tool that
    trusts the declaration gets wrong."""
    b: int | str = batch or "batch"
    shapes = {OUTPUT_NAMES[0]: (b, size, size), OUTPUT_NAMES[1]: (b,)}
    for out in model.graph.output:
        if out.name not in shapes:
            continue
        shape = out.type.tensor_type.shape
        del shape.dim[:]
        for d in shapes[out.name]:
            dim = shape.dim.add()
            if isinstance(d, int):
                dim.dim_value = d
            else:
                dim.dim_param = d


# ------------------------------------------------------------------ export-friendly heads
class _PatchCoreBlocks(nn.Module):
    """PatchCore nearest-neighbour distance with bank blocks fixed at export time.

    The torch head sizes its chunks from the number of queries (batch-dependent), which a tracer
    would freeze; here the blocks depend only on the bank size, so the graph has a free batch axis
    and computes the same ``sqrt(min_j |b_j|^2 - 2 q.b_j + |q|^2)``.
    """

    def __init__(self, head: nn.Module, block_rows: int = PATCHCORE_BLOCK_ROWS):
        super().__init__()
        self.head = head
        self.block_rows = int(block_rows)

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.head.embed(feats)
        n, d, h, w = emb.shape
        q = self.head.to_search_space(emb.permute(0, 2, 3, 1).reshape(-1, d))
        return blockwise_distance(q, self.head.bank, self.head.bank_sq,
                                  self.block_rows).view(n, h, w)


def export_head(head: nn.Module) -> nn.Module:
    """The head to trace: its ``for_export()`` if it has one, fixed-block PatchCore, or as is."""
    if hasattr(head, "for_export"):
        return head.for_export()
    from oddeye.methods.patchcore import PatchCoreHead

    if isinstance(head, PatchCoreHead):
        if head.image_neighbours:  # a fixed number of neighbour images: traced as it runs
            if head.image_patches.shape[0] == 0:
                raise ExportError("PatchCore head has no training images' patches (model not "
                                  "fitted)")
            return head
        if head.bank.shape[0] == 0:
            raise ExportError("PatchCore head has an empty memory bank (model not fitted)")
        return _PatchCoreBlocks(head)
    return head


def method_can_export(name: str) -> bool:
    """False when the method class declares ``exportable = False`` (e.g. data-dependent loops)."""
    from oddeye.methods import get_method

    return bool(getattr(get_method(name), "exportable", True))


class _Graph(nn.Module):
    """AnomalyModel with an export-friendly head: images -> (maps, scores)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.normalize, self.extractor = model.normalize, model.extractor
        self.head, self.post = export_head(model.head), model.post

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.post(self.head(self.extractor(self.normalize(x))))


# ------------------------------------------------------------------------------ metadata
def export_metadata(detector: Any, input_dtype: str, batch: int | None = None) -> dict[str, str]:
    """String key/values stored in the ONNX file: all OnnxDetector needs besides the graph,
    and what ``oddeye info`` describes (the training record, the input's batch)."""
    meta = getattr(detector, "meta_", None) or {}
    info = dict(getattr(detector, "threshold_info_", {}) or {})
    return {
        "oddeye_format": FORMAT_VERSION,
        "oddeye_version": __version__,
        "trained_with_oddeye": str(meta.get("oddeye_version", __version__)),
        "method": str(detector.method),
        "backbone": str(detector.method_.backbone),
        "layers": json.dumps(list(detector.method_.layers)),
        "method_params": json.dumps(detector.method_.get_params(), default=str),
        "size": str(int(detector.size)),
        "pad": str(int(getattr(detector, "pad_", 0))),  # the input frame inside the graph
        "sigma": repr(float(detector.model_.post.sigma)),
        "reduce": str(detector.model_.post.reduce),
        "score_from": str(getattr(detector.model_.post, "score_from", "smoothed")),
        "threshold": repr(float(detector.threshold_)),
        "score_scale": repr(float(detector.score_scale_)),
        "threshold_info": json.dumps(info, default=str),
        "categories": json.dumps(list(getattr(detector, "categories_", []) or [])),
        "n_references": str(int(getattr(detector, "n_references_", 0) or 0)),
        "input_dtype": input_dtype,
        "batch": str(batch) if batch else "dynamic",
        "map_norm_images": str(int(getattr(detector, "map_norm_", 0) or 0)),
        "fusion_images": str(int(getattr(detector, "fusion_images_", 0) or 0)),
        "train": json.dumps(meta.get("train", {}) or {}, default=str),
    }


# -------------------------------------------------------------------------------- export
def export_onnx(detector: Any, out: str | os.PathLike, *, input_dtype: str = "uint8",
                batch: int | None = None, opset: int = DEFAULT_OPSET) -> Path:
    """Write the fitted ``detector``'s whole inference path as one ONNX graph with metadata.

    ``input_dtype`` is ``uint8`` or ``float32`` (values 0..255 either way); ``batch=None`` gives
    a dynamic batch axis, an integer fixes it (for runtimes that want static shapes).
    """
    import onnx

    if not hasattr(detector, "model_"):
        raise ExportError("the detector is not fitted: load or fit it before exporting")
    if not method_can_export(detector.method):
        raise ExportError(f"method {detector.method!r} declares that it cannot be exported to ONNX")
    if getattr(detector, "needs_references", False) and not getattr(detector, "n_references_", 0):
        raise ExportError(f"method {detector.method!r} scores against reference images: call "
                          "set_references (CLI: --refs) before exporting, they are baked in")
    if input_dtype not in ("uint8", "float32"):
        raise ExportError(f"input_dtype must be 'uint8' or 'float32', got {input_dtype!r}")
    if batch is not None and batch < 1:
        raise ExportError(f"batch must be >= 1 or None (dynamic), got {batch}")
    opset = check_opset(opset)
    out = check_out_path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot write the ONNX model to {out}: {exc.strerror or exc}") from None
    model = detector.model_
    if module_device(model).type != "cpu":  # traced on the CPU; the detector stays where it is
        model = copy.deepcopy(model).cpu()
    graph = _Graph(model).eval()
    s = int(detector.size)
    dtype = torch.uint8 if input_dtype == "uint8" else torch.float32
    gen = torch.Generator().manual_seed(0)
    example = torch.randint(0, 256, (batch or 2, 3, s, s), generator=gen).to(dtype)
    dynamic = None if batch else {INPUT_NAME: {0: "batch"}, OUTPUT_NAMES[0]: {0: "batch"},
                                  OUTPUT_NAMES[1]: {0: "batch"}}
    with tempfile.TemporaryDirectory(prefix="oddeye-export-") as tmp:
        raw = Path(tmp) / "graph.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer chatter about shape-to-int conversions
            try:
                torch.onnx.export(graph, (example,), str(raw), dynamo=False,
                                  opset_version=opset, input_names=[INPUT_NAME],
                                  output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic,
                                  do_constant_folding=True)
            except Exception as exc:  # an operator this opset lacks: one line, not the graph
                first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                raise ExportError(f"{detector.method} cannot be exported at opset {opset}: "
                                  f"{first}") from None
        model = onnx.load(str(raw))
    declare_output_shapes(model, s, batch)
    del model.metadata_props[:]
    for key, value in export_metadata(detector, input_dtype, batch).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = (f"oddeye {detector.method} ({detector.method_.backbone}) anomaly model: "
                        f"{INPUT_NAME} {input_dtype} (N,3,{s},{s}) 0..255 RGB, resized without "
                        f"crop -> maps (N,{s},{s}), scores (N,)")
    onnx.checker.check_model(model)
    from oddeye.io.modelfile import atomic_write

    try:  # a failed write (a full disk) leaves an earlier export at ``out`` whole
        atomic_write(out, lambda tmp: onnx.save(model, str(tmp)))
    except OSError as exc:
        raise ExportError(f"cannot write the ONNX model to {out}: {exc.strerror or exc}") from None
    return out


# ------------------------------------------------------------------------------ runtime
class OnnxDetector(PredictorMixin):
    """Predict with an exported ``.onnx`` file through onnxruntime (no torch model, same outputs).

    Same surface as ``oddeye.api.Detector`` for inference: ``predict``, ``iter_predict``,
    ``decision_function``, ``normalize_scores``, ``threshold_``, ``score_scale_``, ``method``,
    ``size``; references are baked into the graph, so ``needs_references`` is always False.
    """

    needs_references = False

    def __init__(self, path: str | os.PathLike, batch_size: int = 4, threads: int | None = None,
                 providers: Sequence[str] | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelFileError(f"{self.path}: ONNX model file not found")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=opts,
                providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelFileError(f"{self.path}: not a loadable ONNX model ({exc})") from None
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        if "oddeye_format" not in meta:
            raise ModelFileError(f"{self.path}: ONNX file has no oddeye metadata (not written by "
                                 "`oddeye export`)")
        if meta["oddeye_format"] != FORMAT_VERSION:
            raise ModelFileError(f"{self.path}: oddeye ONNX format {meta['oddeye_format']!r}, this "
                                 f"version reads {FORMAT_VERSION!r}")
        try:
            self.method = meta["method"]
            self.backbone = meta["backbone"]
            self.size = int(meta["size"])
            self.pad_ = int(meta.get("pad", 0))  # exports from before it were unframed
            self.threshold_ = float(meta["threshold"])
            self.score_scale_ = float(meta["score_scale"])
            self.threshold_info_ = json.loads(meta.get("threshold_info", "{}"))
            self.categories_ = json.loads(meta.get("categories", "[]"))
        except (KeyError, ValueError) as exc:
            raise ModelFileError(f"{self.path}: damaged oddeye metadata ({exc})") from None
        self.meta_ = meta
        self.batch_size = batch_size
        inp = self.session.get_inputs()[0]
        self._input_name = inp.name
        self._dtype = np.uint8 if inp.type == "tensor(uint8)" else np.float32
        self._fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None

    def __repr__(self) -> str:
        return f"OnnxDetector({str(self.path)!r}, method={self.method!r}, size={self.size})"

    def run_batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Maps and scores of a resized uint8 batch ``(N, 3, S, S)`` (pads a fixed-batch graph)."""
        n = x.shape[0]
        if self._fixed_batch and n != self._fixed_batch:
            maps, scores = [], []
            fb = self._fixed_batch
            for s in range(0, n, fb):
                part = x[s:s + fb]
                pad = fb - part.shape[0]
                if pad:
                    part = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)])
                m, sc = self.session.run(None, {self._input_name: part.astype(self._dtype)})
                maps.append(m[:fb - pad])
                scores.append(sc[:fb - pad])
            return np.concatenate(maps), np.concatenate(scores)
        maps, scores = self.session.run(None, {self._input_name: x.astype(self._dtype, copy=False)})
        return maps, scores

    def iter_predict(self, images: Sequence, batch_size: int | None = None,
                     progress: bool = False) -> Iterator:
        """Predict in batches (bounded memory); yields one ``Prediction`` per batch. ``images``
        as ``predict`` takes them (one array of at most 3 dimensions is one image)."""
        from oddeye.preprocess import load_rgb, resize_uint8

        check_batch_size(batch_size)
        images = image_list(images)
        bs = batch_size or self.batch_size
        for s in range(0, len(images), bs):
            raw = [load_rgb(it, name=f"images[{s + i}]") for i, it in enumerate(images[s:s + bs])]
            x = np.stack([resize_uint8(r, self.size) for r in raw]).transpose(0, 3, 1, 2)
            maps, scores = self.run_batch(np.ascontiguousarray(x))
            yield self._prediction(scores, maps, [r.shape[:2] for r in raw])

    def set_references(self, images: Sequence, progress: bool = False) -> OnnxDetector:
        """Exported graphs carry their references already; giving new ones is an error."""
        raise OddeyeError(f"{self.path}: references are fixed inside an exported model; "
                          "re-export from the .oddeye file with other --refs")


# ------------------------------------------------------------------------------- parity
def compare(detector: Any, onnx_detector: OnnxDetector, images: Sequence) -> dict[str, float]:
    """Largest absolute map and score differences between the torch and ONNX paths on ``images``."""
    a = detector.predict(list(images))
    b = onnx_detector.predict(list(images))
    flips = int((a.labels != b.labels).sum())
    return {"max_map_diff": float(np.abs(a.maps - b.maps).max()),
            "max_score_diff": float(np.abs(a.scores - b.scores).max()),
            "label_flips": float(flips), "n_images": float(len(a.scores))}


def random_images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random uint8 RGB images, for a quick parity check when no real images are given."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        out.append(np.asarray(Image.fromarray(small).resize((size, size), Image.BILINEAR)))
    return out
