"""The numerical-stability screen on a real OpenKBP patient, its exact shortcuts, and train's exclusion.

Independent worlds: pyradiomics called directly on the dose slice stored as float32 and as float64
(the issue's observation), pyradiomics' own first-order class for the change bounds, and the
extraction itself for the zero-perturbation identity.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import SimpleITK as sitk

from DoseRadiomicsLib import pipeline, stability
from DoseRadiomicsLib.crosssection import largest_cross_section
from DoseRadiomicsLib.rois import make_rois, roi_modality

Z_HIGH_PASS = ("wavelet-LLH", "wavelet-LHH", "wavelet-HLH", "wavelet-HHH")


@pytest.fixture(scope="module")
def patient(openkbp):
    """OpenKBP pt_10 (PTV70 as the GTV): its ROIs, the extraction's features and the screen."""
    d = openkbp("pt_10")
    ct, dose = sitk.ReadImage(str(d / "ct.nrrd")), sitk.ReadImage(str(d / "dose.nrrd"))
    gtv = sitk.Cast(sitk.ReadImage(str(d / "mask_PTV70.nrrd")) > 0, sitk.sitkUInt8)
    rois = make_rois(ct, dose, gtv, largest_cross_section(gtv))
    options = pipeline.ExtractionOptions()
    features = pipeline.extract_rois(rois, options)
    screen = stability.screen_rois(rois, options, features)
    return rois, options, features, screen


def _roi_features(features, roi):
    head = f"{roi}{pipeline.ROI_SEPARATOR}"
    return {k[len(head):]: v for k, v in features.items() if k.startswith(head)}


def test_the_loop_without_perturbation_reproduces_the_extraction(patient):
    """To the engine's proven parity (rtol 1e-9, atol 1e-12; bit for bit on pyradiomics' own route): the
    extraction computes an ROI's filtered images as one batch, the screen one image at a time, and a
    batch's sums may differ in the last bits; the screen's tolerance (1e-3) is far above that."""
    rois, options, features, _ = patient
    ex = pipeline.extractors(options)
    compared = 0
    for roi, mask in rois.masks.items():
        baseline = _roi_features(features, roi)
        values, recomputed = stability.perturbed_features(ex[roi_modality(roi)], rois.image_for(roi), mask, "none")
        assert set(values) == {k for k in baseline if "_shape_" not in k}
        differ = [k for k, v in values.items()
                  if not (np.isclose(v, baseline[k], rtol=1e-9, atol=1e-12) or (np.isnan(v) and np.isnan(baseline[k])))]
        assert not differ, f"{roi}: {len(differ)} features differ, e.g. {differ[:3]}"
        assert len(recomputed) == 17          # every image's texture classes were computed
        compared += len(values)
    assert compared == 3 * (1595 - 14)


@pytest.mark.parametrize("kind", stability.PERTURBATIONS)
def test_the_shortcuts_flag_what_computing_everything_flags(patient, kind):
    """Texture copied where the binning is unchanged and first order proven within tolerance: the same
    verdict, feature by feature, as computing every feature on the perturbed image."""
    rois, options, features, _ = patient
    ex = pipeline.extractors(options)
    for roi in ("GTV", "50Gy-heat"):
        fx, image, mask = ex[roi_modality(roi)], rois.image_for(roi), rois.masks[roi]
        baseline = _roi_features(features, roi)
        full, _ = stability.perturbed_features(fx, image, mask, kind)
        short, recomputed = stability.perturbed_features(fx, image, mask, kind, baseline,
                                                         stability.reference_images(fx, image, mask))
        assert set(short) == set(full)
        names = sorted(full)
        flags_full = stability.moved([baseline[n] for n in names], [full[n] for n in names])
        flags_short = stability.moved([baseline[n] for n in names], [short[n] for n in names])
        assert (flags_full == flags_short).all(), [n for n, a, b in zip(names, flags_full, flags_short) if a != b][:5]
        for n in names:
            if "_firstorder_" not in n and n.split("_")[0] not in recomputed:
                # same bins: same texture (exactly on pyradiomics' route; to the engine's parity, rtol 1e-9,
                # where the copied value comes from the extraction's batch and the other from one image)
                assert np.isclose(full[n], short[n], rtol=1e-9, atol=1e-12) or np.isnan(full[n]), n
        assert 0 < len(recomputed) < 17


def test_round_off_sub_bands_are_flagged_and_original_first_order_is_not(patient):
    rois, _, features, screen = patient
    unstable = screen["unstable"]
    assert screen["n_features_screened"] == 3 * 1595 and screen["n_unstable"] == len(unstable)
    for roi in ("GTV-heat", "50Gy-heat"):
        noise = [f"{roi}__{band}_firstorder_{n}" for band in Z_HIGH_PASS for n in
                 ("Mean", "Median", "90Percentile", "10Percentile", "Skewness")]
        missed = [k for k in noise if k not in unstable]   # the values of the noise itself
        assert len(missed) <= 2, missed
    assert "50Gy-heat__wavelet-HLH_firstorder_90Percentile" in unstable   # one of the paper's Table 2-4 kind
    assert not [k for k in unstable if "__original_firstorder_" in k]
    assert not [k for k in unstable if "_shape_" in k]
    # the sub-bands low-pass along z carry the dose itself: their first order is stable
    assert not [k for k in unstable if "wavelet-LLL_firstorder" in k]
    assert all(set(v) <= set(stability.PERTURBATIONS) and min(v.values()) > stability.RTOL for v in unstable.values())


def test_pyradiomics_itself_moves_the_flagged_features_between_float32_and_float64(patient):
    """The issue's observation, with pyradiomics called directly: the 50Gy-heat ROI's wavelet first
    order from the same dose slice stored as float32 and as float64. Every feature that moves there
    by more than the tolerance is flagged by the screen; none of the low-pass-along-z ones moves."""
    from radiomics import featureextractor
    rois, _, features, screen = patient
    ex = featureextractor.RadiomicsFeatureExtractor(binWidth=0.5, preCrop=True, padDistance=5, force2D=False)
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    ex.disableAllImageTypes()
    ex.enableImageTypeByName("Wavelet")
    ex.disableAllFeatures()
    ex.enableFeatureClassByName("firstorder")
    as32 = sitk.Cast(rois.dose, sitk.sitkFloat32)
    as64 = sitk.Cast(rois.dose, sitk.sitkFloat64)
    mask = rois.masks["50Gy-heat"]
    a = {k: float(v) for k, v in ex.execute(as32, mask).items() if k.startswith("wavelet")}
    b = {k: float(v) for k, v in ex.execute(as64, mask).items() if k.startswith("wavelet")}
    for k, v in a.items():   # the screen's baseline is pyradiomics' own float32 value
        assert v == features[f"50Gy-heat__{k}"] or np.isnan(v)
    moved = {k for k in a if stability.moved(a[k], b[k])}
    assert len(moved) >= 20 and all(k.split("_")[0] in Z_HIGH_PASS or k.split("_")[0] == "wavelet-HHL"
                                    for k in moved), sorted(moved)
    assert not moved - {k[len("50Gy-heat__"):] for k in screen["unstable"] if k.startswith("50Gy-heat__")}


def test_first_order_change_bounds_hold_against_pyradiomics(tmp_path):
    """The bounds that let the screen skip first order, checked against pyradiomics' first-order class
    on generated images and perturbations (small, large and one-voxel changes)."""
    from radiomics import firstorder
    rng = np.random.default_rng(7)
    checked = 0
    for case in range(40):
        shape = (1, 12, 14)
        ref = rng.normal(rng.uniform(-50, 50), rng.uniform(0.01, 20), shape)
        scale = 10.0 ** rng.uniform(-9, 0)
        pert = ref + scale * (rng.random(shape) - 0.5) * (rng.random(shape) < (0.05 if case % 3 == 0 else 1.0))
        mask = (rng.random(shape) < 0.7).astype(np.uint8)

        def fo(arr):
            img = sitk.GetImageFromArray(arr)
            img.SetSpacing((0.9, 1.1, 2.5))
            m = sitk.GetImageFromArray(mask)
            m.CopyInformation(img)
            f = firstorder.RadiomicsFirstOrder(img, m, binWidth=5.0, voxelArrayShift=3.0)
            f.enableAllFeatures()
            return {f"x_firstorder_{k}": float(v) for k, v in f.execute().items()}

        a, b = fo(ref), fo(pert)
        inside = mask.astype(bool)
        bounds = stability._first_order_bounds(ref[inside], pert[inside], a, "x_firstorder_",
                                               {"voxelArrayShift": 3.0}, (0.9, 1.1, 2.5))
        same_bins = np.array_equal(np.floor(ref[inside] / 5.0), np.floor(pert[inside] / 5.0))
        for k, bound in bounds.items():
            if k.endswith(("Entropy", "Uniformity")) and not same_bins:
                continue     # these bounds apply only where the binning is unchanged (the screen checks it)
            assert abs(a[k] - b[k]) <= bound, (case, k, a[k], b[k], bound)
            checked += 1
    assert checked > 40 * 12


def test_extract_writes_the_screen_in_the_record_and_the_sidecar(patient, tmp_path):
    rois, options, features, screen = patient
    result = pipeline.PatientResult("pt_10", features, {"settings_hash": "x", "stability": screen}, rois=rois)
    paths = pipeline.write_patient_outputs(result, tmp_path, png=False)
    doc = json.loads(paths["stability"].read_text())
    assert doc["patients_screened"] == ["pt_10"] and doc["n_features"] == 3 * 1595
    assert set(doc["features"]) == set(screen["unstable"])
    assert all(v["share"] == 1.0 and v["unstable_in"] == ["pt_10"] for v in doc["features"].values())
    ex = stability.read_sidecar(paths["stability"])
    assert {f for f, _ in ex.unstable} == set(screen["unstable"]) and ex.screened == {"pt_10"}


def test_a_sidecar_that_is_not_one_is_refused_naming_the_file(tmp_path):
    from DoseRadiomicsLib.errors import InputError
    bad = tmp_path / "feature_stability.json"
    bad.write_text('{"kind": "something else"}')
    with pytest.raises(InputError, match="feature_stability.json") as e:
        stability.read_sidecar(bad)
    assert str(bad) in str(e.value)
    bad.write_text("{not json")
    with pytest.raises(InputError, match="cannot read"):
        stability.read_sidecar(bad)


def test_train_leaves_out_features_unstable_in_training_patients_and_keep_unstable_restores_them(tmp_path):
    """Shares are counted on the training rows only: a feature unstable in every training patient is
    left out and named with its reason; one unstable only in validation patients stays; with
    --keep-unstable the models are those trained without any screen."""
    from test_training import synthetic_cohort

    from DoseRadiomicsLib.report import render_report
    from DoseRadiomicsLib.training import train_models

    features, manifest, _ = synthetic_cohort(n=120, n_noise=10, seed=5)
    kw = dict(seed=3, repeated_splits=0, loco=False, fingerprint=None)
    plain = train_models(features, manifest, **kw)
    train_ids = list(plain.patients.index[plain.patients["cohort"] == "train"])
    val_ids = list(plain.patients.index[plain.patients["cohort"] == "validation"])
    signal = plain.models["DM_50Gy"]["features"][0]             # selected without the screen
    only_validation = "GTV__original_firstorder_Signal0"
    ex = stability.Exclusion(((signal, frozenset(train_ids[: int(0.9 * len(train_ids))])),
                              (only_validation, frozenset(val_ids))),
                             frozenset(train_ids + val_ids), 0.5, "feature_stability.json")
    screened = train_models(features, manifest, stability=ex, **kw)
    sc = screened.cohort["stability_screen"]
    assert sc["applied"] and [r["feature"] for r in sc["excluded"]] == [signal]
    assert "unstable in" in sc["excluded"][0]["reason"] and sc["excluded"][0]["share"] == pytest.approx(0.9, abs=0.02)
    assert signal not in screened.models["DM_50Gy"]["features"]
    assert screened.cohort["dropped_features"]["unstable"] == 1
    html = render_report({**screened.to_dict(), "created": "", "schema": "", "schema_version": "", "checksum": ""})
    assert "Numerical-stability screen" in html and signal in html
    kept = train_models(features, manifest, stability=ex, keep_unstable=True, **kw)
    assert [r["feature"] for r in kept.cohort["stability_screen"]["kept_unstable"]] == [signal]
    for name in ("RM_GTV", "DM_GTV", "DM_50Gy", "RDM", "clinical", "combined"):
        assert kept.models[name]["features"] == plain.models[name]["features"]
        assert kept.models[name]["coefficients"] == plain.models[name]["coefficients"]
