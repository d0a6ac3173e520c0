"""The report's EPV, separation, optimism and TRIPOD+AI sections, read from a model file.

On the bundled demo model (a real training run on the synthetic demo cohort) and on copies of it with
the keys newer training code writes (``/work/notes/model_keys.md``, docs/tripod_ai.md).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from DoseRadiomicsLib.modelfile import MODEL_NAMES, load_model
from DoseRadiomicsLib.report_trust import (add_anchors, events_per_variable, separation_flags, slug,
                                           tripod_ai_items, trust_sections)

DEMO = Path(__file__).resolve().parents[2] / "Resources" / "DemoModel" / "model.json"


@pytest.fixture(scope="module")
def demo():
    return load_model(DEMO)


def _without_training_records(model):
    """A copy as an older model file has it: no EPV or separation records from train."""
    m = copy.deepcopy(model)
    for entry in m["models"].values():
        entry.pop("events_per_variable", None)
        entry.pop("separation", None)
    return m


def test_events_per_variable_from_the_training_evaluation(demo):
    # the evaluation recorded its own n and events for the training cohort: an independent count
    ev = demo["evaluation"]["train"]["combined"]
    smaller = min(ev["events"], ev["n"] - ev["events"])
    old = _without_training_records(demo)
    rows = {r["model"]: r for r in events_per_variable(old)}
    assert set(rows) == set(MODEL_NAMES)
    for name in MODEL_NAMES:
        k = len(demo["models"][name]["features"])
        assert rows[name]["smaller_class"] == smaller
        assert rows[name]["epv"] == (pytest.approx(smaller / k) if k else None)
        assert rows[name]["source"] == "computed by the report"
    assert rows["RDM"]["epv"] < 10  # tens of inputs for ~77 events: the hazard the issue names
    # what train records (training.py _model_entry) wins
    recorded = copy.deepcopy(old)
    recorded["models"]["RDM"]["events_per_variable"] = {"minority_class_n": 5, "inputs": 4, "epv": 1.25,
                                                        "candidates": 40, "epv_candidates": 0.125}
    row = {r["model"]: r for r in events_per_variable(recorded)}["RDM"]
    assert (row["epv"], row["inputs"], row["smaller_class"], row["source"]) == (1.25, 4, 5, "model file")


def test_separation_flags(demo):
    # without train's record, a coefficient above 15 on a [0, 1] input is flagged by the coefficient check
    old = _without_training_records(demo)
    for entry in old["models"].values():  # no large coefficient anywhere but where this test puts one
        entry["coefficients"] = [max(-1.0, min(1.0, c)) for c in entry["coefficients"]]
    rdm = old["models"]["RDM"]
    assert rdm["sources"][0] == "feature"
    rdm["coefficients"][0] = 16.5
    for name in MODEL_NAMES:
        old["evaluation"]["train"][name]["auc"] = min(old["evaluation"]["train"][name]["auc"], 0.99)
    flags = dict(separation_flags(old))
    assert list(flags) == ["RDM"] and "coefficient(s) above 15" in flags["RDM"]
    # train's record (training.py: stats.logistic.separation_diagnostics) wins over the heuristic
    m = copy.deepcopy(old)
    m["models"]["RDM"]["separation"] = {"separation": False, "reasons": []}
    m["models"]["DM_GTV"]["separation"] = {"separation": True, "n_extreme": 18,
                                           "reasons": ["18 fitted probabilities within 1e-8 of 0 or 1"]}
    m["evaluation"]["train"]["RM_GTV"]["auc"] = 1.0
    flags = dict(separation_flags(m))
    assert flags["DM_GTV"] == "18 fitted probabilities within 1e-8 of 0 or 1"
    assert "training AUC 1.000" in flags["RM_GTV"] and "RDM" not in flags
    html = "".join(trust_sections(m))
    assert "Separation warnings" in html and "18 fitted probabilities within 1e-8 of 0 or 1" in html


def test_optimism_figures_shown_when_present(demo):
    m = copy.deepcopy(demo)
    m["internal_validation"] = None
    html = "".join(trust_sections(m))
    assert "Bootstrap optimism correction: not done" in html
    # the shape resampling.bootstrap_optimism / leave_one_centre_out write (training.py internal_validation)
    m["internal_validation"] = {
        "bootstrap": {"method": "Harrell", "replicates": 200, "completed": 200, "seed": 2025, "n": 154,
                      "replicate_seeds": "SeedSequence(2025).spawn(200)",
                      "summary": {"combined": {
                          "auc": {"apparent": 0.957, "optimism": 0.0712, "corrected": 0.8858},
                          "calibration_slope": {"corrected": 0.61, "test_mean": 0.66},
                          "brier": {"apparent": 0.09, "corrected": 0.121}}}},
        "leave_one_centre_out": {"method": "each centre left out in turn", "centres": [
            {"centre": "A", "n": 60, "events": 20,
             "models": {"combined": {"auc": 0.81, "ci_low": 0.7, "ci_high": 0.92,
                                     "calibration_slope": 0.8, "brier": 0.2}}}]}}
    html = "".join(trust_sections(m))
    assert "200 of 200 replicates (seed 2025" in html
    assert re.search(r"<td>combined</td><td class=\"num\">0.957</td><td class=\"num\">0.071</td>"
                     r"<td class=\"num\">0.886</td>", html)
    assert "Leave-one-centre-out validation" in html and "0.810 (0.700–0.920)" in html
    items = {i[0]: i for i in tripod_ai_items(m)}
    assert items["12d"][2] == "reported" and items["23b"][2] == "reported"
    assert "optimism-corrected" in items["23a"][3]


def test_tripod_ai_checklist_covers_every_item(demo):
    items = tripod_ai_items(demo)
    numbers = set()
    for item, topic, status, where in items:
        assert status in ("reported", "partly", "not done", "not applicable", "manuscript")
        assert topic and where
        numbers.add(int(re.match(r"\d+", item).group()))
    assert numbers == set(range(1, 28))  # TRIPOD+AI has 27 items
    # centre heterogeneity: reported where leave-one-centre-out ran (the demo's centres), not done without it
    by = {i[0]: i for i in items}
    ran = bool((demo.get("internal_validation") or {}).get("leave_one_centre_out"))
    assert (by["12d"][2], by["23b"][2]) == (("reported",) * 2 if ran else ("not done",) * 2)
    none = copy.deepcopy(demo)
    none["internal_validation"] = None
    by = {i[0]: i for i in tripod_ai_items(none)}
    assert by["12d"][2] == "not done" and by["23b"][2] == "not done"
    h = copy.deepcopy(demo)
    h["harmonisation"] = {"method": "combat", "centres": ["A", "B"]}
    assert "centres A, B" in {i[0]: i for i in tripod_ai_items(h)}["6a"][3]


def test_checklist_links_land_on_sections(demo):
    html = add_anchors("<h2>Methods (TRIPOD)</h2><h2>Cohort</h2><h2>Events per variable and separation</h2>"
                       + "".join(trust_sections(demo)))
    ids = set(re.findall(r'id="([^"]+)"', html))
    assert slug("Methods (TRIPOD)") == "methods-tripod" and "tripod-ai-checklist" in ids
    targets = set(re.findall(r'href="#([^"]+)"', html))
    assert {"methods-tripod", "cohort", "events-per-variable-and-separation", "internal-validation"} <= targets
    # the other targets are the report's own sections (checked in the browser test)
    assert targets - ids <= {"selected-features-and-models", "model-equations", "reproducibility", "calibration",
                             "discrimination-classification-and-calibration", "decision-curves",
                             "risk-stratification", "notes", "ground-truth-synthetic-cohort"}
