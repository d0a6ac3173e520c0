"""`doseradiomics extract` end to end on the bundled patient: files that reopen, numbers that check."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from DoseRadiomicsLib.cli import main
from DoseRadiomicsLib.pipeline import ExtractionOptions, feature_columns, options_settings_hash

from conftest import REPO

SAMPLE = REPO / "Resources" / "SampleData" / "OpenKBP-pt_10"
ARGS = ["extract", "--ct", str(SAMPLE / "ct.nrrd"), "--dose", str(SAMPLE / "dose.nrrd"), "--dose-unit", "Gy",
        "--gtv", str(SAMPLE / "mask_PTV70.nrrd"), "--patient-id", "pt_10", "--quiet"]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("extract")
    assert main(ARGS + ["--isodose", "50", "60", "--out", str(out)]) == 0
    with open(out / "features.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return out, rows, json.loads((out / "extraction.json").read_text())


def test_one_row_with_all_features_of_four_rois(outputs):
    _, rows, record = outputs
    assert len(rows) == 1
    row = rows[0]
    feats = feature_columns(row)
    assert len(feats) == 4 * 1595
    assert {c.split("__")[0] for c in feats} == {"GTV", "GTV-heat", "50Gy-heat", "60Gy-heat"}
    assert all(np.isfinite(float(row[c])) for c in feats)
    assert row["patient_id"] == "pt_10"
    assert row["settings_hash"] == record["settings_hash"] == options_settings_hash(ExtractionOptions(isodose_gy=(50, 60)))


def test_diagnostics_equal_an_independent_numpy_computation(outputs):
    _, rows, record = outputs
    row = rows[0]
    ct = sitk.ReadImage(str(SAMPLE / "ct.nrrd"))
    dose = sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLE / "dose.nrrd")))
    gtv = sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLE / "mask_PTV70.nrrd"))) > 0
    sx, sy, _ = ct.GetSpacing()
    k = int(np.argmax(gtv.sum(axis=(1, 2))))         # same grid: no resampling needed here
    assert int(float(row["diag__slice_index"])) == k == record["cross_section"]["index"]
    assert float(row["diag__GTV_area_mm2"]) == pytest.approx(gtv[k].sum() * sx * sy)
    assert float(row["diag__50Gy-heat_area_mm2"]) == pytest.approx((dose[k] >= 50).sum() * sx * sy)
    assert float(row["diag__60Gy-heat_area_mm2"]) == pytest.approx((dose[k] >= 60).sum() * sx * sy)
    in_gtv = dose[gtv]
    assert float(row["diag__GTV_dose_mean_Gy"]) == pytest.approx(in_gtv.mean(), rel=1e-5)
    assert float(row["diag__GTV_dose_max_Gy"]) == pytest.approx(in_gtv.max(), rel=1e-6)
    # D95: the dose that 95 % of the GTV receives at least
    assert (in_gtv >= float(row["diag__GTV_D95_Gy"]) - 1e-4).mean() >= 0.95
    assert float(row["diag__GTV_V50Gy_pct"]) == pytest.approx(100 * (in_gtv >= 50).mean())
    # the mean dose of GTV-heat on the slice is a feature too: both must agree
    assert float(row["GTV-heat__original_firstorder_Mean"]) == pytest.approx(dose[k][gtv[k]].mean(), rel=1e-5)


def test_record_says_how_it_was_made(outputs):
    out, _, record = outputs
    assert record["alignment"]["gtv_dose_coverage"] == 1.0
    assert record["expected_features_per_roi"] == {"GTV": 1595, "GTV-heat": 1595, "50Gy-heat": 1595, "60Gy-heat": 1595}
    assert record["parameters"]["CT"]["setting"]["binWidth"] == 25
    assert record["parameters"]["dose"]["setting"]["binWidth"] == 0.5
    assert record["library_versions"]["pyradiomics"]
    png = (out / "slice.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    # a NRRD dose without a declared unit
    code = main([a for a in ARGS if a not in ("--dose-unit", "Gy")] + ["--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "patient pt_10" in err and "dose.nrrd" in err and "--dose-unit" in err
    assert "Traceback" not in err
    # an isodose above the plan's maximum
    code = main(ARGS + ["--isodose", "80", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "80Gy-heat is empty" in err


def test_help_speaks_to_a_physicist(capsys):
    with pytest.raises(SystemExit):
        main(["extract", "--help"])
    text = capsys.readouterr().out
    for words in ("largest", "GTV-heat", "RTSTRUCT", "Gy", "--isodose", "slice.png"):
        assert words in text
