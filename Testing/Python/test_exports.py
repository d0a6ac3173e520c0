"""Planning-system exports (issue 11): a patient folder in, the same features as the plain NRRD route out.

Every DICOM variation is built here from a real OpenKBP patient (make_exports.py, pydicom) and
compared with the NRRD files of the same numbers: the images that reach pyradiomics must be equal
(CT and mask exactly, dose on the CT grid to 1e-6 relative), and for the plain export every feature
is compared; an unsupported variation must give the documented error.
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from DoseRadiomicsLib import dicomrt, discovery
from DoseRadiomicsLib.cli import main
from DoseRadiomicsLib.errors import InputError
from DoseRadiomicsLib.pipeline import PatientInputs, extract_patient, load_patient
from DoseRadiomicsLib.readers import read_ct

import make_exports as mx


@pytest.fixture(scope="module")
def patient(openkbp):
    return mx.load_patient(openkbp("pt_10"))


@pytest.fixture(scope="module")
def nrrd_route(patient, tmp_path_factory):
    files = mx.write_nrrd_route(patient, tmp_path_factory.mktemp("nrrd"))
    inputs = PatientInputs("p", str(files["ct"]), str(files["dose"]), str(files["gtv"]), dose_unit="Gy")
    return {"files": files, "inputs": inputs, "loaded": load_patient(inputs)}


@pytest.fixture(scope="module")
def nrrd_features(nrrd_route):
    return extract_patient(nrrd_route["inputs"])


def _arrays(loaded):
    return {"ct": sitk.GetArrayFromImage(loaded.ct.image), "gtv": sitk.GetArrayFromImage(loaded.gtv),
            "dose": sitk.GetArrayFromImage(loaded.dose_on_ct).astype(np.float64)}


def assert_same_images(loaded, reference):
    """What pyradiomics would see is the same: CT and GTV exactly, the dose on the CT grid to 1e-6."""
    a, b = _arrays(loaded), _arrays(reference)
    assert np.array_equal(a["ct"], b["ct"])
    assert np.array_equal(a["gtv"], b["gtv"])
    np.testing.assert_allclose(a["dose"], b["dose"], rtol=1e-6, atol=1e-6 * b["dose"].max())
    np.testing.assert_allclose(loaded.ct.image.GetOrigin(), reference.ct.image.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(loaded.ct.image.GetSpacing(), reference.ct.image.GetSpacing(), atol=1e-6)


def dir_inputs(folder, **kw):
    return PatientInputs("p", kw.pop("ct", None), kw.pop("dose", None), kw.pop("gtv", None),
                         gtv_name=kw.pop("gtv_name", "PTV70"), patient_dir=str(folder), **kw)


def test_export_folder_on_the_command_line_gives_the_nrrd_routes_features(patient, nrrd_features, tmp_path):
    """An Eclipse-style export (CT slices, a scout, RS, RD, RP and a text file in one folder) through
    ``extract --patient-dir``, the ROI named with other case and spaces: every feature equal."""
    folder = mx.Export(patient, roi_names=("PTV70", "BODY")).write(tmp_path / "export")
    out = tmp_path / "out"
    assert main(["extract", "--patient-dir", str(folder), "--gtv-name", "ptv 70", "--out", str(out),
                 "--no-png", "--quiet"]) == 0
    with open(out / "features.csv") as fh:
        row = next(csv.DictReader(fh))
    ref = nrrd_features
    assert set(row) == {"patient_id", "settings_hash", *ref.features}
    ours = np.array([float(row[k]) for k in ref.features])
    theirs = np.array(list(ref.features.values()), float)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9)
    rec = json.loads((out / "extraction.json").read_text())["discovery"]
    assert rec["ct"]["why"] == "the series the RTSTRUCT references" and rec["ct"]["files"] == patient["ct"].shape[0]
    assert rec["rtstruct"]["file"] == "RS.plan.dcm" and rec["rtdose"]["files"] == ["RD.plan.dcm"]
    assert rec["skipped"]["a LOCALIZER (scout) image"]["files"] == ["CT.scout.dcm"]
    assert rec["plan_files"] == ["RP.plan.dcm"]


def test_ct_folder_holding_a_scout_and_rt_files_reads_the_ct(patient, nrrd_route, tmp_path):
    folder = mx.Export(patient).write(tmp_path / "export")
    ct = read_ct(folder)
    assert np.array_equal(sitk.GetArrayFromImage(ct.image), sitk.GetArrayFromImage(nrrd_route["loaded"].ct.image))
    with pytest.raises(InputError, match="LOCALIZER") as err:
        read_ct(folder / "CT.scout.dcm")
    assert "CT.scout.dcm" in str(err.value)


@pytest.mark.parametrize("variation", ["nested", "cgy_absolute", "beams"])
def test_export_variations_give_the_same_images(patient, nrrd_route, tmp_path, variation):
    e = mx.Export(patient, cgy=variation == "cgy_absolute", absolute_offsets=variation == "cgy_absolute")
    folder = e.write(tmp_path / "export", layout="nested" if variation == "nested" else "eclipse")
    if variation == "beams":
        (folder / "RD.plan.dcm").unlink()
        for n, part in enumerate(mx.beam_split(patient, 3), start=1):
            e.write_rtdose(folder / f"RD.beam{n}.dcm", stored=part, summation="BEAM")
    loaded = load_patient(dir_inputs(folder))
    assert_same_images(loaded, nrrd_route["loaded"])
    rec = loaded.record["discovery"]
    if variation == "beams":
        assert rec["rtdose"]["summation"] == "BEAM (3 summed)"
        assert rec["rtdose"]["files"] == ["RD.beam1.dcm", "RD.beam2.dcm", "RD.beam3.dcm"]
        assert "summed" in rec["rtdose"]["why"]
    if variation == "cgy_absolute":
        assert loaded.dose.details["original_units"] == "CGY"
        assert loaded.dose.details["grid_frame_offsets"] == "absolute"


def test_a_single_beam_or_fraction_dose_is_refused(patient, nrrd_route, tmp_path):
    e = mx.Export(patient)
    folder = e.write(tmp_path / "export")
    beam = e.write_rtdose(tmp_path / "RD.beam.dcm", summation="BEAM")
    files = nrrd_route["files"]
    with pytest.raises(InputError, match="BEAM: the dose of one beam") as err:
        load_patient(PatientInputs("p", str(folder / "RS.plan.dcm").replace("RS.plan.dcm", ""), str(beam),
                                   str(folder / "RS.plan.dcm"), gtv_name="PTV70"))
    assert "--patient-dir" in str(err.value) and "RD.beam.dcm" in str(err.value)
    (folder / "RD.plan.dcm").unlink()
    e.write_rtdose(folder / "RD.fraction.dcm", summation="FRACTION")
    with pytest.raises(InputError, match="no usable RTDOSE") as err:
        load_patient(dir_inputs(folder))
    assert "RD.fraction.dcm: DoseSummationType FRACTION: a dose of one fraction" in str(err.value)
    assert files  # the NRRD route is untouched


def test_ambiguities_list_the_candidates_and_the_option_that_picks(patient, nrrd_route, tmp_path):
    e = mx.Export(patient)
    folder = e.write(tmp_path / "export")
    e.write_rtdose(folder / "RD.plan2.dcm")
    with pytest.raises(InputError, match="2 plan doses") as err:
        load_patient(dir_inputs(folder))
    text = str(err.value)
    assert "RD.plan.dcm" in text and "RD.plan2.dcm" in text and "date 20250103" in text and "--dose FILE" in text
    assert_same_images(load_patient(dir_inputs(folder, dose="RD.plan.dcm")), nrrd_route["loaded"])

    e.write_rtstruct(folder / "RS.old.dcm", label="RS old")
    with pytest.raises(InputError, match="2 structure sets") as err:
        load_patient(dir_inputs(folder, dose="RD.plan.dcm"))
    assert "RS.old.dcm" in str(err.value) and "'RS old'" in str(err.value) and "--gtv FILE" in str(err.value)
    picked = load_patient(dir_inputs(folder, dose="RD.plan.dcm", gtv=str(folder / "RS.plan.dcm")))
    assert picked.record["discovery"]["rtstruct"] == {"file": "RS.plan.dcm", "label": "RS plan",
                                                      "date": "20250102", "why": "picked by the user (--gtv)"}

    other = mx.Export(patient)            # a second CT series (another frame) in the folder
    other.write_ct(folder / "second_ct")
    (folder / "RS.old.dcm").unlink()
    loaded = load_patient(dir_inputs(folder, dose="RD.plan.dcm"))
    assert loaded.record["discovery"]["other_image_series"][0]["files"] == patient["ct"].shape[0]


def test_plan_consistency_refuses_another_frame_and_warns_on_ids(patient, nrrd_route, tmp_path):
    e = mx.Export(patient)
    folder = e.write(tmp_path / "export")
    (folder / "RD.plan.dcm").unlink()
    e.write_rtdose(folder / "RD.other.dcm", frame="1.2.3.4.5")
    with pytest.raises(InputError, match="frame of reference 1.2.3.4.5, not the CT's") as err:
        load_patient(dir_inputs(folder))
    assert "RD.other.dcm" in str(err.value)
    # picked explicitly, it still may not be in another frame
    with pytest.raises(InputError, match="different frames of reference") as err:
        load_patient(dir_inputs(folder, dose="RD.other.dcm"))
    assert "1.2.3.4.5" in str(err.value) and e.frame in str(err.value)

    (folder / "RD.other.dcm").unlink()
    e.write_rtdose(folder / "RD.plan.dcm", patient_id="SOMEONE_ELSE")
    loaded = load_patient(dir_inputs(folder))
    warning = "PatientID differs: CT 'OKBP10', RTSTRUCT 'OKBP10', RTDOSE 'SOMEONE_ELSE'"
    assert warning in loaded.record["discovery"]["warnings"] and warning in loaded.record["alignment"]["warnings"]
    # the single-file route warns the same way
    single = load_patient(PatientInputs("p", str(folder), str(folder / "RD.plan.dcm"), str(folder / "RS.plan.dcm"),
                                        gtv_name="PTV70"))
    assert any("PatientID differs" in w and "SOMEONE_ELSE" in w for w in single.record["alignment"]["warnings"])
    assert_same_images(single, nrrd_route["loaded"])


@pytest.mark.parametrize("names, rule, expected", [
    (["BODY", "PTV 70", "PTV63"], "ptv70", "PTV 70"),              # case and spaces do not matter
    (["BODY", "GTVp", "GTV_n"], "GTV|GTV_primary|gtvp", "GTVp"),    # aliases, first that matches wins
    (["BODY", "GTV_p_1", "CTV"], "glob:gtv_*", "GTV_p_1"),          # shell pattern
    (["BODY", "GTV-T 1", "GTVn"], r"re:GTV[-_ ]?T.*", "GTV-T 1"),   # regular expression (whole name)
])
def test_gtv_name_rules(names, rule, expected):
    assert names[dicomrt.choose_structure(names, rule)] == expected
    assert [names[i] for i in dicomrt.structures_named(names, rule)] == [expected]


def test_gtv_name_errors_list_candidates_and_suggest_a_close_name():
    with pytest.raises(InputError) as err:
        dicomrt.choose_structure(["BODY", "GTV_p", "PTV70"], "GTVp ")
    assert "available: 'BODY', 'GTV_p', 'PTV70'" in str(err.value) and "did you mean 'GTV_p'" in str(err.value)
    with pytest.raises(InputError, match="2 structures match 'glob:GTV\\*': 'GTV_p', 'GTV_n'"):
        dicomrt.choose_structure(["GTV_p", "GTV_n"], "glob:GTV*")
    with pytest.raises(InputError, match="not a valid regular expression"):
        dicomrt.structures_named(["GTV"], "re:GTV(")


def test_clinic_style_roi_names_in_an_export(patient, nrrd_route, tmp_path):
    folder = mx.Export(patient, roi_names=("GTV 70 Gy", "Body", "PTV 70")).write(tmp_path / "export")
    loaded = load_patient(dir_inputs(folder, gtv_name="gtv70gy"))
    assert_same_images(loaded, nrrd_route["loaded"])
    with pytest.raises(InputError, match="did you mean 'GTV 70 Gy'") as err:
        load_patient(dir_inputs(folder, gtv_name="GTV_70Gy_x"))
    assert "RS.plan.dcm" in str(err.value)


def _uneven_keep(patient):
    """Every slice across the target (3 mm), every other slice elsewhere (6 mm), as lung plans do."""
    nz = patient["ct"].shape[0]
    rows = np.flatnonzero(patient["gtv"].any(axis=(1, 2)))
    return [k for k in range(nz) if rows[0] - 1 <= k <= rows[-1] + 1 or k % 2 == 0]


def test_uneven_slice_spacing_keeps_the_stored_slices_and_the_features(patient, nrrd_route, nrrd_features, tmp_path):
    keep = _uneven_keep(patient)
    sub = dict(patient, ct=patient["ct"][keep], gtv=patient["gtv"][keep])
    e = mx.Export(sub, z_positions=patient["z0"] + np.asarray(keep) * patient["spacing"][2])
    full = mx.Export(patient)
    e.study, e.frame, e.ct_series = full.study, full.frame, e.ct_series
    folder = tmp_path / "export"
    e.write_ct(folder)
    e.write_rtstruct(folder / "RS.plan.dcm")
    full.study, full.frame = e.study, e.frame
    full.write_rtdose(folder / "RD.plan.dcm")            # the dose grid keeps its regular 3 mm frames
    loaded = load_patient(dir_inputs(folder))
    ref = _arrays(nrrd_route["loaded"])
    ours = _arrays(loaded)
    assert np.array_equal(ours["ct"], ref["ct"][keep]) and np.array_equal(ours["gtv"], ref["gtv"][keep])
    np.testing.assert_allclose(ours["dose"], ref["dose"][keep], rtol=1e-6, atol=1e-6 * ref["dose"].max())
    info = loaded.ct.details["uneven_slice_spacing"]
    assert info["steps_mm"] == [3.0, 6.0] and len(info["slice_positions_mm"]) == len(keep)

    result = extract_patient(dir_inputs(folder))
    d = result.features
    ref_d = nrrd_features.features
    # the same stored slice, reported at its DICOM z, with its index in the stored series
    assert d["diag__slice_position_mm"] == pytest.approx(ref_d["diag__slice_position_mm"], abs=1e-6)
    assert keep[int(d["diag__slice_index"])] == int(ref_d["diag__slice_index"])
    features = [k for k in ref_d if not k.startswith("diag__")]
    np.testing.assert_allclose([d[k] for k in features], [ref_d[k] for k in features], rtol=1e-6, atol=1e-9)
    # 3D statistics weight each slice by its own thickness: close to the full series' values
    for k in ("diag__GTV_dose_mean_Gy", "diag__GTV_D95_Gy", "diag__GTV_V50Gy_pct"):
        assert d[k] == pytest.approx(ref_d[k], rel=0.01), k
    assert "uneven_slice_spacing" in result.record["ct"]["details"]


def test_a_genuine_gap_names_the_two_files_either_side(patient, tmp_path):
    nz = patient["ct"].shape[0]
    keep = [k for k in range(nz) if k not in (20, 21)]        # two slices missing: a 9 mm gap in 3 mm
    sub = dict(patient, ct=patient["ct"][keep], gtv=patient["gtv"][keep])
    e = mx.Export(sub, z_positions=patient["z0"] + np.asarray(keep) * patient["spacing"][2])
    files = e.write_ct(tmp_path / "ct")
    with pytest.raises(InputError, match="a gap of 9.000 mm between") as err:
        read_ct(tmp_path / "ct")
    assert files[19].name in str(err.value) and files[20].name in str(err.value)
    assert "more than twice the usual 3.000 mm" in str(err.value)


def test_manifest_from_a_dicom_root_then_cohort_extract(patient, nrrd_features, tmp_path):
    """``doseradiomics manifest`` + ``cohort-extract`` on a folder of exports with no hand-picked file."""
    root = tmp_path / "exports"
    mx.Export(patient, patient_id="A1", roi_names=("GTV 70", "BODY")).write(root / "pat_A")
    # BEAM doses summed differ from the plan dose in the last bit of some voxels, which the one-slice
    # image's z-high-pass wavelet bands (pure rounding noise, ~1e-6) turn into different features;
    # the BEAM route is compared on its images (test_export_variations_give_the_same_images).
    b = mx.Export(patient, patient_id="B2", roi_names=("gtv70", "PTV 70"))
    b.write(root / "pat_B", layout="nested")
    e = mx.Export(patient, patient_id="E5", roi_names=("GTVp", "BODY"))
    folder_e = e.write(root / "pat_E")
    (folder_e / "RD.plan.dcm").unlink()
    for n, part in enumerate(mx.beam_split(patient, 2), start=1):
        e.write_rtdose(folder_e / f"RD.beam{n}.dcm", stored=part, summation="BEAM")
    c = mx.Export(patient, patient_id="C3")
    c.write_ct(root / "pat_C")                                  # no structure set exported
    mx.Export(patient, patient_id="D4", roi_names=("PTV63", "BODY")).write(root / "pat_D")
    clinical = tmp_path / "clinical.csv"
    clinical.write_text("patient_id,age,tnm_stage\npat_A,61,III\npat_B,58,II\npat_E,49,II\npat_Z,70,IV\n")
    out = tmp_path / "cohort" / "manifest.csv"
    assert main(["manifest", "--dicom-root", str(root), "--gtv-name", "GTV|glob:GTV*", "--clinical", str(clinical),
                 "--out", str(out), "--quiet"]) == 0
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["patient_id"] for r in rows] == ["pat_A", "pat_B", "pat_E"]
    assert [r["gtv_name"] for r in rows] == ["GTV 70", "gtv70", "GTVp"]
    assert rows[0]["dose"] == "../exports/pat_A/RD.plan.dcm" and rows[2]["dose"] == ""   # BEAM doses: summed
    assert rows[1]["ct"].startswith("../exports/pat_B/study/CT/CT.")
    assert (rows[0]["age"], rows[1]["tnm_stage"]) == ("61", "II")
    with open(out.with_name("unmatched.csv")) as fh:
        report = {(r["folder"] or r["patient_id"]): r["problem"] for r in csv.DictReader(fh)}
    assert report["pat_C"].startswith("no RTSTRUCT")
    assert "no structure named 'GTV|glob:GTV*'; available: 'PTV63', 'BODY'" in report["pat_D"]
    assert report["pat_Z"] == "a clinical row without a matched patient folder"

    features = tmp_path / "features"
    assert main(["cohort-extract", "--manifest", str(out), "--out", str(features), "--workers", "1",
                 "--quiet"]) == 0
    with open(features / "features.csv") as fh:
        got = {r["patient_id"]: r for r in csv.DictReader(fh)}
    assert list(got) == ["pat_A", "pat_B", "pat_E"]
    ref = nrrd_features.features
    names = [k for k in ref if not k.startswith("diag__")]
    for pid in ("pat_A", "pat_B"):
        np.testing.assert_allclose([float(got[pid][k]) for k in names], [ref[k] for k in names], rtol=1e-6, atol=1e-9)
    doc = json.loads((features / "patients" / "pat_E.json").read_text())
    assert doc["record"]["discovery"]["rtdose"]["summation"] == "BEAM (2 summed)"


def test_sample_data_origin_note_gives_the_headers_voxel_size():
    """Resources/SampleData/OpenKBP-pt_10/ORIGIN.md states each file's size and voxel size as its header does."""
    import re
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "Resources" / "SampleData" / "OpenKBP-pt_10"
    text = (folder / "ORIGIN.md").read_text()
    for name in ("ct.nrrd", "dose.nrrd", "mask_PTV70.nrrd"):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| `{name}`"))
        m = re.search(r"(\d+)x(\d+)x(\d+) at ([\d.]+)x([\d.]+)x([\d.]+) mm", line)
        assert m, line
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(folder / name))
        reader.ReadImageInformation()
        assert tuple(int(v) for v in m.groups()[:3]) == reader.GetSize()
        np.testing.assert_allclose([float(v) for v in m.groups()[3:]], reader.GetSpacing(), atol=5e-3)


@pytest.mark.parametrize("position", ["HFP", "FFS", "FFP"])
def test_patient_position_does_not_change_any_feature(patient, nrrd_features, tmp_path, position):
    """One real patient stored as head-first prone, feet-first supine and feet-first prone (rows,
    columns and slice order mirrored, the anatomy at the same patient coordinates): every feature
    equals the head-first supine (plain NRRD) route's, and the slice is reported at its DICOM z
    with its index in the stored series beside it."""
    folder = mx.Export(patient, position=position).write(tmp_path / position)
    result = extract_patient(dir_inputs(folder))
    ref = nrrd_features.features
    assert list(result.features) == list(ref)
    names = [k for k in ref if not k.startswith("diag__")]
    np.testing.assert_allclose([result.features[k] for k in names], [ref[k] for k in names], rtol=1e-6, atol=1e-9)
    d = result.features
    assert d["diag__slice_position_mm"] == pytest.approx(ref["diag__slice_position_mm"], abs=1e-6)
    nz = patient["ct"].shape[0]
    expected_stored = nz - 1 - int(ref["diag__slice_index"]) if position.startswith("FF") else int(ref["diag__slice_index"])
    assert int(d["diag__slice_index_stored"]) == expected_stored
    assert result.record["orientation"]["changed"] is True
