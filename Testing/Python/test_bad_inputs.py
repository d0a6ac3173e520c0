"""The bad-input corpus (Testing/BadInputs/make_corpus.py): every case ends in a clear error.

For each case: the library raises the documented DoseRadiomicsError subclass whose message names
the patient and the file and has a hint (what to do); the ``doseradiomics`` command exits 1 with
that message on stderr and no traceback; a cohort run over a manifest mixing good patients with
bad ones records each bad one in failures.csv and extracts the good ones. Unusual but valid inputs
(oblique or sagittal CTs, a one-slice CT, RTDOSE in cGy, self-intersecting contours, paths with
spaces and non-ASCII characters) must work and give the features of their plain counterpart.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from DoseRadiomicsLib import cli
from DoseRadiomicsLib.cohort import run_cohort
from DoseRadiomicsLib.errors import DoseRadiomicsError, InputError
from DoseRadiomicsLib.manifest import read_manifest
from DoseRadiomicsLib.modelfile import load_model, save_model
from DoseRadiomicsLib.pipeline import PatientInputs, extract_patient, feature_columns
from DoseRadiomicsLib.readers import read_ct
from DoseRadiomicsLib.report import write_report
from DoseRadiomicsLib.training import read_features, train_models

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BadInputs"))
from make_corpus import base_inputs, make_corpus, write_tiny_patient  # noqa: E402

from test_training import synthetic_cohort  # noqa: E402

ERROR_KINDS = {"InputError", "AlignmentError", "ROIError", "ExtractionError", "ManifestError", "DataError",
               "ModelFileError"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("corpus")
    features, manifest, truth = synthetic_cohort(n=100, n_noise=8, seed=4)
    model = root / "valid_model.json"
    save_model(train_models(features, manifest, seed=1, ground_truth=truth, repeated_splits=3), model)
    cases = make_corpus(root, shared_data, valid_model=model)
    return root, cases


@pytest.fixture(scope="module")
def bases(corpus):
    """The positive controls: both bases extract, so each case fails for its own defect."""
    root, _ = corpus
    out = {}
    for name, inputs in base_inputs(root).items():
        out[name] = extract_patient(PatientInputs(**inputs))
    return out


def _library_call(case, tmp_path):
    """What a user of the library would call for this case."""
    if case.inputs is not None:
        return extract_patient(PatientInputs(**case.inputs))
    if case.reader == "manifest":
        return read_manifest(case.path)
    if case.reader == "training":
        return train_models(read_features(case.extra["features"]), read_manifest(case.path))
    if case.reader == "model":
        return load_model(case.path)
    if case.reader == "report":
        return write_report(case.path, tmp_path / "report.html")
    raise AssertionError(case.reader)


def _cli_args(case, tmp_path) -> list:
    out = str(tmp_path / "cli_out")
    if case.inputs is not None:
        i = case.inputs
        args = ["extract", "--ct", i["ct"], "--dose", i["dose"], "--gtv", i["gtv"], "--patient-id",
                i["patient_id"], "--out", out, "--quiet", "--no-png"]
        for key, flag in (("gtv_name", "--gtv-name"), ("gtv_label", "--gtv-label"), ("dose_unit", "--dose-unit")):
            if i.get(key) is not None:
                args += [flag, str(i[key])]
        return args
    if case.reader == "manifest":
        return ["cohort-extract", "--manifest", str(case.path), "--out", out, "--workers", "1", "--quiet"]
    if case.reader == "training":
        return ["train", "--features", str(case.extra["features"]), "--manifest", str(case.path),
                "--out", str(tmp_path / "model.json")]
    if case.reader == "model":
        return ["predict", "--model", str(case.path), "--features", str(tmp_path / "none.csv")]
    if case.reader == "report":
        return ["report", "--model", str(case.path), "--out", str(tmp_path / "report.html")]
    raise AssertionError(case.reader)


def test_the_corpus_covers_every_reader(corpus):
    _, cases = corpus
    bad = [c for c in cases if c.expect != "ok"]
    assert len(bad) >= 30 and len({c.name for c in cases}) == len(cases)
    readers = {c.reader for c in bad}
    assert {"ct", "dose", "gtv", "rtstruct", "alignment", "roi", "manifest", "training", "model", "report"} <= readers
    assert {c.expect for c in bad} <= ERROR_KINDS
    assert sum(c.name.startswith("dicom") for c in bad) >= 10  # real DICOM RT, modified


def test_each_bad_input_is_a_documented_error_naming_patient_file_and_remedy(corpus, bases, tmp_path):
    _, cases = corpus
    problems, table = [], []
    for case in cases:
        if case.expect == "ok":
            continue
        try:
            _library_call(case, tmp_path)
            problems.append(f"{case.name}: no error")
            continue
        except DoseRadiomicsError as exc:
            err = exc
        except Exception as exc:  # noqa: BLE001 - the point is to catch anything undocumented
            problems.append(f"{case.name}: undocumented {type(exc).__name__}: {exc}")
            continue
        msg = str(err)
        table.append((case.name, err.kind))
        if err.kind != case.expect:
            problems.append(f"{case.name}: {err.kind} instead of {case.expect}: {msg}")
        if not re.search(case.match, msg, re.I | re.S):
            problems.append(f"{case.name}: message does not say /{case.match}/: {msg}")
        if case.inputs is not None and f"patient {case.patient_id}" not in msg:
            problems.append(f"{case.name}: patient not named: {msg}")
        if case.file is not None and (err.path is None or Path(err.path) != Path(case.file)):
            problems.append(f"{case.name}: file {case.file} not named (path={err.path}): {msg}")
        if not err.hint:
            problems.append(f"{case.name}: no hint saying what to do: {msg}")
    assert not problems, "\n".join(problems)
    print(f"\n{len(table)} bad inputs handled:\n" + "\n".join(f"  {n} -> {k}" for n, k in table))


def test_each_bad_input_exits_1_with_the_message_and_no_traceback(corpus, tmp_path, capsys):
    _, cases = corpus
    problems = []
    for case in cases:
        if case.expect == "ok":
            continue
        code = cli.main(_cli_args(case, tmp_path))
        _, err = capsys.readouterr()
        if code != 1:
            problems.append(f"{case.name}: exit code {code}")
        if "error:" not in err or "Traceback" in err or not re.search(case.match, err, re.I | re.S):
            problems.append(f"{case.name}: stderr does not carry the message: {err!r}")
        elif len([line for line in err.splitlines() if line.strip()]) != 1:
            problems.append(f"{case.name}: more than the one error line: {err!r}")
        if case.inputs is not None and case.patient_id not in err:
            problems.append(f"{case.name}: patient not on stderr: {err!r}")
    assert not problems, "\n".join(problems)


def test_a_real_traceback_free_command_line(corpus, tmp_path):
    """The installed entry point in its own process: one bad CT, exit 1, one line, no traceback."""
    _, cases = corpus
    case = next(c for c in cases if c.name == "ct_huge_header")
    proc = subprocess.run([sys.executable, "-m", "DoseRadiomicsLib.cli", *_cli_args(case, tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("doseradiomics extract: error: patient CT-HUGE-HEADER")


# ------------------------------------------------------------------------- unusual but valid inputs

def _features(result, prefix=None):
    cols = feature_columns(result.features)
    return {c: result.features[c] for c in cols if prefix is None or c.startswith(prefix)}


def _assert_same(a: dict, b: dict, rtol: float, what: str):
    assert a.keys() == b.keys() and len(a) > 1000, what
    x, y = np.array([a[k] for k in a], float), np.array([b[k] for k in a], float)
    bad = [k for k, u, v in zip(a, x, y) if not np.isclose(u, v, rtol=rtol, atol=1e-9, equal_nan=True)]
    assert not bad, f"{what}: {len(bad)} features differ, e.g. {bad[:3]}"


@pytest.mark.parametrize("name, base, prefix, rtol", [
    ("ct_one_slice", "tiny", None, 1e-6),
    ("ct_oblique", "tiny", None, 1e-6),
    # ct_sagittal_acquisition is not here: stored with a sagittal direction, the same voxels are
    # another anatomy in patient space, and its axial cross-section (patient LPS, issue 11) is the patient's
    ("paths_with_spaces_and_non_ascii", "tiny", None, 0.0),
    ("dicom_dose_in_cgy", "dicom", None, 1e-5),
])
def test_unusual_valid_inputs_give_the_features_of_their_plain_counterpart(corpus, bases, name, base, prefix, rtol):
    _, cases = corpus
    case = next(c for c in cases if c.name == name)
    assert case.expect == "ok"
    result = extract_patient(PatientInputs(**case.inputs))
    _assert_same(_features(result, prefix), _features(bases[base], prefix), rtol, name)


def test_oblique_dicom_and_self_intersecting_contours_work(corpus, bases, shared_data):
    _, cases = corpus
    rotated = extract_patient(PatientInputs(**next(c for c in cases if c.name == "dicom_ct_rotated_in_plane").inputs))
    direction = np.array(rotated.record["ct"]["direction"]).reshape(3, 3)
    assert abs(direction[0, 0] - np.cos(np.radians(30))) < 1e-6  # the CT really is oblique
    # rotated about the slice centre, the contours cover the same area (mm^2, +-10 %)
    area = rotated.features["diag__GTV_area_mm2"]
    assert area == pytest.approx(bases["dicom"].features["diag__GTV_area_mm2"], rel=0.10)

    case = next(c for c in cases if c.name == "dicom_rtstruct_self_intersecting")
    bowtie = extract_patient(PatientInputs(**case.inputs))
    # even-odd fill of a bow tie over a box covers half the box: compare with the box on that slice
    ds = pydicom.dcmread(case.inputs["gtv"])
    z = bowtie.record["cross_section"]["position_mm"]
    boxes = [np.asarray(c.ContourData, float).reshape(-1, 3) for rc in ds.ROIContourSequence
             for c in getattr(rc, "ContourSequence", []) if c.NumberOfContourPoints == 4
             and abs(float(c.ContourData[2]) - z) < 0.5]
    assert boxes
    half_box = max(np.ptp(b[:, 0]) * np.ptp(b[:, 1]) / 2 for b in boxes)
    assert bowtie.features["diag__GTV_area_mm2"] == pytest.approx(half_box, rel=0.10)


# ------------------------------------------------------------------------------ memory limit

def test_image_size_limit_is_configurable(corpus, monkeypatch):
    root, _ = corpus
    ct = base_inputs(root)["tiny"]["ct"]
    assert read_ct(ct).image.GetSize() == (40, 40, 8)
    monkeypatch.setenv("DOSERADIOMICS_MAX_IMAGE_BYTES", "20K")  # the tiny CT is 25.6 kB of int16
    with pytest.raises(InputError, match=r"40 x 40 x 8 voxels \(25.6 kB in memory\), more than the 20.5 kB limit") as e:
        read_ct(ct, patient="P")
    assert "DOSERADIOMICS_MAX_IMAGE_BYTES" in e.value.hint
    monkeypatch.setenv("DOSERADIOMICS_MAX_IMAGE_BYTES", "lots")
    with pytest.raises(InputError, match="is not a size"):
        read_ct(ct)


def test_a_huge_header_is_refused_before_allocating(tmp_path):
    """A NRRD declaring 4 GB of int16 (allocatable, unlike the corpus' 400 TB) with 64 bytes of data:
    without the check SimpleITK allocates all of it before noticing the data is missing."""
    path = tmp_path / "big.nrrd"
    path.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 2000 2000 500\n"
                     b"space directions: (1,0,0) (0,1,0) (0,0,1)\nspace origin: (0,0,0)\nendian: little\n"
                     b"encoding: raw\n\n" + b"\0" * 64)
    code = ("import sys\nfrom DoseRadiomicsLib.readers import read_ct\nfrom DoseRadiomicsLib.errors import InputError\n"
            f"try:\n    read_ct({str(path)!r})\nexcept InputError as e:\n    print('refused', e)\n"
            # VmHWM is this process's own peak; ru_maxrss also counts the parent's RSS at fork (Linux keeps
            # the pre-exec high-water mark), which failed the test once the pytest worker held 1 GB
            "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) // 1024)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("refused") and "more than the" in lines[0], proc.stdout + proc.stderr
    assert int(lines[-1]) < 1000, f"peak memory {lines[-1]} MB: the image was allocated"


# ------------------------------------------------------------------------------- a cohort run

COHORT_CASES = ("ct_truncated_nrrd", "ct_nan_voxels", "dose_all_zero", "gtv_outside_dose_grid", "gtv_two_pixels",
                "dicom_dose_without_scaling", "dicom_rtstruct_unknown_roi_name", "dicom_ct_missing_slice",
                "ct_missing_file", "dicom_dose_other_frame_of_reference")


def test_a_cohort_run_records_each_bad_patient_and_extracts_the_good_ones(corpus, tmp_path):
    root, cases = corpus
    by_name = {c.name: c for c in cases}
    rows = []
    good = []
    for i in range(3):
        pid = f"GOOD{i + 1}"
        paths = write_tiny_patient(tmp_path / "good" / pid, seed=i + 1)
        rows.append({"patient_id": pid, **{k: str(v) for k, v in paths.items()}, "gtv_label": 1})
        good.append(pid)
    odd = by_name["paths_with_spaces_and_non_ascii"].inputs
    rows.append({**{k: odd[k] for k in ("patient_id", "ct", "dose", "gtv")}, "gtv_label": 1})
    good.append(odd["patient_id"])
    for name in COHORT_CASES:
        i = by_name[name].inputs
        rows.append({k: i[k] for k in ("patient_id", "ct", "dose", "gtv", "gtv_name", "gtv_label", "dose_unit")})
    manifest = tmp_path / "mixed manifest é.csv"
    frame = pd.DataFrame(rows)
    frame["gtv_label"] = frame["gtv_label"].astype("Int64")
    frame.to_csv(manifest, index=False)
    out = tmp_path / "out"
    result = run_cohort(manifest, out, workers=1, progress=False)
    assert (result.n_done, result.n_failed) == (len(good), len(COHORT_CASES))
    feats = pd.read_csv(out / "features.csv")
    assert feats["patient_id"].tolist() == good
    fails = pd.read_csv(out / "failures.csv", keep_default_na=False).set_index("patient_id")
    assert fails.index.tolist() == [by_name[n].patient_id for n in COHORT_CASES]
    for name in COHORT_CASES:
        case = by_name[name]
        row = fails.loc[case.patient_id]
        assert row["kind"] == case.expect, name
        assert re.search(case.match, row["message"], re.I | re.S), (name, row["message"])
        assert f"patient {case.patient_id}" in row["message"], name
        if case.file is not None:
            assert Path(row["file"]) == Path(case.file), (name, row["file"])
