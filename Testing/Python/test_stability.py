"""The numerical-stability screen on real OpenKBP patients, its exact shortcuts, and train's exclusion.

Independent worlds: pyradiomics called directly on the dose slice stored as float32 and as float64
(the issue's observation), the full computation of every feature on the perturbed image for the
shortcuts, and the extraction itself for the zero-perturbation identity.
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


def _screened(openkbp, name):
    """An OpenKBP patient (PTV70 as the GTV): its ROIs, the extraction's features (keeping the filtered
    images, as extract_patient does), the screen of those images, and the kept images."""
    d = openkbp(name)
    ct, dose = sitk.ReadImage(str(d / "ct.nrrd")), sitk.ReadImage(str(d / "dose.nrrd"))
    gtv = sitk.Cast(sitk.ReadImage(str(d / "mask_PTV70.nrrd")) > 0, sitk.sitkUInt8)
    rois = make_rois(ct, dose, gtv, largest_cross_section(gtv))
    options = pipeline.ExtractionOptions()
    kept: dict = {}
    features = pipeline.extract_rois(rois, options, keep=kept)
    screen = stability.screen_rois(rois, options, features, filtered=kept)
    return rois, options, features, screen, kept


@pytest.fixture(scope="module")
def patient(openkbp):
    """OpenKBP pt_10."""
    return _screened(openkbp, "pt_10")


@pytest.fixture(scope="module")
def patient11(openkbp):
    """OpenKBP pt_11, whose GTV-heat has equal neighbouring doses (LBP3D ties)."""
    return _screened(openkbp, "pt_11")


def _roi_features(features, roi):
    head = f"{roi}{pipeline.ROI_SEPARATOR}"
    return {k[len(head):]: v for k, v in features.items() if k.startswith(head)}


def test_the_loop_without_perturbation_reproduces_the_extraction(patient):
    """To the engine's proven parity (rtol 1e-9, atol 1e-12; bit for bit on pyradiomics' own route)."""
    rois, options, features, _, _ = patient
    ex = pipeline.extractors(options)
    compared = 0
    for roi, mask in rois.masks.items():
        baseline = _roi_features(features, roi)
        values = stability.perturbed_features(ex[roi_modality(roi)], rois.image_for(roi), mask, "none")
        assert set(values) == {k for k in baseline if "_shape_" not in k}
        differ = [k for k, v in values.items()
                  if not (np.isclose(v, baseline[k], rtol=1e-9, atol=1e-12) or (np.isnan(v) and np.isnan(baseline[k])))]
        assert not differ, f"{roi}: {len(differ)} features differ, e.g. {differ[:3]}"
        compared += len(values)
    assert compared == 3 * (1595 - 14)


def test_the_screen_of_the_extractions_images_is_the_screen_of_images_filtered_again(patient):
    """The filtered images the extraction hands over are pyradiomics' own, bit for bit: screening them
    gives what filtering the unperturbed images again gives (what a caller without them gets)."""
    rois, options, features, screen, kept = patient
    assert set(kept) == set(rois.masks)
    again = stability.screen_rois(rois, options, features)
    assert again["unstable"] == screen["unstable"] and again["texture_recomputed"] == screen["texture_recomputed"]
    fx = pipeline.extractors(options)["dose"]
    (own,) = stability.unperturbed_groups(fx, rois.dose, {"50Gy-heat": rois.masks["50Gy-heat"]})
    handed = kept["50Gy-heat"]
    assert [n for _, n, _ in own["filtered"]] == [n for _, n, _ in handed["filtered"]]
    # inside the ROI, what the features see (pyradiomics' LBP3D leaves the voxels outside it uninitialised)
    inside = sitk.GetArrayViewFromImage(handed["masks"]["50Gy-heat"][0]) == 1
    for (a, _, _), (b, _, _) in zip(own["filtered"], handed["filtered"]):
        assert np.array_equal(sitk.GetArrayViewFromImage(a)[inside], sitk.GetArrayViewFromImage(b)[inside])


def test_the_shortcuts_flag_what_computing_everything_flags(patient):
    """Images whose values inside the ROI did not move skipped, texture copied where the binning is
    unchanged: per perturbation, the same verdict, feature by feature, as computing every feature
    on the perturbed image."""
    rois, options, features, screen, _ = patient
    ex = pipeline.extractors(options)
    for roi in ("GTV", "50Gy-heat"):
        fx, image, mask = ex[roi_modality(roi)], rois.image_for(roi), rois.masks[roi]
        baseline = _roi_features(features, roi)
        flagged_before: set = set()
        for kind in stability.PERTURBATIONS:
            full = stability.perturbed_features(fx, image, mask, kind)
            names = sorted(full)
            flags = stability.moved([baseline[n] for n in names], [full[n] for n in names])
            by_full = {n for n, f in zip(names, flags) if f}
            by_screen = {k.split("__", 1)[1] for k, v in screen["unstable"].items()
                         if k.startswith(f"{roi}__") and kind in v}
            # a class found wholly unstable under an earlier perturbation is not computed again
            assert by_screen <= by_full and not by_full - by_screen - flagged_before, (roi, kind)
            flagged_before |= by_screen
            assert 0 < len(screen["texture_recomputed"][roi][kind]) < 17
        assert flagged_before


@pytest.mark.parametrize("which", ["pt_10", "pt_11"])
def test_the_images_the_screen_does_not_filter_again_are_pyradiomics_own(which, patient, patient11):
    """The exact shortcuts of the perturbed filter chain (the extraction's images reused where the
    storage type cannot change them, LBP3D m1/m2 reused where the sign pattern is unchanged) hand
    the feature classes what pyradiomics' own filters give on the perturbed image: equal inside
    every ROI, image by image, for both perturbations. pt_11 has LBP3D ties that the storage
    perturbation flips (its m1/m2 are filtered again there), pt_10 none (reused)."""
    rois, options, _, _, kept = patient if which == "pt_10" else patient11
    ex = pipeline.extractors(options)
    reused = {}
    for roi, group in kept.items():
        fx = ex[roi_modality(roi)]
        settings = dict(fx._extractor.settings, label=fx.label)
        inside = sitk.GetArrayViewFromImage(group["masks"][roi][0]) == fx.label
        for kind in stability.PERTURBATIONS:
            images, same = stability._perturbed_filtered(fx._extractor, group, kind, settings, {})
            own = list(stability._filtered_images(fx._extractor, stability.perturb(group["image"], kind),
                                                  group["filter_mask"], settings))
            assert [n for _, n, _ in images] == [n for _, n, _ in own]
            for (a, name, _), (b, _, _) in zip(images, own):
                assert np.array_equal(sitk.GetArrayViewFromImage(a)[inside], sitk.GetArrayViewFromImage(b)[inside]), \
                    (roi, kind, name)
            reused[roi, kind] = {n for (_, n, _), r in zip(images, same) if r}
    value_only = {"original", "square", "squareroot", "logarithm", "exponential"}
    for roi in kept:
        assert value_only <= reused[roi, "storage"] and not value_only & reused[roi, "relative"]
    assert not {n for k, v in reused.items() for n in v if k[0] == "GTV" and n.startswith("lbp")}   # int16 CT
    lbp_m = {"lbp-3D-m1", "lbp-3D-m2"}
    assert lbp_m <= reused["50Gy-heat", "storage"] if which == "pt_10" else not lbp_m & reused["GTV-heat", "storage"]


def test_scipy_samples_a_float32_image_as_its_float64_copy_rounded(patient):
    """What the LBP3D shortcut takes from SciPy: map_coordinates (order 3, pyradiomics' call) on a
    float32 image gives the samples of its float64 copy rounded to float32 (it prefilters into
    float64 and interpolates in double whatever the input's type)."""
    from scipy.ndimage import map_coordinates
    _, _, _, _, kept = patient
    dose = sitk.GetArrayFromImage(kept["50Gy-heat"]["image"])
    assert dose.dtype == np.float32
    rng = np.random.default_rng(0)
    coords = rng.uniform(-1, 1, size=(3, 4000)) * np.array(dose.shape)[:, None] * 0.6 + np.array(dose.shape)[:, None] / 2
    coords[:, :6] = [[0, 0, 0, 0, 0, 0], [3, 4, 5, 5, 5, 5], [7, 7, 7, 8, 9, 10]]    # on voxels, too
    as32 = map_coordinates(dose, coords, order=3)
    as64 = map_coordinates(dose.astype(np.float64), coords, order=3)
    assert as32.dtype == np.float32 and as64.dtype == np.float64
    assert np.array_equal(as64.astype(np.float32), as32)


def test_round_off_sub_bands_are_flagged_and_original_first_order_is_not(patient):
    rois, _, features, screen, _ = patient
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


def _float32_against_float64(rois, roi, image_type, classes=None):
    """pyradiomics itself on the dose slice stored as float32 and as float64: the features of
    ``image_type`` (a pyradiomics image type) that move beyond the screen's tolerance."""
    from radiomics import featureextractor
    ex = featureextractor.RadiomicsFeatureExtractor(binWidth=0.5, preCrop=True, padDistance=5, force2D=False)
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    ex.disableAllImageTypes()
    ex.enableImageTypeByName(image_type)
    ex.disableAllFeatures()
    for c in classes or ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"):
        ex.enableFeatureClassByName(c)
    mask = rois.masks[roi]
    a, b = ({k: float(v) for k, v in ex.execute(sitk.Cast(rois.dose, t), mask).items() if not k.startswith("diagn")}
            for t in (sitk.sitkFloat32, sitk.sitkFloat64))
    return a, b, {k for k in a if stability.moved(a[k], b[k])}


def test_pyradiomics_itself_moves_the_flagged_features_between_float32_and_float64(patient):
    """The issue's observation, with pyradiomics called directly: the 50Gy-heat ROI's wavelet first
    order from the same dose slice stored as float32 and as float64. Every feature that moves there
    by more than the tolerance is flagged by the screen; none of the low-pass-along-z ones moves."""
    rois, _, features, screen, _ = patient
    a, _, moved = _float32_against_float64(rois, "50Gy-heat", "Wavelet", ("firstorder",))
    for k, v in a.items():   # the screen's baseline is pyradiomics' own float32 value
        assert v == features[f"50Gy-heat__{k}"] or np.isnan(v)
    assert len(moved) >= 20 and all(k.split("_")[0] in Z_HIGH_PASS or k.split("_")[0] == "wavelet-HHL"
                                    for k in moved), sorted(moved)
    assert not moved - {k[len("50Gy-heat__"):] for k in screen["unstable"] if k.startswith("50Gy-heat__")}


def test_lbp3d_features_move_where_equal_neighbouring_doses_make_ties_and_are_flagged(patient, patient11):
    """LBP3D m1/m2 compare each voxel with spline samples on its neighbours: a neighbour holding the
    voxel's own value is a tie, decided by round-off, which float32 and float64 storage decide
    differently. pt_11's GTV has such doses (quantised to 1e-3 Gy): pyradiomics itself moves its
    LBP3D features between float32 and float64, and the screen flags every one of them. pt_10's has
    none: they do not move there, and the screen flags none of pt_10's dose LBP3D m1/m2 features."""
    def equal_neighbours(rois, roi):
        dose = sitk.GetArrayFromImage(rois.dose)[0]
        inside = sitk.GetArrayFromImage(rois.masks[roi])[0] == 1
        return sum(int((inside & (np.roll(dose, shift, axis) == dose)).sum()) for shift in (1, -1) for axis in (0, 1))

    rois10, _, _, screen10, _ = patient
    _, _, moved10 = _float32_against_float64(rois10, "GTV-heat", "LBP3D")
    assert equal_neighbours(rois10, "GTV-heat") == 0 and not {k for k in moved10 if k.startswith("lbp-3D-m")}
    assert not [k for k in screen10["unstable"] if "-heat__lbp-3D-m" in k]

    rois11, _, _, screen11, _ = patient11
    _, _, moved11 = _float32_against_float64(rois11, "GTV-heat", "LBP3D")
    lbp_m = {k for k in moved11 if k.startswith("lbp-3D-m")}
    assert equal_neighbours(rois11, "GTV-heat") > 0 and len(lbp_m) >= 100
    assert not moved11 - {k[len("GTV-heat__"):] for k in screen11["unstable"] if k.startswith("GTV-heat__")}
    assert not [k for k in screen11["unstable"] if "__original_firstorder_" in k]


def test_extract_writes_the_screen_in_the_record_and_the_sidecar(patient, tmp_path):
    rois, options, features, screen, _ = patient
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
