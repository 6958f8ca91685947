"""The fusion selection script's plan: which features each candidate gets, which section."""

from tests.bench.scripts import load_script


def test_feature_choice_reaches_both_patchcore_candidates_and_names_the_section():
    mod = load_script("patchcore_fusion_selection")
    cands, section = mod.plan("patchcore", "cosine")
    assert section == "selection-patchcore-fusion-built-cosine"
    assert [c["cosine"] for c in cands.values()] == [True, True]
    assert all(c["holdout"] == 0.1 for c in cands.values())
    cands, section = mod.plan("patchcore", "raw")
    assert section == "selection-patchcore-fusion-built"  # the raw section the docs quote
    assert [c["cosine"] for c in cands.values()] == [False, False]
    cands, section = mod.plan("padim", "cosine")
    assert section == "selection-padim-fusion-built"
    assert all("cosine" not in c for c in cands.values())
    assert mod.CANDIDATES["mobilenet_v2 (default)"] == {"holdout": 0.1}  # not mutated
