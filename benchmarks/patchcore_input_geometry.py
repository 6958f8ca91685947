"""Diagnosis on a test split (chooses nothing): PatchCore with other input geometry or a
position term, outside the Detector, so each variant changes one thing.

Modes: ``square`` (the protocol: every image to 256 x 256), ``fixed`` (one scale factor for all
images, from the median training-image area, aspect ratio kept), ``posW`` (square, plus each
patch's position times W; ``oddeye.methods.patchcore.with_position``), ``noaa`` (square, but
bilinear without antialiasing, as OpenCV resizes: small defects keep their contrast),
``block10`` (square, but MobileNetV2's 64-channel ``features[10]`` output as the stride-16 tap
instead of the 96-channel end of the stride-16 stage), ``crop`` (square, then the central
224 x 224, the common MVTec protocol), ``frameP`` / ``replicateP`` / ``reflectP`` (square, the
normalised image padded by P pixels of the mean colour / its edge pixels / its mirror image
before the backbone, the taps cropped back to the image's cells and then aggregated; ``frameP``
is what ``FeatureExtractor(pad=P)`` and PatchCore do), and the same with the suffix ``agg``
(``frame16agg``: the 3 x 3 aggregation runs over the frame's cells too, and the aggregated map
is cropped; the order of the first diagnosis, and since the thirteenth session what the
library does), ``zeropool`` (square, no frame, but the 3 x 3 average counts the zero padding as
cells, ``count_include_pad=True``: the default of ``F.avg_pool2d`` / ``nn.AvgPool2d``, and what
an unfold-then-average aggregation does; border embeddings shrink towards zero). Modes combine
where they make sense (``crop_pos3``).
Bank: 10k patches by the library's coreset; image score: the largest raw patch distance; image
AUROC overall and per defect type, then the same without the outermost ring of cells and the
share of good / defective images whose largest patch lies in that ring. Run:
.venv/bin/python benchmarks/patchcore_input_geometry.py magnetic_tile MODE (numbers quoted in
docs/methods.md, "Position term", and docs/backbones.md, "Input border").
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from oddeye.backbones.features import FeatureExtractor
from oddeye.backbones.registry import create_backbone
from oddeye.bench.detection_suite import DATASETS, shared_root
from oddeye.io.images import read_image
from oddeye.methods.coreset import coreset_indices
from oddeye.methods.neighbours import nearest_distance
from oddeye.methods.patchcore import aggregate, flat_patches, with_position
from oddeye.metrics.functional import auroc
from oddeye.preprocess import Normalize


def main(dataset: str, mode: str) -> None:
    torch.set_num_threads(2)
    root = shared_root() / DATASETS[dataset]
    train = sorted((root / "train" / "good").iterdir())
    tests = sorted(p for p in (root / "test").rglob("*") if p.is_file())
    fx, norm = FeatureExtractor("mobilenet_v2", ["s8", "s16"]), Normalize()
    if mode == "block10":  # s8 as usual, s16 = the output of features[7:11] (64 channels)
        net = create_backbone("mobilenet_v2").eval()

        def fx(x: torch.Tensor) -> dict[str, torch.Tensor]:
            s8 = net.features[:7](x)
            return {"s8": s8, "s16": net.features[7:11](s8)}
    factor = 256 / np.sqrt(np.median([np.prod(Image.open(p).size) for p in train]))
    weight = float(mode.split("pos")[1]) if "pos" in mode else 0.0
    framing = re.match(r"(frame|replicate|reflect)(\d+)", mode)
    after = mode.endswith("agg")
    pad_mode, pad = ({"frame": "constant"}.get(framing[1], framing[1]), int(framing[2])
                     ) if framing else ("constant", 0)

    def embed(path: Path) -> torch.Tensor:
        img = read_image(path)
        h, w = img.shape[:2]
        size = ((max(32, round(w * factor)), max(32, round(h * factor))) if mode == "fixed"
                else (256, 256))
        if mode.startswith("noaa"):  # bilinear without antialiasing (as cv2.INTER_LINEAR)
            t = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float()
            x = F.interpolate(t, size=(256, 256), mode="bilinear", align_corners=False,
                              antialias=False).round().clamp(0, 255).to(torch.uint8)
        else:
            x = torch.from_numpy(np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))
                                 .copy()).permute(2, 0, 1)[None]
        if mode.startswith("crop"):
            x = x[..., 16:240, 16:240]
        with torch.inference_mode():
            x = norm(x)
            if pad:  # pad by whole stride-16 cells
                x = F.pad(x, (pad,) * 4, mode=pad_mode)
            feats = fx(x)
            if pad and not after:  # taps cut back to the image's cells, then aggregated
                feats = {k: v[..., pad // s:v.shape[-2] - pad // s, pad // s:v.shape[-1] - pad // s]
                         for (k, v), s in zip(feats.items(), (8, 16), strict=True)}
            if mode.startswith("zeropool"):  # zeros counted in the border cells' average
                feats = {k: F.avg_pool2d(v, 3, stride=1, padding=1, count_include_pad=True)
                         for k, v in feats.items()}
                emb = aggregate(feats, ["s8", "s16"], 1, True)
            else:
                emb = aggregate(feats, ["s8", "s16"], 3, True)
            if pad and after:  # aggregated over the frame too, then cut back
                c = pad // 8
                emb = emb[..., c:emb.shape[-2] - c, c:emb.shape[-1] - c]
        return with_position(emb, weight) if weight else emb

    t0 = time.perf_counter()
    patches = torch.cat([flat_patches(embed(p)) for p in train])
    bank = patches[coreset_indices(patches, 10_000, patches.shape[1])].contiguous()
    sq = (bank * bank).sum(1)
    maps = []
    for p in tests:
        emb = embed(p)
        maps.append(nearest_distance(flat_patches(emb), bank, sq).reshape(emb.shape[-2:]))
    scores = np.array([float(m.max()) for m in maps])
    inner = np.array([float(m[1:-1, 1:-1].max()) for m in maps])
    on_ring = np.array([float(m.max()) > float(m[1:-1, 1:-1].max()) for m in maps])
    kinds = np.array([p.parent.name for p in tests])
    labels = kinds != "good"
    print(f"{dataset} {mode}: image AUROC {auroc(scores, labels):.3f} "
          f"({time.perf_counter() - t0:.0f} s; scale factor for 'fixed' {factor:.3f})")
    for kind in sorted(set(kinds) - {"good"}):
        keep = (kinds == kind) | ~labels
        print(f"  {kind}: {auroc(scores[keep], labels[keep]):.3f}")
    print(f"  without the outermost ring of cells: {auroc(inner, labels):.3f}; largest patch "
          f"in that ring: good {on_ring[~labels].mean():.2f}, defective "
          f"{on_ring[labels].mean():.2f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
