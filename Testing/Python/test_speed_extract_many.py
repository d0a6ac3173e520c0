"""Several ROIs on one image: each filtered image computed once, every feature as pyradiomics per ROI."""

from __future__ import annotations

import logging
from collections import OrderedDict

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from DoseRadiomicsLib.errors import ROIError
from DoseRadiomicsLib.extraction import FeatureExtractor, load_parameters, parameter_file


def _dose_slice_and_masks():
    """A one-slice dose map (a noisy peak) with GTV-heat, 50 Gy and 40 Gy regions, the GTV inside both."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:48, 0:52]
    dose = 66.0 * np.exp(-((x - 24) ** 2 + (y - 22) ** 2) / (2 * 11.0 ** 2)) + rng.normal(0, 0.8, (48, 52))
    image = sitk.GetImageFromArray(dose[None].astype(np.float32))
    image.SetSpacing((2.0, 2.0, 3.0))
    image.SetOrigin((-40.0, 12.5, 7.0))

    def mask(arr):
        m = sitk.GetImageFromArray(arr[None].astype(np.uint8))
        m.CopyInformation(image)
        return m
    gtv = ((x - 22) / 6.0) ** 2 + ((y - 23) / 4.5) ** 2 <= 1
    return image, OrderedDict([("GTV-heat", mask(gtv)), ("50Gy-heat", mask(dose >= 50)),
                               ("40Gy-heat", mask(dose >= 40))])


def _extractor(tmp_path, **settings):
    params = load_parameters(parameter_file("paper", "dose"))
    params["setting"].update(settings)
    path = tmp_path / "dose.yaml"
    path.write_text(yaml.safe_dump(params))
    return FeatureExtractor(path), path


def _pyradiomics_per_roi(path, image, mask) -> dict:
    import radiomics
    from radiomics import featureextractor
    radiomics.setVerbosity(logging.ERROR)
    out = featureextractor.RadiomicsFeatureExtractor(str(path)).execute(image, mask)
    return {k: float(v) for k, v in out.items() if not k.startswith("diagnostics")}


def _assert_same(ours: dict, reference: dict):
    assert list(ours) == list(reference)          # same names, same order
    a = np.array([ours[k] for k in reference])
    b = np.array(list(reference.values()))
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=0, equal_nan=True)


def test_without_precrop_the_slice_is_filtered_once_and_every_roi_equals_pyradiomics(tmp_path):
    image, masks = _dose_slice_and_masks()
    fx, path = _extractor(tmp_path, preCrop=False)
    assert fx.shares_filtered_images
    many = fx.extract_many(image, masks)
    assert list(many) == list(masks)
    for roi, mask in masks.items():
        assert len(many[roi]) == 1595
        _assert_same(many[roi], _pyradiomics_per_roi(path, image, mask))
    # the regions really differ, so equality is not trivially one ROI copied
    assert many["GTV-heat"]["original_firstorder_Mean"] > many["40Gy-heat"]["original_firstorder_Mean"]


def test_with_precrop_rois_sharing_a_crop_box_share_filters_and_equal_pyradiomics(tmp_path):
    image, masks = _dose_slice_and_masks()
    # same bounding box as GTV-heat, different pixels: one crop, LBP3D on the union of the two masks
    gtv = sitk.GetArrayFromImage(masks["GTV-heat"])[0].astype(bool)
    ring = gtv.copy()
    ring[21:26, 19:26] = False
    ring_mask = sitk.GetImageFromArray(ring[None].astype(np.uint8))
    ring_mask.CopyInformation(image)
    rois = OrderedDict([("GTV-heat", masks["GTV-heat"]), ("ring", ring_mask), ("50Gy-heat", masks["50Gy-heat"])])
    fx, path = _extractor(tmp_path)           # the paper's dose configuration: preCrop true
    many = fx.extract_many(image, rois)
    for roi, mask in rois.items():
        _assert_same(many[roi], _pyradiomics_per_roi(path, image, mask))
    assert many["ring"]["lbp-3D-k_firstorder_Mean"] != many["GTV-heat"]["lbp-3D-k_firstorder_Mean"]


def test_settings_that_prevent_sharing_fall_back_to_one_call_per_roi(tmp_path):
    image, masks = _dose_slice_and_masks()
    fx, path = _extractor(tmp_path, normalize=True)
    assert not fx.shares_filtered_images
    many = fx.extract_many(image, OrderedDict(list(masks.items())[:2]))
    _assert_same(many["50Gy-heat"], _pyradiomics_per_roi(path, image, masks["50Gy-heat"]))


def test_an_empty_roi_among_several_is_named(tmp_path):
    image, masks = _dose_slice_and_masks()
    empty = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(image)
    masks["70Gy-heat"] = empty
    fx, _ = _extractor(tmp_path)
    with pytest.raises(ROIError, match="70Gy-heat"):
        fx.extract_many(image, masks, patient="P7")
