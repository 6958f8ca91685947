"""A self-contained HTML test report: what a reviewer needs to judge a model, in one file.

Summary at the model's threshold, metric table, ROC / PR curves and score histograms (matplotlib
PNGs), a per-defect-type breakdown, and overlays of the riskiest images (highest-scored good ones,
lowest-scored defective ones, clearest detections) with the predicted region and the ground-truth
mask outlined. Every image is embedded as base64, so the report can be opened or sent as it is.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from oddeye.evaluation import METRIC_KEYS, mean_metrics

#: Column titles and explanations of the metric keys (hover text in the table).
METRIC_LABELS: dict[str, tuple[str, str]] = {
    "image_auroc": ("Image AUROC",
                    "ranking of defective above good images (1 = perfect, 0.5 = chance)"),
    "image_ap": ("Image AP", "average precision of the image scores for the defective class"),
    "image_f1max": ("Image F1-max",
                    "best F1 over all thresholds (an upper bound for one threshold)"),
    "pixel_auroc": ("Pixel AUROC", "ranking of defect pixels above normal pixels"),
    "pixel_ap": ("Pixel AP", "average precision of the pixel map for defect pixels"),
    "pixel_f1max": ("Pixel F1-max", "best pixel F1 over all thresholds"),
    "pixel_aupro": ("AUPRO@0.3", "per-region overlap integrated up to 30% false positive rate "
                                 "(normalised to 1); every defect region counts equally"),
}
GT_COLOUR = (0, 230, 64)
CARD_SIDE = 384

_CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b2430;
background:#f4f6f9}
.wrap{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px} .sub{color:#5d6875;margin:0}
h2{font-size:19px;margin:36px 0 10px;padding-bottom:5px;border-bottom:1px solid #dfe4ea}
h3{font-size:16px;margin:22px 0 8px}
nav{margin:14px 0 0;font-size:13px} nav a{color:#2457a6;margin-right:14px;text-decoration:none}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;margin-top:18px}
.tile{background:#fff;border:1px solid #dfe4ea;border-radius:10px;padding:12px 14px}
.tile .k{font-size:12px;color:#5d6875;text-transform:uppercase;letter-spacing:.4px}
.tile .v{font-size:24px;font-weight:650;font-variant-numeric:tabular-nums}
.tile .d{font-size:12px;color:#5d6875}
table{border-collapse:collapse;margin:8px 0;background:#fff;font-size:14px}
th,td{border:1px solid #dfe4ea;padding:5px 10px;text-align:right;font-variant-numeric:tabular-nums}
th{background:#eef2f6;font-weight:600}
th[title]{cursor:help;text-decoration:underline dotted #98a2ae}
td.t,th.t{text-align:left} tr.mean td{font-weight:650;background:#f4f7fa}
.bar{display:inline-block;width:70px;height:8px;background:#e7ebf0;border-radius:4px;margin-right:8px;
vertical-align:middle;overflow:hidden} .bar i{display:block;height:100%}
.plots img{max-width:100%;background:#fff;border:1px solid #dfe4ea;border-radius:8px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:14px}
.card{background:#fff;border:1px solid #dfe4ea;border-radius:8px;padding:8px;font-size:13px}
.card img{width:100%;border-radius:4px;display:block}
.swap{position:relative} .swap img.orig{position:absolute;inset:0;opacity:0;transition:opacity .12s}
.swap:hover img.orig{opacity:1}
.card .row{display:flex;justify-content:space-between;align-items:center;gap:6px;margin-top:6px}
.badge{font-size:11px;font-weight:700;border-radius:999px;padding:2px 8px;text-transform:uppercase}
.b-err{background:#fdeceb;color:#b42318} .b-ok{background:#e5f4ea;color:#17803d}
.muted{color:#5d6875} .note{color:#5d6875;font-size:13px;margin:6px 0}
.path{color:#5d6875;font-size:12px;overflow-wrap:anywhere}
details{background:#fff;border:1px solid #dfe4ea;border-radius:10px;padding:4px 16px 14px;
margin:14px 0}
summary{cursor:pointer;font-weight:650;font-size:17px;padding:10px 0}
.legend{display:flex;flex-wrap:wrap;gap:6px 22px;align-items:center;font-size:13px;color:#5d6875}
.ramp{display:inline-block;width:160px;height:10px;border-radius:5px;vertical-align:middle;
background:linear-gradient(90deg,#000082 0%,#00aaff 35%,#ffe600 50%,#ff7800 70%,#c80000 100%)}
.sw{display:inline-block;width:12px;height:12px;border:3px solid;border-radius:2px;
vertical-align:-2px;margin-right:5px}
"""


# --------------------------------------------------------------------------------- images
def _png(fig) -> str:
    """Base64 PNG of a matplotlib figure (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _img_tag(b64: str, alt: str, mime: str = "image/png", cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<img{klass} alt="{html.escape(alt)}" src="data:{mime};base64,{b64}">'


def _jpeg(arr: np.ndarray, max_side: int = CARD_SIDE) -> str:
    """Base64 JPEG of a uint8 RGB array, downscaled to ``max_side`` (keeps the report small)."""
    from PIL import Image

    im = Image.fromarray(arr)
    im.thumbnail((max_side, max_side), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return base64.b64encode(buf.getvalue()).decode()


# ------------------------------------------------------------------------- small numbers
def threshold_counts(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, int]:
    """Confusion counts at ``threshold`` (score > threshold means defective)."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels).astype(int)
    flagged = s > threshold
    return {"tp": int((flagged & (y == 1)).sum()), "fn": int((~flagged & (y == 1)).sum()),
            "fp": int((flagged & (y == 0)).sum()), "tn": int((~flagged & (y == 0)).sum())}


def threshold_point(counts: dict[str, int]) -> tuple[float, float, float]:
    """(false positive rate, recall, precision) at a threshold from ``threshold_counts``. With
    nothing flagged precision is 0/0; it is drawn as 1, where the precision-recall curve starts
    (scikit-learn's convention), not at (0, 0), which would read as "every flag wrong"."""
    c = counts
    flagged = c["tp"] + c["fp"]
    return (c["fp"] / max(1, c["fp"] + c["tn"]), c["tp"] / max(1, c["tp"] + c["fn"]),
            c["tp"] / flagged if flagged else 1.0)


def _over(per_category: dict[str, dict], key: str) -> str:
    """What a mean tile averages: every category, or only those where ``key`` is defined (a
    category with only good or only defective test images has no AUROC)."""
    values = [r.get(key) for r in per_category.values()]
    defined = [v for v in values if v is not None and v == v]  # NaN != NaN
    if len(defined) == len(values):
        return "mean over categories" if len(values) > 1 else "of the category"
    return f"mean over the {len(defined)} of {len(values)} categories where it is defined"


def _pct(num: int, den: int) -> str:
    """A share as a whole percentage, halves rounded up (1 of 8 is 13%, not round-half-even's
    12%)."""
    return f"{int(100 * num / den + 0.5)}%" if den else "n/a"


def _fmt(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if f != f else f"{f:.3f}"


# ------------------------------------------------------------------------------ sections
def metric_table(per_category: dict[str, dict], counts: dict[str, dict] | None = None) -> str:
    """HTML table of the metrics per category plus the mean row; detection counts if given."""
    head = "".join(f'<th title="{html.escape(METRIC_LABELS.get(k, (k, k))[1])}">'
                   f"{html.escape(METRIC_LABELS.get(k, (k, ''))[0])}</th>" for k in METRIC_KEYS)
    extra = ("<th title='defective images above the threshold'>detected</th>"
             "<th title='good images above the threshold'>false alarms</th>") if counts else ""
    rows = []
    items: list[tuple[str | None, dict]] = list(per_category.items())
    if len(items) > 1:  # None marks the summary row: a category may be named "mean"
        items.append((None, mean_metrics(per_category)))
    total = {"tp": 0, "fn": 0, "fp": 0, "tn": 0}
    for c in (counts or {}).values():
        for k in total:
            total[k] += c[k]
    for name, r in items:
        cells = "".join(f"<td>{_fmt(r.get(k))}</td>" for k in METRIC_KEYS)
        if counts:
            c = total if name is None else counts.get(name)
            if c is not None:
                cells += (f"<td>{c['tp']}/{c['tp'] + c['fn']}</td>"
                          f"<td>{c['fp']}/{c['fp'] + c['tn']}</td>")
            else:
                cells += "<td></td><td></td>"
        ms = r.get("ms_per_image")
        cells += f"<td>{r.get('n_images', '')}</td><td>{'' if ms is None else f'{ms:.1f}'}</td>"
        label = ("mean · total" if counts else "mean") if name is None else name
        cls = ' class="mean"' if name is None else ""
        rows.append(f"<tr{cls}><td class='t'>{html.escape(label)}</td>{cells}</tr>")
    return (f"<table><tr><th class='t'>category</th>{head}{extra}<th>images</th>"
            f"<th title='model time per image during the test'>ms/image</th></tr>"
            f"{''.join(rows)}</table>")


def curves_png(details: dict[str, dict], thresholds: dict[str, float] | float | None) -> str:
    """ROC, precision-recall and score histograms (good vs defective) per category, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    n = len(details)
    fig, axes = plt.subplots(n, 3, figsize=(13, 3.4 * n), squeeze=False)
    for row, (category, d) in enumerate(details.items()):
        # matplotlib reads $...$ in a title as a formula: a category name is shown as written
        name = category.replace("$", r"\$")
        y, s = np.asarray(d["labels"]).astype(int), np.asarray(d["scores"], dtype=float)
        thr = thresholds.get(category) if isinstance(thresholds, dict) else thresholds
        ax_roc, ax_pr, ax_h = axes[row]
        if len(np.unique(y)) == 2:
            fpr, tpr, _ = roc_curve(y, s)
            ax_roc.plot(fpr, tpr, color="#1f5fa8", lw=1.8, label=f"AUROC {roc_auc_score(y, s):.3f}")
            prec, rec, _ = precision_recall_curve(y, s)
            ax_pr.plot(rec, prec, color="#a8321f", lw=1.8,
                       label=f"AP {average_precision_score(y, s):.3f}")
            ax_pr.axhline(y.mean(), ls=":", color="gray", lw=1, label="chance")
            if thr is not None:
                fp_rate, recall, precision = threshold_point(threshold_counts(s, y, thr))
                ax_roc.plot([fp_rate], [recall], "o", color="black", ms=5, label="at threshold")
                ax_pr.plot([recall], [precision], "o", color="black", ms=5, label="at threshold")
        else:
            for ax in (ax_roc, ax_pr):
                ax.text(0.5, 0.5, "needs good and defective images", ha="center", va="center",
                        color="gray", transform=ax.transAxes)
        ax_roc.plot([0, 1], [0, 1], ls=":", color="gray", lw=1, label="chance")
        ax_roc.set(title=f"{name}: ROC (image level)", xlabel="false positive rate",
                   ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02))
        ax_pr.set(title=f"{name}: precision-recall", xlabel="recall", ylabel="precision",
                  xlim=(0, 1), ylim=(0, 1.02))
        ax_roc.legend(fontsize=8, loc="lower right")
        if len(np.unique(y)) == 2:
            ax_pr.legend(fontsize=8, loc="lower left")
        lo, hi = float(np.min(s)), float(np.max(s))
        if thr is not None:
            lo, hi = min(lo, thr), max(hi, thr)
        bins = np.linspace(lo, hi, 31) if hi > lo else 10
        ax_h.hist(s[y == 0], bins=bins, alpha=0.65, label=f"good ({int((y == 0).sum())})",
                  color="#2e8b57")
        ax_h.hist(s[y == 1], bins=bins, alpha=0.65, label=f"defective ({int((y == 1).sum())})",
                  color="#c0392b")
        if thr is not None:
            ax_h.axvline(thr, color="black", ls="--", lw=1.2, label=f"threshold {thr:.3g}")
        ax_h.set(title=f"{name}: image scores", xlabel="image score (higher = more anomalous)",
                 ylabel="images")
        ax_h.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def defect_breakdown(details: dict[str, dict], thresholds: dict[str, float]) -> str:
    """One table: per category and defect type, count, scores, the share flagged and the image
    AUROC of that type against the category's good images."""
    from oddeye.evaluation import auroc_by_type

    rows = []
    for name, d in details.items():
        types = np.asarray(d["defect_types"])
        s = np.asarray(d["scores"], dtype=float)
        thr = thresholds[name]
        by_type = auroc_by_type(s, np.asarray(d["labels"]), types)
        order = sorted(set(types.tolist()), key=lambda t: (t != "good", t))
        for t in order:
            sel = types == t
            flagged = float((s[sel] > thr).mean())
            if t == "good":
                what, colour = "false alarms", "#b42318" if flagged > 0 else "#17803d"
            else:
                what, colour = "detected", "#17803d" if flagged >= 0.999 else "#c77c02"
            bar = (f"<span class='bar'><i style='width:{100 * flagged:.0f}%;background:{colour}'>"
                   f"</i></span>")
            rows.append(f"<tr><td class='t'>{html.escape(name)}</td><td class='t'>"
                        f"{html.escape(t)}</td><td>{int(sel.sum())}</td>"
                        f"<td>{np.median(s[sel]):.4g}</td><td>{s[sel].min():.4g} – "
                        f"{s[sel].max():.4g}</td><td class='t'>{bar}{flagged:.0%} {what}</td>"
                        f"<td>{_fmt(by_type.get(t)) if t != 'good' else ''}</td></tr>")
    return ("<table><tr><th class='t'>category</th><th class='t'>defect type</th><th>images</th>"
            "<th>median score</th><th>score range</th><th class='t'>at the threshold</th>"
            "<th title='image AUROC of this defect type against the good images'>"
            "AUROC vs good</th></tr>"
            f"{''.join(rows)}</table>")


def worst_cases(details: dict[str, dict], k: int = 4) -> dict[str, dict[str, list[int]]]:
    """Per category: highest-scored good images (``fp``), lowest-scored defective ones (``fn``)
    and highest-scored defective ones (``best``), as indices into the details lists."""
    out = {}
    for name, d in details.items():
        y, s = np.asarray(d["labels"]), np.asarray(d["scores"], dtype=float)
        good, bad = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
        fp = good[np.argsort(-s[good], kind="stable")][:k].tolist()
        fn = bad[np.argsort(s[bad], kind="stable")][:k].tolist()
        best = [i for i in bad[np.argsort(-s[bad], kind="stable")].tolist() if i not in fn][:k]
        out[name] = {"fp": fp, "fn": fn, "best": best}
    return out


def ground_truth_mask(path: str | Path, details: dict, index: int,
                      shape: tuple[int, int]) -> np.ndarray | None:
    """The defect mask of an image: ``details["mask_paths"]`` when given, else the MVTec layout
    (``<category>/ground_truth/<defect>/<stem>_mask.png``); None when there is none."""
    from oddeye.data.mvtec import find_mask
    from oddeye.io.images import list_images, read_mask

    mask_path = None
    if details.get("mask_paths") is not None:
        mask_path = details["mask_paths"][index]
    else:
        p = Path(path)
        gt = p.parent.parent.parent / "ground_truth" / p.parent.name
        if gt.is_dir():
            mask_path = find_mask(p, {q.name.lower(): q for q in list_images(gt)})
    if mask_path is None:
        return None
    try:
        return read_mask(mask_path, shape)
    except Exception:  # a broken or mis-sized mask only loses the outline in the report
        return None


def _short_path(p: str | Path) -> str:
    parts = Path(p).parts
    return "/".join(parts[-3:])


def case_cards(detector, details: dict, indices: list[int], kind: str,
               empty: str = "no images of this kind in the test split") -> str:
    """Overlay cards for images ``indices`` of one category, re-scored on the same inference path.

    ``kind`` is ``good`` (a flagged image is a false alarm) or ``defect`` (an unflagged one is a
    miss). The predicted region is outlined in magenta, the ground-truth mask in green.
    """
    if not indices:
        return f"<p class='note'>{html.escape(empty)}</p>"
    from oddeye.io.images import read_image
    from oddeye.report.overlay import outline, overlay

    paths = [details["paths"][i] for i in indices]
    images = [read_image(p) for p in paths]
    pred = detector.predict(images)
    thr = float(detector.threshold_)
    cards = []
    for j, (i, p) in enumerate(zip(indices, paths, strict=True)):
        ov = overlay(images[j], pred.map_at_original_size(j), thr, detector.score_scale_)
        mask = ground_truth_mask(p, details, i, images[j].shape[:2])
        if mask is not None and mask.any():
            ov[outline(mask, width=max(1, min(ov.shape[:2]) // 150))] = GT_COLOUR
        flagged = bool(pred.labels[j])
        if kind == "good":
            badge = ("<span class='badge b-err'>false alarm</span>" if flagged
                     else "<span class='badge b-ok'>correct: good</span>")
        else:
            badge = ("<span class='badge b-ok'>detected</span>" if flagged
                     else "<span class='badge b-err'>missed</span>")
        truth = details["defect_types"][i]
        short = _short_path(p)
        orig = _img_tag(_jpeg(images[j]), "original", "image/jpeg", cls="orig")
        cards.append(
            f"<div class='card'><div class='swap'>{_img_tag(_jpeg(ov), short, 'image/jpeg')}"
            f"{orig}</div>"
            f"<div class='row'><b>{html.escape(str(truth))}</b>{badge}</div>"
            f"<div class='row'><span>score <b>{pred.scores[j]:.4g}</b> "
            f"<span class='muted'>(threshold {thr:.4g})</span></span></div>"
            f"<div class='path'>{html.escape(_short_path(p))}</div></div>")
    return f"<div class='grid'>{''.join(cards)}</div>"


_LEGEND = (
    "<div class='legend'><span><span class='ramp'></span> normalised score: blue normal, yellow at "
    "the threshold, red anomalous (same scale on every image)</span>"
    "<span><span class='sw' style='border-color:#ff00ff'></span>predicted defect region</span>"
    "<span><span class='sw' style='border-color:rgb(0,230,64)'></span>ground-truth mask</span>"
    "<span>hover an image to see it without the overlay</span></div>")


def _anchor(name: str) -> str:
    return "cat-" + "".join(ch if ch.isalnum() else "-" for ch in name)


def category_anchors(names: list[str]) -> dict[str, str]:
    """A unique HTML id per category: ``cat-`` and the name with non-alphanumerics as ``-``, and
    a ``-2``, ``-3``, ... suffix where two names would give the same id ("a b" and "a-b"), so
    every nav link jumps to its own section."""
    taken: set[str] = set()
    out: dict[str, str] = {}
    for name in names:
        base = anchor = _anchor(name)
        k = 2
        while anchor in taken:
            anchor, k = f"{base}-{k}", k + 1
        taken.add(anchor)
        out[name] = anchor
    return out


def fit_choice_lines(dets: dict, per_model: bool) -> list[str]:
    """One line per distinct model: what its fit chose from the data, named by category when
    the categories have their own models (``per_model``)."""
    seen, lines = set(), []
    for name, det in dets.items():
        if id(det) in seen:
            continue
        seen.add(id(det))
        text = getattr(det, "fit_choices_", "")
        if text:
            lines.append(f"{name}: {text}" if per_model else f"fit: {text}")
    return lines


def write_test_report(out_dir: str | Path, detector, per_category: dict[str, dict],
                      details: dict[str, dict], title: str = "oddeye test report",
                      notes: Sequence[str] = (),
                      references: dict[str, Sequence] | None = None) -> Path:
    """Write ``index.html`` with everything a reviewer needs to judge a model; returns its path.

    ``notes``: lines on what the figures leave out or rest on (labelled training defects
    removed from the test split, unreadable files skipped, the reference shots drawn), shown
    under the title, where a reader of the shared report sees them. ``references``: for a
    reference-shot model, each category's shots, set again before its cards are re-scored (the
    evaluation loop leaves the last category's loaded).

    ``detector`` is one Detector, or a dict ``category -> Detector`` (one model per category).
    ``details[category]`` holds ``paths, scores, labels, defect_types`` (and optionally
    ``mask_paths``) as filled by ``oddeye.evaluation.evaluate_category``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dets = detector if isinstance(detector, dict) else {name: detector for name in details}
    first = next(iter(dets.values()))
    thresholds = {n: float(dets[n].threshold_) for n in details}
    counts = {n: threshold_counts(d["scores"], d["labels"], thresholds[n])
              for n, d in details.items()}
    total = {k: sum(c[k] for c in counts.values()) for k in ("tp", "fn", "fp", "tn")}
    mean = mean_metrics(per_category)
    per_model = len({id(d) for d in dets.values()}) > 1
    info = getattr(first, "threshold_info_", {}) or {}
    thr_text = ("one model and threshold per category" if per_model
                else f"threshold {thresholds[next(iter(thresholds))]:.4g}")
    rule = ", ".join(str(x) for x in (info.get("rule"), info.get("source")) if x)
    from oddeye import __version__

    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    post = getattr(getattr(first, "model_", None), "post", None)
    reduce = "top-k mean" if getattr(post, "reduce", "max") == "topk" else "maximum"
    score_text = (f"{reduce} of the raw feature-level map" if getattr(post, "score_from", "")
                  == "raw" else f"{reduce} of the smoothed map")
    backbone = getattr(getattr(first, "method_", None), "backbone", None) or getattr(
        first, "backbone", "?")
    pad = getattr(first, "pad_", 0)  # the backbone's input frame (docs/backbones.md)
    n_def, n_good = total["tp"] + total["fn"], total["fp"] + total["tn"]
    tiles = [
        ("images tested", f"{n_good + n_def}", f"{n_good} good, {n_def} defective"),
        ("defects detected", _pct(total["tp"], n_def),
         f"{total['tp']} of {n_def} at the model's threshold"),
        ("false alarms", _pct(total["fp"], n_good),
         f"{total['fp']} of {n_good} good images flagged"),
        ("image AUROC", _fmt(mean.get("image_auroc")), _over(per_category, "image_auroc")),
        ("pixel AUROC", _fmt(mean.get("pixel_auroc")), _over(per_category, "pixel_auroc")),
        ("AUPRO@0.3", _fmt(mean.get("pixel_aupro")), _over(per_category, "pixel_aupro")),
    ]
    tile_html = "".join(f"<div class='tile'><div class='k'>{html.escape(k)}</div><div class='v'>"
                        f"{html.escape(v)}</div><div class='d'>{html.escape(d)}</div></div>"
                        for k, v, d in tiles)
    nav = ["<a href='#metrics'>metrics</a>", "<a href='#curves'>curves</a>",
           "<a href='#defects'>per defect type</a>"]
    anchors = category_anchors(list(details))
    nav += [f"<a href='#{anchors[n]}'>{html.escape(n)}</a>" for n in details]
    parts = [
        "<div class='wrap'>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='sub'>method <b>{html.escape(str(first.method))}</b> · backbone "
        f"<b>{html.escape(str(backbone))}</b> · input {first.size}×{first.size} px"
        + (f" in a {pad}-px frame" if pad else "") + " · "
        f"{html.escape(thr_text)}{' (' + html.escape(rule) + ')' if rule else ''}</p>",
        *[f"<p class='sub' style='font-size:13px'>{html.escape(c)}</p>"
          for c in fit_choice_lines(dets, per_model)],
        *[f"<p class='sub' style='font-size:13px'><b>note:</b> {html.escape(n)}</p>"
          for n in notes],
        f"<p class='sub' style='font-size:13px'>generated {stamp} by oddeye {__version__}</p>",
        f"<nav>{''.join(nav)}</nav>",
        f"<div class='tiles'>{tile_html}</div>",
        "<h2 id='metrics'>Metrics</h2>", metric_table(per_category, counts),
        "<p class='note'>Threshold-free metrics on raw scores (hover a column title for its "
        f"meaning): image metrics on the image score ({score_text}), pixel metrics "
        "on maps at the model size, AUPRO integrated to a false positive rate of 0.3. "
        "<i>detected</i> and <i>false alarms</i> use the model's own threshold, as in "
        "production.</p>",
        "<h2 id='curves'>Curves and score distributions</h2>",
        "<p class='note'>Left: ROC; middle: precision-recall; right: image scores of good and "
        "defective test images. The black dot and dashed line mark the model's threshold; good "
        "and defective scores that overlap are the errors you will see in production.</p>",
        f"<div class='plots'>{_img_tag(curves_png(details, thresholds), 'curves')}</div>",
        "<h2 id='defects'>Per defect type</h2>", defect_breakdown(details, thresholds),
        "<h2>Images to look at</h2>",
        "<p class='note'>Per category: the good images the model scored highest (false alarms "
        "when above the threshold), the defective images it scored lowest (misses when below), "
        "and its clearest detections.</p>", _LEGEND,
    ]
    cases = worst_cases(details)
    for n, (name, idx) in enumerate(cases.items()):
        d, det = details[name], dets[name]
        if references and name in references:
            det.set_references(list(references[name]))
        c = counts[name]
        summary = (f"{html.escape(name)} "
                   "<span class='muted' style='font-weight:400;font-size:14px'>"
                   f"· {c['tp']}/{c['tp'] + c['fn']} defects detected, {c['fp']}/"
                   f"{c['fp'] + c['tn']} false alarms</span>")
        opened = " open" if len(cases) <= 3 or n == 0 else ""
        parts += [
            f"<details id='{anchors[name]}'{opened}><summary>{summary}</summary>",
            "<h3>Good images scored highest</h3>", case_cards(det, d, idx["fp"], "good"),
            "<h3>Defective images scored lowest</h3>", case_cards(det, d, idx["fn"], "defect"),
            "<h3>Clearest detections</h3>",
            case_cards(det, d, idx["best"], "defect",
                       empty=("every defective image is shown above" if idx["fn"] else
                              "no defective images in the test split")),
            "</details>",
        ]
    parts.append("</div>")
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
            f"<body>{''.join(parts)}</body></html>")
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
