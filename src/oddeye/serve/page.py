# ruff: noqa: E501  (an HTML/CSS/JS asset kept readable, not wrapped)
"""The service's web page: plain HTML, CSS and JavaScript in one string (no build step, no CDN).

A person drops or chooses images, sees the original next to the heatmap overlay, the score on a
gauge with the threshold marked, and the verdict; the last results stay in a list to compare.
"""

INDEX_HTML = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>oddeye inspector</title>
<link rel="icon" href="data:,">
<style>
:root{--ink:#1b2430;--muted:#5d6875;--line:#dfe4ea;--bg:#f4f6f9;--card:#fff;--accent:#2457a6;
--good:#17803d;--good-bg:#e5f4ea;--bad:#b42318;--bad-bg:#fdeceb}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
background:var(--bg)}
header{display:flex;align-items:center;justify-content:space-between;gap:16px;flex-wrap:wrap;
padding:14px 28px;background:#14233a;color:#fff}
header h1{margin:0;font-size:20px;letter-spacing:.3px}
header h1 span{font-weight:400;opacity:.7;margin-left:8px;font-size:15px}
#model{font-size:13px;background:rgba(255,255,255,.1);border-radius:999px;padding:5px 14px}
main{display:grid;grid-template-columns:minmax(0,1fr) 330px;gap:22px;max-width:1280px;
margin:24px auto;padding:0 24px}
@media (max-width:900px){main{grid-template-columns:1fr}}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px}
#drop{display:flex;flex-direction:column;align-items:center;justify-content:center;gap:6px;
border:2px dashed #a9b6c6;border-radius:10px;padding:26px;text-align:center;cursor:pointer;
background:#fafcff;transition:background .15s,border-color .15s}
#drop.over{background:#eaf1fc;border-color:var(--accent)}
#drop b{font-size:17px} #drop .hint{color:var(--muted);font-size:13px}
#drop .btn{margin-top:6px;background:var(--accent);color:#fff;border-radius:6px;padding:7px 16px;
font-weight:600}
#file-input{position:absolute;width:1px;height:1px;opacity:0}
#status{min-height:22px;margin:12px 2px 0;color:var(--muted);font-size:14px}
#error{display:none;margin-top:12px;border:1px solid #f3b4ae;background:var(--bad-bg);color:var(--bad);
border-radius:8px;padding:10px 14px;font-size:14px;white-space:pre-line}
#result{display:none;margin-top:16px}
.head{display:flex;align-items:center;gap:14px;flex-wrap:wrap}
#verdict{font-weight:700;font-size:18px;letter-spacing:.6px;border-radius:8px;padding:6px 16px}
.good{background:var(--good-bg);color:var(--good)} .defective{background:var(--bad-bg);color:var(--bad)}
#meta{color:var(--muted);font-size:13px;overflow-wrap:anywhere}
.pics{display:grid;grid-template-columns:1fr 1fr;gap:14px;margin-top:14px}
figure{margin:0} figcaption{font-size:12px;color:var(--muted);margin-bottom:4px;text-transform:uppercase;
letter-spacing:.5px}
figure img{width:100%;border-radius:6px;border:1px solid var(--line);background:#e9edf2;display:block;
image-rendering:auto}
.nopreview{display:flex;align-items:center;justify-content:center;aspect-ratio:1;border-radius:6px;
border:1px dashed var(--line);color:var(--muted);font-size:13px}
.scores{display:grid;grid-template-columns:auto 1fr;gap:6px 16px;align-items:center;margin-top:16px}
.scores .k{color:var(--muted);font-size:13px} .scores .v{font-variant-numeric:tabular-nums}
.gw{display:flex;align-items:center;gap:12px} .gw .v{min-width:3.5em}
.gauge{flex:1;position:relative;height:12px;border-radius:6px;background:#e7ebf0;overflow:hidden}
.gauge i{position:absolute;left:0;top:0;bottom:0;border-radius:6px}
.gauge .mark{position:absolute;left:50%;top:-3px;bottom:-3px;width:2px;background:#14233a}
.legend{margin-top:16px;font-size:12px;color:var(--muted)}
.ramp{height:10px;border-radius:5px;margin:4px 0;background:linear-gradient(90deg,#000082 0%,
#00aaff 35%,#ffe600 50%,#ff7800 70%,#c80000 100%)}
.ramp-labels{display:flex;justify-content:space-between}
.swatch{display:inline-block;width:10px;height:10px;border:2px solid #ff00ff;border-radius:2px;
vertical-align:-1px;margin-right:4px}
aside{align-self:start}
aside h2{font-size:15px;margin:0 0 10px;display:flex;justify-content:space-between;align-items:center}
aside h2 button{font:inherit;font-size:12px;border:1px solid var(--line);background:#fff;border-radius:6px;
padding:2px 10px;cursor:pointer;color:var(--muted)}
#history{list-style:none;margin:0;padding:0;display:flex;flex-direction:column;gap:8px}
#history li{display:grid;grid-template-columns:52px 1fr auto;gap:10px;align-items:center;padding:6px;
border:1px solid var(--line);border-radius:8px;cursor:pointer}
#history li:hover,#history li.sel{border-color:var(--accent);background:#f3f7fd}
#history img{width:52px;height:52px;object-fit:cover;border-radius:4px}
#history .n{font-size:13px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
#history .s{font-size:12px;color:var(--muted);font-variant-numeric:tabular-nums}
.chip{font-size:11px;font-weight:700;border-radius:999px;padding:2px 8px;text-transform:uppercase}
#empty{color:var(--muted);font-size:13px}
footer{max-width:1280px;margin:0 auto 28px;padding:0 24px;font-size:13px;color:var(--muted)}
footer a{color:var(--accent)}
</style>
</head>
<body>
<header>
  <h1>oddeye<span>visual inspection</span></h1>
  <div id="model">loading model&hellip;</div>
</header>
<main>
  <section class="card">
    <label id="drop" for="file-input">
      <b>Drop images here</b>
      <span class="hint" id="limits">PNG, JPEG, BMP, TIFF or WebP</span>
      <span class="btn">Choose files</span>
    </label>
    <input id="file-input" type="file" accept="image/*,.tif,.tiff" multiple>
    <div id="status" role="status"></div>
    <div id="error" role="alert"></div>
    <div id="result">
      <div class="head"><span id="verdict"></span><span id="meta"></span></div>
      <div class="pics">
        <figure><figcaption>Original</figcaption><div id="original"></div></figure>
        <figure><figcaption>Anomaly overlay</figcaption><img id="overlay" alt="anomaly overlay"></figure>
      </div>
      <div class="scores">
        <span class="k">score</span><span class="v" id="score"></span>
        <span class="k" title="logistic map of the score: 0.5 at the threshold">normalised</span>
        <div class="gw"><div class="gauge" title="0.5 = threshold"><i id="bar"></i><span class="mark"></span></div><span class="v" id="norm"></span></div>
      </div>
      <div class="legend">
        <div class="ramp"></div>
        <div class="ramp-labels"><span>normal</span><span>threshold</span><span>anomalous</span></div>
        <div style="margin-top:6px"><span class="swatch"></span>outline: region above the threshold.
        Colours mean the same on every image (normalised score, 0.5 at the threshold).</div>
      </div>
    </div>
  </section>
  <aside class="card">
    <h2>Recent results <button id="clear" type="button">clear</button></h2>
    <div id="empty">No images scored yet.</div>
    <ul id="history"></ul>
  </aside>
</main>
<footer>API: <a href="v1/model">v1/model</a> &middot; <a href="v1/health">v1/health</a> &middot;
<a href="docs">OpenAPI docs</a> &middot; <a href="openapi.json">openapi.json</a></footer>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const MAX_HISTORY = 20;
let history = [];
let threshold = null;

function fmt(x) {
  if (x === null || x === undefined || !isFinite(x)) return "n/a";
  const a = Math.abs(x);
  return a !== 0 && (a < 0.001 || a >= 1e5) ? x.toExponential(3) : x.toPrecision(4);
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.style.display = message ? "block" : "none";
}

async function loadModel() {
  try {
    const r = await fetch("v1/model");
    const m = await r.json();
    threshold = m.threshold;
    $("model").textContent = `${m.method} \u00b7 ${m.backbone} \u00b7 ${m.input_size} px \u00b7 ` +
      `threshold ${fmt(m.threshold)}` + (m.file ? ` \u00b7 ${m.file}` : "");
    const lim = m.limits || {};
    if (lim.max_upload_bytes) {
      $("limits").textContent = `PNG, JPEG, BMP, TIFF or WebP \u00b7 up to ` +
        `${(lim.max_upload_bytes / 1048576).toFixed(0)} MiB per request`;
    }
  } catch (e) {
    $("model").textContent = "model info unavailable";
  }
}

function show(entry) {
  $("result").style.display = "block";
  const v = $("verdict");
  v.textContent = entry.verdict === "defective" ? "DEFECTIVE" : "GOOD";
  v.className = entry.verdict;
  $("meta").textContent = `${entry.name} \u00b7 ${entry.width}\u00d7${entry.height} px \u00b7 ` +
    `${entry.ms.toFixed(0)} ms`;
  $("overlay").src = entry.overlay;
  const orig = $("original");
  orig.replaceChildren();
  const img = document.createElement("img");
  img.alt = "original image";
  img.onerror = () => {
    const d = document.createElement("div");
    d.className = "nopreview";
    d.textContent = "this browser cannot show the original format";
    orig.replaceChildren(d);
  };
  img.src = entry.original;
  orig.appendChild(img);
  $("score").textContent = `${fmt(entry.score)}  (threshold ${fmt(entry.threshold)})`;
  const bar = $("bar");
  bar.style.width = `${Math.max(1, Math.min(100, 100 * entry.normalized))}%`;
  bar.style.background = entry.verdict === "defective" ? "var(--bad)" : "var(--good)";
  $("norm").textContent = entry.normalized.toFixed(3);
  bar.parentElement.title = `normalised score ${entry.normalized.toFixed(3)} (0.5 = threshold)`;
  document.querySelectorAll("#history li").forEach((li) => {
    li.classList.toggle("sel", li.dataset.id === String(entry.id));
  });
}

function renderHistory() {
  const ul = $("history");
  ul.replaceChildren();
  $("empty").style.display = history.length ? "none" : "block";
  for (const e of history) {
    const li = document.createElement("li");
    li.dataset.id = String(e.id);
    const img = document.createElement("img");
    img.src = e.overlay;
    img.alt = "";
    const mid = document.createElement("div");
    const n = document.createElement("div");
    n.className = "n";
    n.textContent = e.name;
    n.title = e.name;
    const s = document.createElement("div");
    s.className = "s";
    s.textContent = `score ${fmt(e.score)} \u00b7 ${e.normalized.toFixed(2)}`;
    mid.append(n, s);
    const chip = document.createElement("span");
    chip.className = `chip ${e.verdict}`;
    chip.textContent = e.verdict;
    li.append(img, mid, chip);
    li.addEventListener("click", () => show(e));
    ul.appendChild(li);
  }
}

let nextId = 1;
async function scoreFile(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  const r = await fetch("v1/predict", {method: "POST", body: form});
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) {
    const msg = body && body.error ? body.error.message : `HTTP ${r.status}`;
    throw new Error(msg);
  }
  const res = body.results[0];
  return {
    id: nextId++, name: res.filename, width: res.width, height: res.height,
    score: res.score, normalized: res.normalized_score, verdict: res.verdict,
    threshold: res.threshold, ms: body.timing_ms.total,
    overlay: `data:image/png;base64,${res.overlay_png_base64}`,
    original: URL.createObjectURL(file),
  };
}

async function handleFiles(files) {
  const list = Array.from(files || []);
  if (!list.length) return;
  showError("");
  const errors = [];
  for (let i = 0; i < list.length; i++) {
    const f = list[i];
    $("status").textContent = `Scoring ${f.name}` + (list.length > 1 ? ` (${i + 1}/${list.length})` : "") + "\u2026";
    try {
      const entry = await scoreFile(f);
      history.unshift(entry);
      for (const old of history.splice(MAX_HISTORY)) URL.revokeObjectURL(old.original);
      renderHistory();
      show(entry);
    } catch (e) {
      errors.push(e.message.startsWith(f.name) ? e.message : `${f.name}: ${e.message}`);
    }
  }
  const done = list.length - errors.length;
  $("status").textContent = `Scored ${done} image${done === 1 ? "" : "s"}` +
    (errors.length ? `; ${errors.length} could not be scored.` : ".");
  showError(errors.join("\n"));
  $("file-input").value = "";
}

const drop = $("drop");
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (ev) => {
  ev.preventDefault();
  drop.classList.add("over");
}));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
}));
drop.addEventListener("drop", (ev) => handleFiles(ev.dataTransfer.files));
window.addEventListener("dragover", (ev) => ev.preventDefault());
window.addEventListener("drop", (ev) => ev.preventDefault());
$("file-input").addEventListener("change", (ev) => handleFiles(ev.target.files));
$("clear").addEventListener("click", () => {
  for (const e of history) URL.revokeObjectURL(e.original);
  history = [];
  renderHistory();
  $("result").style.display = "none";
});
renderHistory();
loadModel();
</script>
</body>
</html>
"""
