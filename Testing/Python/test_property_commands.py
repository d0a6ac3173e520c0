"""Generated adversarial inputs through the public commands (issue 12, Build 5).

Hypothesis draws images (pixel type, value range, NaN/Inf, spacing, direction incl. sheared and
mirrored, GTV label and extent, dose scale and grid offset), RTSTRUCT contours (point counts, NaN
and off-plane coordinates, geometric types), RTDOSE headers (summation type, units, scaling, dose
type, frame offsets, orientation, spacing, frame of reference, missing tags), features CSVs (random bytes, mutated tables) and model
files (mutated numbers and sections, checksum recomputed) and runs them through ``doseradiomics
extract``, ``predict`` and the GTV reader in-process (``cli.main``), with one invariant:

    exit 0 with valid outputs (features.csv with one finite-or-NaN row, probabilities in [0, 1]),
    or exit 1 with exactly one error line, no traceback, and nothing half-written (no temporary
    file, no partial output set).

Manifests (hostile ids, missing files, folders, devices, garbage images, bad labels and units) go
through ``cohort-extract``: exit 0 with every patient either in features.csv or in failures.csv, or
exit 1 with one line. Derandomised with bounded example counts (15 images, 30 contours, 25 RTDOSE
headers, 40 features files, 40 model files, 20 manifests: about 5 minutes on a 2-core machine shared with other jobs, most of it the
extractions of the inputs that pass); the counts of each outcome are printed.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from DoseRadiomicsLib import cli
from DoseRadiomicsLib.errors import DoseRadiomicsError
from DoseRadiomicsLib.modelfile import save_model
from DoseRadiomicsLib.training import train_models

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BadInputs"))
from make_corpus import _image, tiny_arrays  # noqa: E402

from test_training import synthetic_cohort  # noqa: E402


def _settings(n):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


OUTCOMES: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    print("\ngenerated cases: " + ", ".join(f"{k} {v}" for k, v in sorted(OUTCOMES.items())))


def run_invariant(argv, capsys, label: str, out: Path | None = None) -> int:
    """Run the command; check the invariant; count the outcome."""
    capsys.readouterr()
    rc = cli.main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if out is not None and out.exists():
        leftovers = [p.name for p in out.rglob(".*.tmp")]
        assert not leftovers, leftovers
    if rc == 0:
        OUTCOMES[f"{label} ok"] += 1
    else:
        assert rc == 1, captured
        lines = [ln for ln in captured.err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"doseradiomics {argv[0]}: error: "), lines
        OUTCOMES[f"{label} refused"] += 1
    return rc


# ----------------------------------------------------------------------------- images

DTYPES = [np.int16, np.uint8, np.int32, np.uint32, np.float32, np.float64]
DIRECTIONS = {
    "identity": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "rotated": (0.8, -0.6, 0, 0.6, 0.8, 0, 0, 0, 1),
    "mirrored": (-1, 0, 0, 0, 1, 0, 0, 0, 1),
    "sheared": (1, 0.2, 0, 0, 1, 0, 0, 0, 1),
    "scaled": (2, 0, 0, 0, 1, 0, 0, 0, 1),
}


@st.composite
def patients(draw):
    seed = draw(st.integers(0, 5))
    ct, dose, gtv = tiny_arrays(seed)
    ct = ct.astype(draw(st.sampled_from(DTYPES)), casting="unsafe")
    dose = (dose * draw(st.sampled_from([1.0, 100.0, 0.01, -1.0, 0.0, 1e6]))).astype(
        draw(st.sampled_from([np.float32, np.float64, np.uint16])), casting="unsafe")
    bad = draw(st.sampled_from(["none", "nan-ct", "inf-dose", "huge-ct", "negative-dose-in-gtv"]))
    inside = tuple(a[len(a) // 2] for a in np.nonzero(gtv))
    if bad == "nan-ct":
        ct = ct.astype(np.float32)
        ct[inside] = np.nan
    elif bad == "inf-dose":
        dose = dose.astype(np.float32)
        dose[0, 0, 0] = np.inf
    elif bad == "huge-ct":
        ct = ct.astype(np.float64)
        ct[:, inside[1], inside[2]] = 4.2e9
    elif bad == "negative-dose-in-gtv":
        dose = dose.astype(np.float32)
        dose[inside] = -5.0
    extent = draw(st.sampled_from(["as drawn", "empty", "everything", "one voxel"]))
    if extent == "empty":
        gtv = np.zeros_like(gtv)
    elif extent == "everything":
        gtv = np.ones_like(gtv)
    elif extent == "one voxel":
        gtv = np.zeros_like(gtv)
        gtv[inside] = 1
    gtv = gtv * draw(st.sampled_from([1, 2, 255]))
    spacing = tuple(draw(st.sampled_from([1.0, 2.5, 0.3, 1e-4, 1e4])) for _ in range(3))
    direction = draw(st.sampled_from(sorted(DIRECTIONS)))
    shift = draw(st.sampled_from([0.0, 5.0, 1e5]))          # the dose grid's offset, mm
    label = draw(st.sampled_from([None, 1, 2, 0, 300]))
    unit = draw(st.sampled_from(["Gy", "cGy", None]))
    return dict(ct=ct, dose=dose, gtv=gtv.astype(np.uint8), spacing=spacing, direction=direction, shift=shift,
                label=label, unit=unit, description=(seed, bad, extent, direction, spacing, shift, label, unit))


def _write(folder: Path, p: dict) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for role in ("ct", "dose", "gtv"):
        img = _image(p[role], spacing=p["spacing"])
        img.SetDirection(DIRECTIONS[p["direction"]])
        if role == "dose":
            img.SetOrigin(tuple(o + p["shift"] for o in img.GetOrigin()))
            if p["unit"]:
                img.SetMetaData("dose_unit", p["unit"])
        paths[role] = folder / f"{role}.nrrd"
        sitk.WriteImage(img, str(paths[role]), useCompression=True)
    return paths


@_settings(15)
@given(p=patients())
def test_generated_images_through_extract(p, tmp_path_factory, capsys):
    d = tmp_path_factory.mktemp("img")
    try:
        paths = _write(d / "in", p)
    except RuntimeError:    # SimpleITK itself refuses to write this image: not an input we can get
        assume(False)
    out = d / "out"
    argv = ["extract", "--ct", str(paths["ct"]), "--dose", str(paths["dose"]), "--gtv", str(paths["gtv"]),
            "--quiet", "--no-png", "--config", "2d", "--out", str(out)]
    if p["label"] is not None:
        argv += ["--gtv-label", str(p["label"])]
    rc = run_invariant(argv, capsys, "image", out)
    if rc == 0:
        df = pd.read_csv(out / "features.csv")
        assert len(df) == 1 and (out / "extraction.json").is_file()
        assert not np.isinf(df.select_dtypes("number").to_numpy()).any()
        # what passed is plausible: a dose in range, an orthonormal direction
        assert p["direction"] not in ("sheared", "scaled"), p["description"]
    else:
        assert not (out / "features.csv").exists(), "a refused patient left outputs"


# ----------------------------------------------------------------------------- contours

@st.composite
def contour_edits(draw):
    n_points = draw(st.sampled_from([0, 1, 2, 3, 4, None]))
    kind = draw(st.sampled_from(["CLOSED_PLANAR", "OPEN_PLANAR", "POINT", ""]))
    poison = draw(st.sampled_from(["none", "nan", "inf", "off-plane", "huge", "count-mismatch"]))
    which = draw(st.sampled_from(["all", "first"]))
    return n_points, kind, poison, which


@pytest.fixture(scope="module")
def dicom_base(tmp_path_factory, shared_data):
    from make_corpus import write_dicom_base
    from DoseRadiomicsLib.readers import read_ct
    base = write_dicom_base(tmp_path_factory.mktemp("dicom"), shared_data)
    return base, read_ct(base["ct"])


def contour_mutation(edit):
    """The change a drawn :func:`contour_edits` makes, as a function of one contour item (the first
    only, or every one); the corpus count (Testing/BadInputs/run_all.py) uses it too."""
    n_points, kind, poison, which = edit
    seen = []

    def mutate(c):
        if which == "first" and seen:
            return
        seen.append(1)
        data = [float(v) for v in c.ContourData]
        if n_points is not None:
            data = data[: 3 * n_points]
        if poison == "nan" and data:
            data[0] = float("nan")
        elif poison == "inf" and data:
            data[1] = float("inf")
        elif poison == "off-plane" and len(data) >= 6:
            data[5] += 7.3
        elif poison == "huge" and data:
            data = [v * 1e6 for v in data]
        c.ContourData = data
        c.NumberOfContourPoints = len(data) // 3 + (1 if poison == "count-mismatch" else 0)
        if kind:
            c.ContourGeometricType = kind
    return mutate


@_settings(30)
@given(edit=contour_edits())
def test_generated_contours_through_the_gtv_reader(edit, dicom_base, tmp_path_factory):
    from make_corpus import _rewrite_dicom, _rtss_edit_roi
    from DoseRadiomicsLib.readers import read_gtv

    (base, ct), (n_points, kind, poison, which) = dicom_base, edit
    mutate = contour_mutation(edit)
    rs = _rewrite_dicom(base["gtv"], tmp_path_factory.mktemp("rs") / "rs.dcm",
                        lambda ds: _rtss_edit_roi(ds, "Tumor Bed", mutate))
    try:
        mask = read_gtv(rs, ct, name="Tumor Bed")
    except DoseRadiomicsError as exc:
        OUTCOMES["contour refused"] += 1
        assert exc.path and str(rs) in str(exc)
        if n_points in (1, 2) and kind == "CLOSED_PLANAR" and which == "all" and poison == "none":
            assert "fewer than 3 points" in str(exc)
        return
    OUTCOMES["contour ok"] += 1
    assert sitk.GetArrayViewFromImage(mask).any()


# ----------------------------------------------------------------------------- features CSVs and models

@pytest.fixture(scope="module")
def model_setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    features, manifest, _ = synthetic_cohort(n=100, n_noise=8, seed=4)
    model = d / "model.json"
    save_model(train_models(features, manifest, seed=1), model)
    features.to_csv(d / "features.csv", index=False)
    return d, model, features


@st.composite
def features_files(draw, base: pd.DataFrame):
    kind = draw(st.sampled_from(["bytes", "mutated", "encoded"]))
    if kind == "bytes":
        return draw(st.binary(max_size=400))
    row = base.iloc[[draw(st.integers(0, len(base) - 1))]].copy()
    cols = [c for c in row.columns if c not in ("patient_id", "settings_hash")]
    for _ in range(draw(st.integers(0, 4))):
        c = draw(st.sampled_from(cols))
        row[c] = row[c].astype(object)
        row.loc[row.index[0], c] = draw(st.sampled_from(["", "nan", "inf", "-inf", "1e308", "-1e308", "abc",
                                                          "1e-320", "0", '"', "\x00"]))
    if draw(st.booleans()):
        row = row.drop(columns=[draw(st.sampled_from(cols))])
    text = row.to_csv(index=False)
    if kind == "encoded":
        enc = draw(st.sampled_from(["utf-8-sig", "utf-16", "cp1252", "utf-8"]))
        data = text.replace("\n", draw(st.sampled_from(["\n", "\r\n"]))).encode(enc, errors="replace")
        return data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data
    return text.encode()


@_settings(40)
@given(data=st.data())
def test_generated_features_csvs_through_predict(data, model_setup, tmp_path_factory, capsys):
    d, model, base = model_setup
    f = tmp_path_factory.mktemp("f") / "features.csv"
    f.write_bytes(data.draw(features_files(base)))
    out = f.parent / "prediction.json"
    pid = str(base["patient_id"].iloc[0]) if data.draw(st.booleans()) else None
    argv = ["predict", "--model", str(model), "--features", str(f), "--out", str(out)]
    if pid:
        argv += ["--patient", pid]
    rc = run_invariant(argv, capsys, "features csv", f.parent)
    if rc == 0:
        probs = json.loads(out.read_text())["probabilities"]
        assert all(0.0 <= p <= 1.0 for p in probs.values())
    else:
        assert not out.exists()


NUMBERS = [0.0, -0.0, 1e-320, 1e300, -1e300, 1e6, -1e6, 40.0, 1e-12]


@st.composite
def model_edits(draw):
    return [(draw(st.sampled_from(["clinical", "RM_GTV", "DM_GTV", "DM_50Gy", "RDM", "combined"])),
             draw(st.sampled_from(["coefficients", "intercept", "min", "max", "drop-feature", "cutoff"])),
             draw(st.sampled_from(NUMBERS))) for _ in range(draw(st.integers(1, 3)))]


def apply_model_edits(content: dict, edits) -> dict:
    """A model file's content (parsed JSON) changed in place by drawn :func:`model_edits`; the corpus count
    (Testing/BadInputs/run_all.py) uses it too."""
    for name, what, value in edits:
        m = content["models"][name]
        if what == "intercept":
            m["intercept"] = value
        elif what == "cutoff":
            content["risk"]["cutoff"] = value
        elif what == "drop-feature" and m["features"]:
            for key in ("features", "coefficients", "min", "max", "sources"):
                if isinstance(m.get(key), list) and m[key]:
                    m[key] = m[key][1:]
        elif m.get(what):
            m[what] = [value] * len(m[what])
    return content


@_settings(40)
@given(edits=model_edits())
def test_generated_model_files_through_predict(edits, model_setup, tmp_path_factory, capsys):
    d, model, base = model_setup
    content = apply_model_edits(json.loads(model.read_text()), edits)
    f = tmp_path_factory.mktemp("m") / "model.json"
    try:
        save_model(content, f)     # a right checksum: validation and prediction run to the end
    except DoseRadiomicsError:
        OUTCOMES["model refused at save"] += 1
        return
    out = f.parent / "prediction.json"
    rc = run_invariant(["predict", "--model", str(f), "--features", str(d / "features.csv"), "--patient",
                        str(base["patient_id"].iloc[0]), "--clinical", "hb=120", "t_stage=T3", "--out", str(out)],
                       capsys, "model file", f.parent)
    if rc == 0:
        result = json.loads(out.read_text())
        assert all(0.0 <= p <= 1.0 and math.isfinite(p) for p in result["probabilities"].values())
        assert result["risk_group"] in ("high", "low", None)
    else:
        assert not out.exists()


# ----------------------------------------------------------------------------- DICOM headers

DOSE_TAGS = {
    "DoseSummationType": ["PLAN", "BEAM", "FRACTION", "", "NONSENSE"],
    "DoseUnits": ["GY", "CGY", "RELATIVE", "", "gy"],
    "DoseGridScaling": [1e-5, 1e-3, 0.0, -1e-5, 1e3, "delete"],
    "DoseType": ["PHYSICAL", "EFFECTIVE", "ERROR", "delete"],
    "GridFrameOffsetVector": ["shift", "reverse", "duplicate", "absolute", "delete"],
    "ImageOrientationPatient": [[1, 0, 0, 0, 1, 0], [0, 1, 0, 1, 0, 0], [1, 0.3, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0],
                                "delete"],
    "PixelSpacing": [[2.5, 2.5], [0.0, 2.5], [1e-9, 1e-9], "delete"],
    "FrameOfReferenceUID": ["1.2.3.4", "delete"],
}


@st.composite
def rtdose_edits(draw):
    tags = draw(st.lists(st.sampled_from(sorted(DOSE_TAGS)), min_size=1, max_size=3, unique=True))
    return [(t, draw(st.sampled_from(DOSE_TAGS[t]))) for t in tags]


def _edit_rtdose(ds, edits):
    for tag, value in edits:
        if value == "delete":
            if tag in ds:
                delattr(ds, tag)
        elif tag == "GridFrameOffsetVector":
            offsets = [float(v) for v in ds.GridFrameOffsetVector]
            z0 = float(ds.ImagePositionPatient[2])
            ds.GridFrameOffsetVector = {"shift": [v + 3.0 for v in offsets], "reverse": offsets[::-1],
                                        "duplicate": [offsets[0]] * len(offsets),
                                        "absolute": [z0 + v for v in offsets]}[value]
        else:
            setattr(ds, tag, value)


@_settings(25)
@given(edits=rtdose_edits())
def test_generated_rtdose_headers_through_extract(edits, dicom_base, tmp_path_factory, capsys):
    from make_corpus import _rewrite_dicom

    (base, _ct) = dicom_base
    d = tmp_path_factory.mktemp("rtdose")
    dose = _rewrite_dicom(base["dose"], d / "rtdose.dcm", lambda ds: _edit_rtdose(ds, edits))
    from DoseRadiomicsLib.readers import read_dose
    try:
        loaded = read_dose(dose)
    except DoseRadiomicsError as exc:
        OUTCOMES["rtdose header refused"] += 1
        assert str(dose) in str(exc)
        return
    values = sitk.GetArrayViewFromImage(loaded.image)
    assert np.isfinite(values).all() and 0 < values.max() <= 200
    OUTCOMES["rtdose header read"] += 1
    # a dose that reads goes through the whole command (the invariant, once per distinct header kind)
    key = tuple(sorted(t for t, _ in edits))
    if key in _EXTRACTED:
        return
    _EXTRACTED.add(key)
    out = d / "out"
    rc = run_invariant(["extract", "--ct", str(base["ct"]), "--dose", str(dose), "--gtv", str(base["gtv"]),
                        "--gtv-name", "Tumor Bed", "--quiet", "--no-png", "--config", "2d", "--out", str(out)],
                       capsys, "rtdose extract", out)
    assert (out / "features.csv").exists() == (rc == 0)


_EXTRACTED: set = set()


# ----------------------------------------------------------------------------- manifests

@pytest.fixture(scope="module")
def cohort_base(tmp_path_factory):
    from make_corpus import write_tiny_patient
    d = tmp_path_factory.mktemp("manifests")
    good = write_tiny_patient(d / "good", seed=6)
    (d / "a-folder").mkdir()
    (d / "garbage.nrrd").write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 99999 99999 99999\n\n")
    return d, good


ROW_KINDS = ["good", "missing", "folder", "devnull", "garbage", "label-0", "unit-bad", "unit-cgy"]
IDS = ["P1", "p1", "Jos\u00e9", "Jose\u0301", "A\u200bB", "=1+2", "x" * 70, "ok_2", "-", "a/b", "", "\u65e5\u672c"]


@st.composite
def manifests(draw, folder: Path, good: dict):
    rows = []
    for _ in range(draw(st.integers(1, 5))):
        # mostly valid ids, so that most manifests reach the extraction
        kind, pid = draw(st.sampled_from(ROW_KINDS)), draw(st.sampled_from([f"S{i}" for i in range(60)] + IDS))
        ct, dose, gtv, label, unit = str(good["ct"]), str(good["dose"]), str(good["gtv"]), "1", "Gy"
        if kind == "missing":
            ct = str(folder / "absent.nrrd")
        elif kind == "folder":
            dose = str(folder / "a-folder")
        elif kind == "devnull":
            gtv = "/dev/null"
        elif kind == "garbage":
            ct = str(folder / "garbage.nrrd")
        elif kind == "label-0":
            label = "0"
        elif kind == "unit-bad":
            unit = "Sv"
        elif kind == "unit-cgy":
            unit = "cGy"
        rows.append(f"{pid},{ct},{dose},{gtv},{label},{unit}")
    return "patient_id,ct,dose,gtv,gtv_label,dose_unit\n" + "\n".join(rows) + "\n"


@_settings(20)
@given(data=st.data())
def test_generated_manifests_through_cohort_extract(data, cohort_base, capsys):
    folder, good = cohort_base
    manifest = folder / "manifest.csv"
    manifest.write_text(data.draw(manifests(folder, good)), encoding="utf-8")
    out = folder / "out"      # shared: unchanged patients are skipped, as in a real rerun
    rc = run_invariant(["cohort-extract", "--manifest", str(manifest), "--out", str(out), "--workers", "1",
                        "--quiet"], capsys, "manifest", out)
    if rc == 0:
        from DoseRadiomicsLib.manifest import read_manifest
        ids = read_manifest(manifest).patient_ids
        features = pd.read_csv(out / "features.csv", dtype={"patient_id": str})
        failures = pd.read_csv(out / "failures.csv", dtype={"patient_id": str}, keep_default_na=False)
        assert sorted(list(features["patient_id"]) + list(failures["patient_id"])) == sorted(ids)
        assert not (out / ".lock").exists()
