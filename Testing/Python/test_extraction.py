"""Feature extraction: identical to pyradiomics called directly, the paper's names, counts enforced."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import SimpleITK as sitk

from DoseRadiomicsLib.crosssection import largest_cross_section
from DoseRadiomicsLib.errors import ExtractionError
from DoseRadiomicsLib.extraction import FeatureExtractor, expected_feature_count, load_parameters, parameter_file
from DoseRadiomicsLib.pipeline import ExtractionOptions, extract_rois
from DoseRadiomicsLib.rois import make_rois

# The paper's Tables 2-4 as printed (the OCR'd 'glcM' and 'glrIm' are 'glcm' and 'glrlm').
PAPER_FEATURES = """
exponential_glcM_Correlation lbp.3D.k_glszm_SizeZoneNonUniformity square_gldm_LargeDependenceLowGrayLevelEmphasis
wavelet.HHH_firstorder_Range wavelet.HHL_glcM_Correlation wavelet.HLH_firstorder_Mean
wavelet.HLH_glszm_SizeZoneNonUniformityNormalized wavelet.LHH_glcM_DifferenceVariance
lbp.3D.k_glszm_GrayLevelNonUniformity lbp.3D.k_glszm_GrayLevelNonUniformityNormalized logarithm_firstorder_Skewness
squareroot_firstorder_Kurtosis wavelet.HLH_gldm_DependenceEntropy wavelet.HLH_gldm_DependenceNonUniformityNormalized
wavelet.LHH_firstorder_Range wavelet.LHH_glrIm_GrayLevelNonUniformityNormalized wavelet.LHH_glrIm_GrayLevelVariance
squareroot_firstorder_InterquartileRange squareroot_firstorder_RobustMeanAbsoluteDeviation
wavelet.HHH_glszm_SmallAreaHighGrayLevelEmphasis wavelet.HHH_glszm_ZonePercentage
wavelet.HHL_gldm_LargeDependenceHighGrayLevelEmphasis wavelet.HLH_firstorder_90Percentile
wavelet.HLH_glrIm_ShortRunEmphasis wavelet.LLL_glcM_InverseVariance
""".split()


def paper_to_pyradiomics(name: str) -> str:
    image_type, rest = name.split("_", 1)
    rest = rest.replace("glcM_", "glcm_").replace("glrIm_", "glrlm_")
    return image_type.replace(".", "-") + "_" + rest


@pytest.fixture(scope="module")
def lung_slice(lung1):
    """lung1's largest GTV slice, cut with plain numpy (not with DoseRadiomics)."""
    ct = sitk.ReadImage(str(lung1["ct"]))
    label = sitk.ReadImage(str(lung1["label"]))
    ct_arr, lab_arr = sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(label) > 0
    k = int(np.argmax(lab_arr.sum(axis=(1, 2))))
    origin = np.array(ct.GetOrigin()) + np.array([0, 0, k * ct.GetSpacing()[2]])

    def one_slice(a, pixel):
        img = sitk.GetImageFromArray(a[k:k + 1].astype(pixel))
        img.SetSpacing(ct.GetSpacing())
        img.SetOrigin(tuple(origin))
        return img
    return one_slice(ct_arr, np.int16), one_slice(lab_arr, np.uint8), ct, label


def _pyradiomics_directly(params_path, image, mask):
    import radiomics
    from radiomics import featureextractor
    radiomics.setVerbosity(logging.ERROR)
    ex = featureextractor.RadiomicsFeatureExtractor(str(params_path))
    return {k: float(v) for k, v in ex.execute(image, mask).items() if not k.startswith("diagnostics")}


def test_paper_config_counts_1595_from_the_parameter_file():
    for modality in ("CT", "dose"):
        assert expected_feature_count(load_parameters(parameter_file("paper", modality))) == 1595
        assert expected_feature_count(load_parameters(parameter_file("2d", modality))) == 1032


def test_gtv_features_equal_pyradiomics_directly_and_carry_the_paper_names(lung_slice):
    ct_slice, gtv_slice, ct, label = lung_slice
    params = parameter_file("paper", "CT")
    reference = _pyradiomics_directly(params, ct_slice, gtv_slice)
    assert len(reference) == 1595

    # Through DoseRadiomics, starting from the 3D volumes.
    gtv3d = sitk.Cast(label > 0, sitk.sitkUInt8)
    section = largest_cross_section(gtv3d)
    dose = sitk.Cast(gtv3d, sitk.sitkFloat32) * 60.0     # any dose; only the GTV is compared here
    rois = make_rois(ct, dose, gtv3d, section)
    ours = FeatureExtractor(params).extract(rois.ct, rois.masks["GTV"], roi="GTV")
    assert set(ours) == set(reference)
    bad = [k for k in reference if not np.isclose(ours[k], reference[k], rtol=1e-6, atol=1e-12)]
    assert not bad, f"{len(bad)} features differ, e.g. {bad[:5]}"

    missing = [n for n in PAPER_FEATURES if paper_to_pyradiomics(n) not in ours]
    assert not missing, f"paper features not produced: {missing}"
    assert len(PAPER_FEATURES) == 25


def test_true_2d_configuration_yields_2d_features(lung_slice):
    ct_slice, gtv_slice, *_ = lung_slice
    feats = FeatureExtractor(parameter_file("2d", "CT")).extract(ct_slice, gtv_slice, roi="GTV")
    assert len(feats) == 1032
    assert "original_shape2D_PixelSurface" in feats and "lbp-2D_firstorder_Mean" in feats
    assert any(k.startswith("wavelet-LH_") for k in feats) and not any(k.startswith("wavelet-LLH") for k in feats)
    # PixelSurface is the GTV's area in mm2 on the slice
    sx, sy = ct_slice.GetSpacing()[:2]
    assert feats["original_shape2D_PixelSurface"] == pytest.approx(sitk.GetArrayFromImage(gtv_slice).sum() * sx * sy)


def test_dose_rois_use_the_dose_parameter_file(lung_slice):
    _, _, ct, label = lung_slice
    gtv3d = sitk.Cast(label > 0, sitk.sitkUInt8)
    dist = sitk.SignedMaurerDistanceMap(gtv3d, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    d = sitk.GetArrayFromImage(dist)
    dose = sitk.GetImageFromArray((66.0 / (1 + np.exp(np.clip((d - 6) / 3.0, -50, 50)))).astype(np.float32))
    dose.CopyInformation(ct)
    rois = make_rois(ct, dose, gtv3d, largest_cross_section(gtv3d), isodose_gy=(50,))
    row = extract_rois(rois, ExtractionOptions(isodose_gy=(50,)))
    assert len(row) == 3 * 1595
    direct = _pyradiomics_directly(parameter_file("paper", "dose"), rois.dose, rois.masks["50Gy-heat"])
    for k in ("original_firstorder_Mean", "wavelet-HLH_firstorder_90Percentile", "lbp-3D-k_glszm_ZonePercentage"):
        assert row[f"50Gy-heat__{k}"] == pytest.approx(direct[k], rel=1e-9)
    # the mean dose in the isodose ROI equals numpy's
    darr, marr = sitk.GetArrayFromImage(rois.dose), sitk.GetArrayFromImage(rois.masks["50Gy-heat"]) > 0
    assert row["50Gy-heat__original_firstorder_Mean"] == pytest.approx(darr[marr].mean(), rel=1e-6)
    assert darr[marr].min() >= 50.0


def test_a_short_feature_set_is_an_error_naming_the_missing_filter(lung_slice, monkeypatch):
    ct_slice, gtv_slice, *_ = lung_slice
    from radiomics import imageoperations
    fx = FeatureExtractor(parameter_file("paper", "CT"))

    def without_lbp(*a, **k):   # what pyradiomics' LBP3D does when it fails: logs, and yields nothing
        return iter(())
    monkeypatch.setattr(imageoperations, "getLBP3DImage", without_lbp)
    with pytest.raises(ExtractionError, match=r"returned 1316 features .* asks for 1595; no features from \['LBP3D'\]"):
        fx.extract(ct_slice, gtv_slice, roi="GTV", patient="P3")


def test_nan_in_the_image_is_refused(lung_slice):
    ct_slice, gtv_slice, *_ = lung_slice
    arr = sitk.GetArrayFromImage(ct_slice).astype(np.float32)
    arr[0, 0, 0] = np.nan
    bad = sitk.GetImageFromArray(arr)
    bad.CopyInformation(ct_slice)
    with pytest.raises(ExtractionError, match="NaN or infinite"):
        FeatureExtractor(parameter_file("paper", "CT")).extract(bad, gtv_slice, roi="GTV")
