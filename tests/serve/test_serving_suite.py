"""Smoke test of the serving load benchmark: a real `oddeye serve` process on loopback."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


def test_serving_suite_writes_its_section(patchcore_file, tmp_path):
    from oddeye.bench.serving_suite import run

    out = tmp_path / "RESULTS.md"
    body = run(out_path=out, model=patchcore_file, clients=(1, 4), duration=1.5,
               max_pending=1, size=64)
    text = out.read_text()
    assert "<!-- section:serving -->" in text and body.splitlines()[0] in text
    rows = [line for line in body.splitlines() if line.startswith("| 1 |")
            or line.startswith("| 4 |")]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert int(cells[1]) > 0  # successful requests
        assert float(cells[2]) > 0  # requests/s
        assert cells[6] == "0"  # no errors other than 503
    assert "Server memory (RSS)" in body and "nan" not in body.split("Server memory")[1]
