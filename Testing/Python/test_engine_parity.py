"""The feature engine (DoseRadiomicsLib/engine) against pyradiomics itself, feature by feature.

Reference: pyradiomics' own ``RadiomicsFeatureExtractor.execute`` on each ROI (whole ROIs) and its
``computeFeatures`` (generated images), never our code. Tolerance: rtol 1e-9, plus atol 1e-12 for
values at round-off level (a feature pyradiomics computes as a difference of nearly equal sums, e.g.
a symmetric image's ClusterShade or Skewness, is ~1e-16 in both and differs only in the noise).

Cheap in CI: two OpenKBP patients, lung1's GTV, two synthetic patients, both configurations, and
a few dozen generated images. The long run (reported in benchmarks/README.md):

    DOSERADIOMICS_ENGINE_EXAMPLES=3000 pytest Testing/Python/test_engine_parity.py -k generated
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from DoseRadiomicsLib import engine
from DoseRadiomicsLib.extraction import FeatureExtractor, parameter_file
from DoseRadiomicsLib.pipeline import ExtractionOptions, PatientInputs, extract_patient, extractors

RTOL, ATOL = 1e-9, 1e-12
EXAMPLES = int(os.environ.get("DOSERADIOMICS_ENGINE_EXAMPLES", "25"))


def _pyradiomics(params: dict):
    import radiomics
    from radiomics import featureextractor
    radiomics.setVerbosity(logging.ERROR)
    return featureextractor.RadiomicsFeatureExtractor(json.loads(json.dumps(params)))


def _assert_same(ours: dict, reference: dict, where: str):
    reference = {k: v for k, v in reference.items() if not k.startswith("diagnostics")}
    assert list(ours) == list(reference), f"{where}: names or order differ"
    a = np.array([float(ours[k]) for k in reference])
    b = np.array([float(v) for v in reference.values()])
    close = np.isclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True)
    bad = [f"{k}: engine {x!r}, pyradiomics {y!r}" for k, x, y, ok in zip(reference, a, b, close) if not ok]
    assert not bad, f"{where}: {len(bad)} of {len(a)} features differ:\n" + "\n".join(bad[:20])


def _check_patient(result, config: str, where: str):
    """Every feature of every ROI of ``result`` (extracted with the engine) against pyradiomics'
    execute on the same ROI, and the engine really used (no silent fallback everywhere)."""
    fx = extractors(ExtractionOptions(config=config))
    assert all(e.use_engine for e in fx.values())
    direct = {m: _pyradiomics(e.parameters) for m, e in fx.items()}
    rois = result.rois
    for name, mask in rois.masks.items():
        modality = "CT" if name == "GTV" else "dose"
        ours = fx[modality].extract(rois.image_for(name), mask, roi=name)
        _assert_same(ours, direct[modality].execute(rois.image_for(name), mask), f"{where} {config} {name}")


@pytest.fixture(autouse=True)
def _engine_counts():
    before = dict(engine.stats)
    yield
    assert engine.stats["engine"] >= before["engine"]


@pytest.mark.parametrize("pid, config", [("pt_10", "paper"), ("pt_1", "paper"), ("pt_10", "2d")])
def test_openkbp_patients_every_feature_of_every_roi_equals_pyradiomics(openkbp, pid, config):
    d = openkbp(pid)
    inputs = PatientInputs(pid, str(d / "ct.nrrd"), str(d / "dose.nrrd"), str(d / "mask_PTV70.nrrd"), dose_unit="Gy")
    before = engine.stats["engine"]
    result = extract_patient(inputs, ExtractionOptions(config=config), keep_images=True)
    assert engine.stats["engine"] - before >= 3 * 6 * 11          # 3 ROIs x 6 classes x >= 11 images
    _check_patient(result, config, pid)


@pytest.mark.parametrize("config", ["paper", "2d"])
def test_lung1_gtv_every_feature_equals_pyradiomics(lung1, config):
    ct = sitk.ReadImage(str(lung1["ct"]))
    label = sitk.ReadImage(str(lung1["label"]))
    arr, lab = sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(label) > 0
    k = int(np.argmax(lab.sum(axis=(1, 2))))
    image = sitk.GetImageFromArray(arr[k:k + 1])
    mask = sitk.GetImageFromArray(lab[k:k + 1].astype(np.uint8))
    for img in (image, mask):
        img.SetSpacing(ct.GetSpacing())
    fx = FeatureExtractor(parameter_file(config, "CT"))
    _assert_same(fx.extract(image, mask, roi="GTV"), _pyradiomics(fx.parameters).execute(image, mask), f"lung1 {config}")


@pytest.fixture(scope="module")
def synthetic_patients(tmp_path_factory):
    from DoseRadiomicsLib import synth
    from DoseRadiomicsLib.manifest import read_manifest
    folder = tmp_path_factory.mktemp("synth")
    synth.generate_cohort(2, seed=11, out_dir=folder)
    return read_manifest(folder / "manifest.csv").patients()


@pytest.mark.parametrize("config", ["paper", "2d"])
def test_synthetic_patients_every_feature_of_every_roi_equals_pyradiomics(synthetic_patients, config):
    for p in synthetic_patients[:1] if config == "2d" else synthetic_patients:
        _check_patient(extract_patient(p, ExtractionOptions(config=config), keep_images=True), config, p.patient_id)


def test_switched_off_the_extractor_is_pyradiomics_route_and_gives_the_same_features(openkbp, monkeypatch):
    d = openkbp("pt_10")
    fx = FeatureExtractor(parameter_file("paper", "dose"))
    monkeypatch.setenv("DOSERADIOMICS_ENGINE", "pyradiomics")
    off = FeatureExtractor(parameter_file("paper", "dose"))
    assert fx.use_engine and not off.use_engine
    assert fx.settings_hash == off.settings_hash and fx.expected_count == off.expected_count


# --- generated images: the feature classes on 1-3 slices, 1-200 ROI pixels -----------------------

def _configs():
    out = []
    for config in ("paper", "2d"):
        for modality in ("CT", "dose"):
            fx = FeatureExtractor(parameter_file(config, modality))
            out.append((f"{config}/{modality}", fx))
    return out


_FX = None


@st.composite
def images(draw):
    slices = draw(st.integers(1, 3))
    rows = draw(st.integers(1, 14))
    cols = draw(st.integers(1, max(1, min(14, 200 // (slices * rows)))))
    shape = (slices, rows, cols)
    kind = draw(st.sampled_from(["constant", "few", "many", "integers"]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "constant":
        arr = np.full(shape, draw(st.floats(-1000, 1000, allow_nan=False)))
    elif kind == "few":
        arr = rng.integers(0, draw(st.integers(2, 4)), shape) * draw(st.sampled_from([0.5, 25.0, 1.0]))
    elif kind == "integers":
        arr = rng.integers(-1024, 3000, shape).astype(float)
    else:
        arr = rng.normal(draw(st.floats(-500, 500)), draw(st.floats(0.1, 400)), shape)
    mask = rng.random(shape) < draw(st.floats(0.05, 1.0))
    if draw(st.booleans()) or not mask.any():      # single-pixel ROIs, often
        mask = np.zeros(shape, bool)
        mask[tuple(int(rng.integers(0, s)) for s in shape)] = True
    return arr, mask, draw(st.integers(0, 3))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=EXAMPLES <= 25)
@given(images())
def test_generated_images_every_class_equals_pyradiomics_compute_features(case):
    global _FX
    if _FX is None:
        _FX = _configs()
    arr, mask, which = case
    name, fx = _FX[which]
    image = sitk.GetImageFromArray(arr.astype(np.float32))
    image.SetSpacing((0.8, 1.1, 3.0))
    m = sitk.GetImageFromArray(mask.astype(np.uint8))
    m.CopyInformation(image)
    settings_ = fx._extractor.settings.copy()
    if settings_.get("force2D") and arr.shape[0] > 1:
        settings_["force2Ddimension"] = 0
    try:
        ref = fx._extractor.computeFeatures(image, m, "original", **settings_)
    except Exception as exc:    # pyradiomics refuses some inputs (one voxel: no angle); so must we
        with pytest.raises(type(exc)):
            engine.compute_features(image, m, "original", fx._extractor.enabledFeatures, settings_)
        return
    ours = engine.compute_features(image, m, "original", fx._extractor.enabledFeatures, settings_)
    _assert_same(ours, ref, f"{name} {arr.shape}, {int(mask.sum())} px")
