"""Benchmark suites; each writes its own section of benchmarks/RESULTS.md.

``SUITES`` maps a suite name to ``module:function``; the function takes keyword options and
returns the markdown it wrote.
"""

SUITES: dict[str, str] = {
    "metrics": "oddeye.bench.metrics_suite:run",
    "detection": "oddeye.bench.detection_suite:run",
    "adbench": "oddeye.bench.adbench_suite:run",
    "coreset": "oddeye.bench.coreset_suite:run",
    "selection": "oddeye.bench.selection_suite:run",
    "anoonly-image": "oddeye.bench.anoonly_image_suite:run",
    "rd4ad": "oddeye.bench.rd4ad_suite:run",
    "resad": "oddeye.bench.resad_suite:run",
    "onnx": "oddeye.bench.onnx_suite:run",
    "serving": "oddeye.bench.serving_suite:run",
}
