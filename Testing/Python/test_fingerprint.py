"""The compatibility fingerprint: the model records the phantom's features, predict recomputes them.

What a user would check: the phantom is the same everywhere (pinned digest, its noise against a
pure-Python splitmix64), its features are what numpy says of its pixels, the same installation
agrees with itself, a real change of computation inside pyradiomics is refused naming the features
and versions, a version string alone changes nothing, and the bundled demo model predicts here (CLI,
both routes) and in any other environment found beside the repository (``.venv-slicer-*``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from changed_pyradiomics import glcm_contrast_plus_one_percent
import SimpleITK as sitk

from DoseRadiomicsLib import cli, fingerprint
from DoseRadiomicsLib.errors import ModelFileError
from DoseRadiomicsLib.modelfile import load_model
from DoseRadiomicsLib.pipeline import ExtractionOptions, options_settings_hash

REPO = Path(__file__).resolve().parents[2]
DEMO_MODEL = REPO / "Resources" / "DemoModel" / "model.json"
SAMPLE = REPO / "Resources" / "SampleData" / "OpenKBP-pt_10"
# sha256 of the phantom's CT, dose and GTV bytes (PHANTOM_VERSION 1), the same under numpy 1.26 and 2.x
PHANTOM_DIGEST = "f83f2775b1c92192"


@pytest.fixture(autouse=True)
def fresh_cache():
    fingerprint.clear_cache()
    yield
    fingerprint.clear_cache()


@pytest.fixture(scope="module")
def demo_model():
    return load_model(DEMO_MODEL)


def _splitmix64_python(i: int, stream: int) -> float:
    """splitmix64's finaliser with Python integers, as published (Steele, Lea, Flood 2014)."""
    m = (1 << 64) - 1
    z = (i * 0x9E3779B97F4A7C15 + stream * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    z ^= z >> 31
    return (z >> 11) / 2.0 ** 53


def test_phantom_is_pinned_and_its_noise_is_splitmix64():
    ct, dose, gtv = fingerprint.phantom_arrays()
    digest = hashlib.sha256(ct.tobytes() + dose.tobytes() + gtv.tobytes()).hexdigest()[:16]
    assert digest == PHANTOM_DIGEST, "the phantom changed: bump fingerprint.PHANTOM_VERSION and this digest"
    assert (ct.dtype, dose.dtype, gtv.dtype) == (np.int16, np.float32, np.uint8)
    index = np.array([0, 1, 7, 2303], dtype=np.uint64)
    for stream in (0, 5, 19):
        assert fingerprint._splitmix64(index, stream).tolist() == \
            [_splitmix64_python(int(i), stream) for i in index]
    # CT-like and dose-like: air, lung, soft tissue; a 66 Gy plateau over the tumour with a bath
    assert ct.min() == -1000 and -900 < np.median(ct[(ct < -500) & (ct > -999)]) < -780
    assert 40 < dose[gtv == 1].mean() < 66 and 0 < np.median(dose[(dose > 0) & (dose < 30)]) < 15


def test_phantom_features_are_what_numpy_says_of_its_pixels():
    options = ExtractionOptions()
    fp = fingerprint.compute(options)
    ct, dose, gtv = fingerprint.phantom_arrays()
    f = fp["features"]
    assert fp["phantom_version"] == fingerprint.PHANTOM_VERSION
    assert len(f) == 3 * 1595 and all(v is not None for v in f.values())
    assert f["GTV__original_firstorder_Mean"] == pytest.approx(ct[gtv == 1].mean(), rel=1e-12)
    assert f["GTV-heat__original_firstorder_Mean"] == pytest.approx(dose[gtv == 1].astype(float).mean(), rel=1e-6)
    iso = dose >= 50
    assert f["50Gy-heat__original_shape_VoxelVolume"] == pytest.approx(iso.sum() * 1.2 * 1.2 * 3.0, rel=1e-12)
    assert f["50Gy-heat__original_firstorder_Minimum"] >= 50
    assert f["GTV-heat__original_firstorder_90Percentile"] == pytest.approx(
        np.percentile(dose[gtv == 1].astype(float), 90), rel=1e-6)


def test_same_installation_agrees_with_itself(demo_model):
    options = ExtractionOptions(**demo_model["extraction"]["options"])
    first = fingerprint.compute(options)
    fingerprint.clear_cache()
    second = fingerprint.compute(options)
    assert fingerprint.compare(first["features"], second["features"]) == []
    assert first["features"] == second["features"]            # bit for bit, not just within tolerance
    assert fingerprint.check_model(demo_model, model_path=DEMO_MODEL)["compared"] == 3 * 1595


def test_compare_tolerance_is_relative_1e6():
    then = {"a__x": 100.0, "a__y": 0.0, "a__z": None, "a__w": 1.0}
    now = {"a__x": 100.0 * (1 + 5e-7), "a__y": 1e-13, "a__z": None, "a__w": 1.0 + 2e-6, "a__new": 3.0}
    names = [d[0] for d in fingerprint.compare(then, now)]
    assert names == ["a__new", "a__w"]   # the missing one first (infinitely different), then 2e-6
    assert fingerprint.compare({"a__x": None}, {"a__x": 1.0})[0][0] == "a__x"


def test_version_strings_change_neither_hash_nor_check(demo_model, monkeypatch):
    """The issue: SlicerRadiomics' pyradiomics says v3.1.0-2-g..., the model was made with 3.0.1."""
    import radiomics
    from DoseRadiomicsLib import environment

    options = ExtractionOptions(**demo_model["extraction"]["options"])
    before = options_settings_hash(options)
    monkeypatch.setattr(radiomics, "__version__", "v3.1.0-2-gd1a5d0b", raising=False)
    real = environment.library_versions
    monkeypatch.setattr(environment, "library_versions",
                        lambda: {**real(), "pyradiomics": "v3.1.0-2-gd1a5d0b", "numpy": "1.26.4"})
    assert options_settings_hash(options) == before == demo_model["extraction"]["settings_hash"]
    assert fingerprint.check_model(demo_model, model_path=DEMO_MODEL)["compared"] == 3 * 1595


def _glcm_contrast_plus_one_percent(monkeypatch):
    glcm_contrast_plus_one_percent(monkeypatch)
    return "glcm_Contrast"


def _percentile_lower(monkeypatch):
    from radiomics import firstorder
    monkeypatch.setattr(firstorder.RadiomicsFirstOrder, "get90PercentileFeatureValue",
                        lambda self: np.nanpercentile(self.targetVoxelArray, 90, axis=1, method="lower"))
    from DoseRadiomicsLib.engine import firstorder as engine_firstorder
    engine_percentiles = engine_firstorder.median_percentiles

    def changed(x):
        median, q = engine_percentiles(x)
        q = np.array(q)
        q[3] = np.nanpercentile(x, 90, axis=1, method="lower")
        return median, q
    monkeypatch.setattr(engine_firstorder, "median_percentiles", changed)
    return "firstorder_90Percentile"


def _bin_width_semantics(monkeypatch):
    """Fixed-width bins starting at the ROI's minimum (IBSI's rule) instead of at multiples of binWidth."""
    from radiomics import imageoperations
    original = imageoperations.getBinEdges

    def edges(parameterValues, **kwargs):
        if kwargs.get("binCount") is not None:
            return original(parameterValues, **kwargs)
        width, lo, hi = kwargs.get("binWidth", 25), np.min(parameterValues), np.max(parameterValues)
        return lo + width * np.arange(int((hi - lo) // width) + 2)
    monkeypatch.setattr(imageoperations, "getBinEdges", edges)
    return "_gl"          # texture features (glcm, glrlm, glszm, gldm) change


@pytest.mark.parametrize("change", [_glcm_contrast_plus_one_percent, _percentile_lower, _bin_width_semantics],
                         ids=["glcm-formula", "percentile-method", "bin-edges"])
def test_changed_computation_is_refused_naming_features_and_versions(demo_model, monkeypatch, change):
    names = change(monkeypatch)
    with pytest.raises(ModelFileError) as err:
        fingerprint.check_model(demo_model, model_path=DEMO_MODEL)
    msg = str(err.value)
    assert "\n" not in msg and str(DEMO_MODEL) in msg
    assert "reference features differently" in msg and names in msg
    # same versions: a library was patched; another environment (a Slicer-matched one): the versions named
    assert ("the library versions are the same" in msg) or ("versions that differ: " in msg)
    assert "retrain" in msg


def test_refusal_names_versions_then_and_now(demo_model, monkeypatch):
    _glcm_contrast_plus_one_percent(monkeypatch)
    model = json.loads(json.dumps(demo_model))
    model["checksum"] = None
    model["extraction"]["fingerprint"]["library_versions"]["numpy"] = "0.0.1"   # no environment has it
    with pytest.raises(ModelFileError, match=r"versions that differ: .*numpy 0\.0\.1 -> " + np.__version__):
        fingerprint.check_model(model)


def test_refusal_through_the_command_line_is_one_line(demo_model, monkeypatch, tmp_path, capsys):
    _glcm_contrast_plus_one_percent(monkeypatch)
    csv = tmp_path / "f.csv"
    csv.write_text(f"patient_id,settings_hash\np1,{demo_model['extraction']['settings_hash']}\n")
    code = cli.main(["predict", "--model", str(DEMO_MODEL), "--features", str(csv)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "glcm_Contrast" in err and "of the model's 4785 reference features" in err


def test_model_without_fingerprint_is_refused_with_retrain(demo_model):
    model = json.loads(json.dumps(demo_model))
    del model["extraction"]["fingerprint"]
    with pytest.raises(ModelFileError, match="no compatibility fingerprint.*retrain"):
        fingerprint.check_model(model, model_path="old.json")


def test_demo_model_predicts_via_the_command_line_both_routes(tmp_path, capsys):
    out_img = tmp_path / "img.json"
    code = cli.main(["predict", "--model", str(DEMO_MODEL), "--ct", str(SAMPLE / "ct.nrrd"),
                     "--dose", str(SAMPLE / "dose.nrrd"), "--dose-unit", "Gy",
                     "--gtv", str(SAMPLE / "mask_PTV70.nrrd"), "--patient", "pt_10",
                     "--clinical", "tnm_stage=III", "--out", str(out_img)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "compatibility: this installation computes the model's 4785 reference features" in printed
    by_images = json.loads(out_img.read_text())
    assert set(by_images["probabilities"]) == {"clinical", "RM_GTV", "DM_GTV", "DM_50Gy", "RDM", "combined"}

    # the features route, from the same patient's extract output
    assert cli.main(["extract", "--ct", str(SAMPLE / "ct.nrrd"), "--dose", str(SAMPLE / "dose.nrrd"),
                     "--dose-unit", "Gy", "--gtv", str(SAMPLE / "mask_PTV70.nrrd"), "--patient-id", "pt_10",
                     "--out", str(tmp_path / "x"), "--no-png", "--quiet"]) == 0
    out_feat = tmp_path / "feat.json"
    assert cli.main(["predict", "--model", str(DEMO_MODEL), "--features", str(tmp_path / "x" / "features.csv"),
                     "--clinical", "tnm_stage=III", "--out", str(out_feat)]) == 0
    by_features = json.loads(out_feat.read_text())["probabilities"]
    # pandas' default CSV float parser is not exactly round-trip: the last digit of a feature may differ
    assert by_features == pytest.approx(by_images["probabilities"], rel=1e-12)


CHECK_ELSEWHERE = """
import json, sys
from DoseRadiomicsLib import environment, fingerprint, modelfile
model = modelfile.load_model(sys.argv[1])
try:
    result = fingerprint.check_model(model)
except Exception as exc:
    result = {"error": str(exc)}
print(json.dumps({"result": result, "versions": fingerprint.environment_versions()}))
"""


def _other_pythons():
    """Other environments to check the demo model in: .venv-slicer-* beside the code, or listed in
    DOSERADIOMICS_OTHER_PYTHONS (os.pathsep-separated python executables)."""
    listed = [p for p in os.environ.get("DOSERADIOMICS_OTHER_PYTHONS", "").split(os.pathsep) if p]
    found = sorted(str(p) for p in REPO.glob(".venv-slicer-*/bin/python"))
    return listed + [p for p in found if p not in listed]


@pytest.mark.parametrize("python", _other_pythons() or [None])
def test_demo_model_is_accepted_in_other_environments(python):
    if python is None:
        pytest.skip("no other environment (.venv-slicer-* or DOSERADIOMICS_OTHER_PYTHONS) to compare with")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([python, "-c", CHECK_ELSEWHERE, str(DEMO_MODEL)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["result"].get("compared") == 3 * 1595, (out["versions"], out["result"])
