"""A self-contained HTML report: metric table, curves, histograms, breakdown, worst cases.

Plots are matplotlib PNGs embedded as base64, so the report is one file a person can open or send.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from oddeye.evaluation import METRIC_KEYS, mean_metrics

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#1d232b;background:#fafbfc;padding:0 16px}
h1{font-size:26px;margin-bottom:4px} h2{font-size:19px;margin-top:34px;border-bottom:1px solid #dde2e8;
padding-bottom:4px} .sub{color:#5b6673;margin-top:0}
table{border-collapse:collapse;margin:10px 0;background:#fff;font-size:14px}
th,td{border:1px solid #dde2e8;padding:5px 10px;text-align:right} th{background:#eef2f6}
td:first-child,th:first-child{text-align:left} tr.mean td{font-weight:600;background:#f4f7fa}
.grid{display:flex;flex-wrap:wrap;gap:14px} .card{background:#fff;border:1px solid #dde2e8;
border-radius:6px;padding:8px;width:268px;font-size:13px} .card img{width:100%;border-radius:4px}
.bad{color:#b3261e;font-weight:600} .ok{color:#1b7a3a;font-weight:600} .plots img{max-width:100%}
.note{color:#5b6673;font-size:13px}
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _img_tag(png_b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png_b64}">'


def _array_png(arr: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def metric_table(per_category: dict[str, dict]) -> str:
    """HTML table of the metrics per category plus the mean row."""
    head = "".join(f"<th>{k}</th>" for k in METRIC_KEYS)
    rows = []
    items = list(per_category.items())
    if len(items) > 1:
        items.append(("mean", mean_metrics(per_category)))
    for name, r in items:
        cells = "".join(f"<td>{r.get(k, float('nan')):.4f}</td>" for k in METRIC_KEYS)
        cls = ' class="mean"' if name == "mean" else ""
        rows.append(f"<tr{cls}><td>{html.escape(name)}</td>{cells}<td>{r['n_images']}</td></tr>")
    return f"<table><tr><th>category</th>{head}<th>images</th></tr>{''.join(rows)}</table>"


def curves_png(details: dict[str, dict], threshold: float | None) -> str:
    """ROC, precision-recall and score histograms (good vs defective) per category."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    n = len(details)
    fig, axes = plt.subplots(n, 3, figsize=(13, 3.3 * n), squeeze=False)
    for row, (name, d) in enumerate(details.items()):
        y, s = np.asarray(d["labels"]), np.asarray(d["scores"])
        ax_roc, ax_pr, ax_h = axes[row]
        if len(np.unique(y)) == 2:
            fpr, tpr, _ = roc_curve(y, s)
            ax_roc.plot(fpr, tpr, color="#1f5fa8")
            prec, rec, _ = precision_recall_curve(y, s)
            ax_pr.plot(rec, prec, color="#a8321f")
            ax_pr.axhline(y.mean(), ls=":", color="gray", lw=1)
        ax_roc.plot([0, 1], [0, 1], ls=":", color="gray", lw=1)
        ax_roc.set(title=f"{name}: ROC (image)", xlabel="false positive rate",
                   ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02))
        ax_pr.set(title=f"{name}: precision-recall", xlabel="recall", ylabel="precision",
                  xlim=(0, 1), ylim=(0, 1.02))
        bins = np.linspace(s.min(), s.max(), 31) if s.max() > s.min() else 10
        ax_h.hist(s[y == 0], bins=bins, alpha=0.6, label="good", color="#2e8b57")
        ax_h.hist(s[y == 1], bins=bins, alpha=0.6, label="defective", color="#c0392b")
        if threshold is not None:
            ax_h.axvline(threshold, color="black", ls="--", lw=1, label="threshold")
        ax_h.set(title=f"{name}: image scores", xlabel="score", ylabel="images")
        ax_h.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def defect_breakdown(details: dict[str, dict], threshold: float) -> str:
    """Per defect type: count, mean score, share flagged at the model threshold."""
    rows = []
    for name, d in details.items():
        types = np.asarray(d["defect_types"])
        s = np.asarray(d["scores"])
        for t in sorted(set(types.tolist())):
            sel = types == t
            flagged = float((s[sel] > threshold).mean())
            word = "false alarms" if t == "good" else "detected"
            rows.append(f"<tr><td>{html.escape(name)}</td><td>{html.escape(t)}</td>"
                        f"<td>{int(sel.sum())}</td><td>{s[sel].mean():.4g}</td>"
                        f"<td>{flagged:.0%} {word}</td></tr>")
    return ("<table><tr><th>category</th><th>defect type</th><th>images</th>"
            f"<th>mean score</th><th>at threshold</th></tr>{''.join(rows)}</table>")


def case_cards(detector, paths: list, titles: list[str], truths: list[str]) -> str:
    """Overlay cards for a few images (re-scored with the same inference path)."""
    if not paths:
        return "<p class='note'>none</p>"
    from oddeye.io.images import read_image
    from oddeye.report.overlay import overlay

    images = [read_image(p) for p in paths]
    pred = detector.predict(images)
    cards = []
    for i, p in enumerate(paths):
        ov = overlay(images[i], pred.map_at_original_size(i), detector.threshold_,
                     detector.score_scale_)
        if max(ov.shape[:2]) > 512:
            from PIL import Image

            im = Image.fromarray(ov)
            im.thumbnail((512, 512))
            ov = np.asarray(im)
        verdict = ("<span class='bad'>defective</span>" if pred.labels[i]
                   else "<span class='ok'>good</span>")
        cards.append(
            f"<div class='card'>{_img_tag(_array_png(ov), str(p))}<div><b>{html.escape(titles[i])}"
            f"</b></div><div>score {pred.scores[i]:.4g} (normalised {pred.normalized_scores[i]:.2f})"
            f" &rarr; {verdict}</div><div>truth: {html.escape(truths[i])}</div>"
            f"<div class='note'>{html.escape(Path(p).name)}</div></div>")
    return f"<div class='grid'>{''.join(cards)}</div>"


def worst_cases(details: dict[str, dict], k: int = 4) -> dict[str, list[int]]:
    """Indices of the highest-scored good images and lowest-scored defective ones per category."""
    out = {}
    for name, d in details.items():
        y, s = np.asarray(d["labels"]), np.asarray(d["scores"])
        good, bad = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
        fp = good[np.argsort(-s[good])][:k].tolist()
        fn = bad[np.argsort(s[bad])][:k].tolist()
        best = bad[np.argsort(-s[bad])][:k].tolist()
        out[name] = {"fp": fp, "fn": fn, "best": best}
    return out


def write_test_report(out_dir: str | Path, detector, per_category: dict[str, dict],
                      details: dict[str, dict], title: str = "oddeye test report") -> Path:
    """Write ``index.html`` with everything a reviewer needs to judge a model.

    ``detector`` is one Detector, or a dict ``category -> Detector`` (one model per category).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dets = detector if isinstance(detector, dict) else {name: detector for name in details}
    detector = next(iter(dets.values()))
    thr = float(detector.threshold_)
    if len({id(d) for d in dets.values()}) > 1:
        thr_text = "per-category thresholds"
    else:
        thr_text = f"threshold {thr:.4g}"
    info = detector.threshold_info_
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='sub'>method <b>{html.escape(detector.method)}</b>, backbone "
        f"<b>{html.escape(str(detector.method_.backbone))}</b>, input {detector.size}px, "
        f"{thr_text} ({html.escape(str(info.get('rule', '')))}, "
        f"{html.escape(str(info.get('source', '')))})</p>",
        "<h2>Metrics</h2>", metric_table(per_category),
        "<p class='note'>Raw scores; image AUROC/AP/F1-max on image scores (max of the smoothed "
        "map), pixel metrics on maps at the model size, AUPRO integrated to FPR 0.3.</p>",
        "<h2>Curves and score distributions</h2>",
        f"<div class='plots'>{_img_tag(curves_png(details, thr if len(dets) == 1 else None), 'curves')}</div>",
        "<h2>Per defect type</h2>",
        "".join(defect_breakdown({n: d}, float(dets[n].threshold_)) for n, d in details.items()),
    ]
    for name, idx in worst_cases(details).items():
        d = details[name]

        def cards(ids, label, d=d, det=dets[name]):
            return case_cards(det, [d["paths"][i] for i in ids],
                              [label] * len(ids), [d["defect_types"][i] for i in ids])

        parts += [f"<h2>{html.escape(name)}: worst false positives (good images scored highest)</h2>",
                  cards(idx["fp"], "good, scored high"),
                  f"<h2>{html.escape(name)}: worst false negatives (defects scored lowest)</h2>",
                  cards(idx["fn"], "defect, scored low"),
                  f"<h2>{html.escape(name)}: clearest detections</h2>",
                  cards(idx["best"], "defect, scored high")]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")
    path = out / "index.html"
    path.write_text(page)
    return path
