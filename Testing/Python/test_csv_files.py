"""Every CSV the project reads takes a spreadsheet's copy (BOM, CRLF) and says which encoding it needs;
every CSV it writes keeps cells a spreadsheet would run as formulas (= + - @ first) from running,
and reads its own cells back unchanged (issue 12, Build 3).

Readers: the manifest, a clinical file (manifest --clinical), features.csv (train, predict,
validate), failures.csv (cohort reruns), a colour table (extract-dosemap). Writers: features.csv,
manifest.csv and unmatched.csv (manifest --dicom-root), failures.csv, predictions.csv (train,
validate).
"""

from __future__ import annotations

import csv

import pandas as pd
import pytest

from DoseRadiomicsLib import cohort
from DoseRadiomicsLib.dosemap_colour import load_colour_table
from DoseRadiomicsLib.errors import DoseRadiomicsError
from DoseRadiomicsLib.fileio import csv_safe_frame
from DoseRadiomicsLib.manifest import read_manifest
from DoseRadiomicsLib.manifest_builder import _csv, read_clinical
from DoseRadiomicsLib.pipeline import features_csv_text
from DoseRadiomicsLib.training import read_features

MANIFEST = ("patient_id,ct,dose,gtv,gtv_name,age\nP1,ct1.nrrd,d1.nrrd,g1.nrrd,GTV,61\n"
            "P2,ct2.nrrd,d2.nrrd,g2.nrrd,GTV p,70\n")
CLINICAL = "patient_id,age,centre\nP1,61,A\nP2,70,B\n"
FEATURES = "patient_id,settings_hash,GTV__original_firstorder_Mean\nP1,abc,1.5\nP2,abc,-2.25\n"
FAILURES = "patient_id,kind,file,message\nP1,InputError,ct1.nrrd,patient P1: caf\u00e9\n"
COLOURS = "0,0,0,1\n0.5,0,1,0\n1,1,0,0\n"      # no header: the first stop is the first line


def _read(kind, path):
    if kind == "manifest":
        return read_manifest(path).df.reset_index().astype(str).to_dict("records")
    if kind == "clinical":
        return read_clinical(path)
    if kind == "features":
        return read_features(path).astype(str).to_dict("records")
    if kind == "failures":
        return cohort._read_failures(path)
    if kind == "colour table":
        table = load_colour_table(path, (0, 70))
        return table.doses.tolist(), table.colours.tolist()
    raise AssertionError(kind)


TEXTS = {"manifest": MANIFEST, "clinical": CLINICAL, "features": FEATURES, "failures": FAILURES,
         "colour table": COLOURS}


@pytest.mark.parametrize("kind", sorted(TEXTS))
def test_a_spreadsheet_copy_with_bom_and_crlf_reads_as_the_original(kind, tmp_path):
    plain, copy = tmp_path / "plain.csv", tmp_path / "copy.csv"
    plain.write_bytes(TEXTS[kind].encode("utf-8"))
    copy.write_bytes(b"\xef\xbb\xbf" + TEXTS[kind].replace("\n", "\r\n").encode("utf-8"))
    assert _read(kind, copy) == _read(kind, plain)


@pytest.mark.parametrize("kind", ["manifest", "clinical", "features", "colour table"])
def test_another_encoding_is_refused_naming_the_one_needed(kind, tmp_path):
    path = tmp_path / "utf16.csv"
    path.write_bytes(TEXTS[kind].encode("utf-16"))
    with pytest.raises(DoseRadiomicsError) as info:
        _read(kind, path)
    assert "UTF-8" in str(info.value) and str(path) in str(info.value)


FORMULAS = ["=1+2", "+41 79 000", "-GTV", "@SUM(A1)", "=HYPERLINK(\"http://x\")"]


def _cells(text: str) -> list:
    return [c for row in csv.reader(text.splitlines()) for c in row]


def _runs_as_formula(cell: str) -> bool:
    if cell[:1] not in ("=", "+", "-", "@"):
        return False
    try:
        float(cell)          # a negative number is a number, not a formula
        return False
    except ValueError:
        return True


def test_features_csv_keeps_formulas_from_running_and_reads_its_ids_back(tmp_path):
    rows = [{"patient_id": pid, "settings_hash": "abc", "GTV__x": -1.5} for pid in FORMULAS]
    text = features_csv_text(rows)
    assert not [c for c in _cells(text) if _runs_as_formula(c)]
    assert "-1.5" in _cells(text)
    (tmp_path / "features.csv").write_text(text)
    assert read_features(tmp_path / "features.csv")["patient_id"].tolist() == FORMULAS


def test_the_manifest_builders_files_keep_formulas_from_running_and_read_back(tmp_path):
    row = {"patient_id": "P1", "ct": "-scans/ct", "dose": "@dose.dcm", "gtv": "+rs.dcm", "gtv_name": "=GTV",
           "delta": "-3.5"}
    text = _csv(list(row), [row])
    assert not [c for c in _cells(text) if _runs_as_formula(c)]
    (tmp_path / "manifest.csv").write_text(text)
    m = read_manifest(tmp_path / "manifest.csv")
    got = m.df.loc["P1"]
    assert got["gtv_name"] == "=GTV" and got["delta"] == "-3.5"
    assert str(got["ct"]).endswith("-scans/ct") and str(got["dose"]).endswith("@dose.dcm")
    (tmp_path / "clinical.csv").write_text(_csv(["patient_id", "note"], [{"patient_id": "P1", "note": "=2*3"}]))
    assert read_clinical(tmp_path / "clinical.csv")[1]["P1"]["note"] == "=2*3"


def test_failures_and_predictions_csv_keep_formulas_from_running(tmp_path):
    path = tmp_path / "failures.csv"
    cohort._write_failures(path, {"P1": {"patient_id": "P1", "kind": "InputError", "file": "=cmd|' /C calc'!A0",
                                         "message": "@SUM(1+1)"}}, ["P1"])
    text = path.read_text(encoding="utf-8")
    assert not [c for c in _cells(text) if _runs_as_formula(c)]
    assert cohort._read_failures(path)["P1"]["file"] == "=cmd|' /C calc'!A0"
    predictions = pd.DataFrame({"probability": [0.2, 0.9], "centre": ["=A", "B"], "risk_group": ["low", "high"]},
                               index=pd.Index(["P1", "-P2"], name="patient_id"))
    text = csv_safe_frame(predictions).to_csv(index_label="patient_id")
    assert not [c for c in _cells(text) if _runs_as_formula(c)]
    assert predictions["centre"].tolist() == ["=A", "B"]     # the caller's frame is not changed
