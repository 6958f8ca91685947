"""The test-split study script: raw-era studies rerun on the cosine default get their own
section and run names; a study that names ``cosine`` keeps its section."""

from tests.bench.scripts import load_script


def test_raw_era_studies_write_cosine_sections_and_never_reuse_raw_runs():
    mod = load_script("patchcore_chunk_order")
    title, what, _, variants, section = mod.study("grid")
    assert section == "patchcore-grid-cosine" and "cosine=True" in what
    assert variants == {"first (default)": {"cosine": True},
                        "last": {"grid": "last", "cosine": True}}
    assert mod.STUDIES["grid"][3]["last"] == {"grid": "last"}  # the table itself is untouched
    _, _, _, variants, section = mod.study("cosine")
    assert section == "patchcore-cosine"
    assert variants == {"raw (before)": {"cosine": False}, "cosine (default)": {"cosine": True}}
