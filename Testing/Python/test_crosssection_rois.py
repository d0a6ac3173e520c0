"""The largest cross-section and the three ROIs, checked against independent numpy computations."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from DoseRadiomicsLib.crosssection import extract_slice, largest_cross_section
from DoseRadiomicsLib.errors import ROIError
from DoseRadiomicsLib.rois import isodose_roi_name, make_rois


def _image(arr, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), pixel=None):
    img = sitk.GetImageFromArray(arr if pixel is None else arr.astype(pixel))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def test_largest_slice_on_lung1_equals_numpy(lung1):
    label = sitk.ReadImage(str(lung1["label"]))
    arr = sitk.GetArrayFromImage(label) > 0          # [z, y, x]
    sx, sy, _ = label.GetSpacing()
    areas = arr.sum(axis=(1, 2)) * sx * sy
    expected = int(np.argmax(areas))
    section = largest_cross_section(sitk.Cast(label > 0, sitk.sitkUInt8))
    assert section.index == expected
    assert section.area_mm2 == pytest.approx(areas[expected], rel=1e-12)
    # position: z of that slice centre (identity direction)
    z = label.GetOrigin()[2] + expected * label.GetSpacing()[2]
    assert section.position_mm == pytest.approx(z)


def test_area_in_mm2_not_voxels_for_other_axes():
    # a block 3 (x) x 5 (y) x 2 (z) voxels at anisotropic spacing: coronal slices (axis j) carry x*z.
    arr = np.zeros((6, 9, 8), np.uint8)
    arr[2:4, 3:8, 1:4] = 1
    arr[2, 3, 5] = 1     # one more voxel on a single coronal row, y=3
    img = _image(arr, spacing=(0.5, 2.0, 3.0))
    s = largest_cross_section(img, axis=1)
    assert s.index == 3
    assert s.area_mm2 == pytest.approx((3 * 2 + 1) * 0.5 * 3.0)
    one = extract_slice(img, s)
    assert one.GetSize() == (8, 6, 1)                 # slice axis moved last
    assert sitk.GetArrayFromImage(one).sum() == 7


def test_tie_broken_towards_centroid_deterministically():
    arr = np.zeros((7, 10, 10), np.uint8)
    for z in (1, 3, 5):                              # three slices with the same area
        arr[z, 2:6, 2:6] = 1
    arr[4, 4, 4] = 1                                  # small, pulls nothing: centroid near z=3
    s = largest_cross_section(_image(arr))
    assert s.tied_indices == (1, 3, 5)
    assert s.index == 3


def test_empty_gtv_is_a_named_error():
    with pytest.raises(ROIError, match="GTV is empty"):
        largest_cross_section(_image(np.zeros((3, 4, 4), np.uint8)), patient="P7")


def _case():
    """CT 20x20x5, a GTV disc on slice 2, a dose hill peaking at 66 Gy off-centre."""
    z, y, x = np.mgrid[0:5, 0:20, 0:20]
    gtv = ((x - 8) ** 2 + (y - 10) ** 2 <= 9) & (z == 2)
    dose = 66.0 * np.exp(-(((x - 9) ** 2 + (y - 10) ** 2) / 60.0)) * np.exp(-((z - 2) ** 2) / 8.0)
    dose[:, 0:3, 0:3] = 55.0                        # a separate hot spot, not touching the GTV
    ct = _image((x * 10 - 100).astype(np.int16))
    return ct, _image(dose, pixel=np.float32), _image(gtv, pixel=np.uint8), gtv, dose


def test_rois_match_numpy_thresholds():
    ct, dose, gtv_img, gtv, darr = _case()
    s = largest_cross_section(gtv_img)
    rois = make_rois(ct, dose, gtv_img, s, isodose_gy=(50, 60))
    assert list(rois.masks) == ["GTV", "GTV-heat", "50Gy-heat", "60Gy-heat"]
    counts = rois.pixel_counts()
    assert counts["GTV"] == counts["GTV-heat"] == int(gtv[2].sum())
    assert counts["50Gy-heat"] == int((darr[2].astype(np.float32) >= 50).sum())
    assert counts["60Gy-heat"] == int((darr[2].astype(np.float32) >= 60).sum())
    # dose ROIs live on the dose slice, the GTV on the CT slice
    assert rois.image_for("GTV") is rois.ct and rois.image_for("50Gy-heat") is rois.dose


def test_isodose_touching_gtv_drops_the_distant_hot_spot():
    ct, dose, gtv_img, gtv, darr = _case()
    s = largest_cross_section(gtv_img)
    all_ = make_rois(ct, dose, gtv_img, s, isodose_gy=(50,)).pixel_counts()["50Gy-heat"]
    near = make_rois(ct, dose, gtv_img, s, isodose_gy=(50,), isodose_touching_gtv=True).pixel_counts()["50Gy-heat"]
    assert all_ - near == 9                          # the 3x3 hot spot in the corner


def test_isodose_names():
    assert isodose_roi_name(50) == "50Gy-heat"
    assert isodose_roi_name(52.5) == "52.5Gy-heat"


def test_isodose_above_the_maximum_is_a_clear_error():
    ct, dose, gtv_img, *_ = _case()
    s = largest_cross_section(gtv_img)
    with pytest.raises(ROIError) as err:
        make_rois(ct, dose, gtv_img, s, isodose_gy=(70,), patient="P1")
    msg = str(err.value)
    assert "patient P1" in msg and "70Gy-heat is empty" in msg and "maximum dose on the slice" in msg


def test_dose_in_cgy_by_mistake_is_caught_by_an_empty_roi_message():
    ct, dose, gtv_img, *_ = _case()
    s = largest_cross_section(gtv_img)
    with pytest.raises(ROIError, match="dose units"):
        make_rois(ct, dose / 100.0, gtv_img, s)   # 0.66 "Gy": the user passed Gy for a cGy file inverted


def test_too_small_roi_is_named():
    ct, dose, gtv_img, gtv, darr = _case()
    s = largest_cross_section(gtv_img)
    n = int((darr[2].astype(np.float32) >= 65.5).sum())
    assert 0 < n < 4                                  # the case has a tiny hot core
    with pytest.raises(ROIError, match=f"65.5Gy-heat has {n} pixel\\(s\\) on slice 2, fewer than the 4"):
        make_rois(ct, dose, gtv_img, s, isodose_gy=(65.5,))


def test_dose_off_the_ct_grid_is_refused():
    ct, dose, gtv_img, *_ = _case()
    s = largest_cross_section(gtv_img)
    shrunk = sitk.RegionOfInterest(dose, [10, 10, 5], [0, 0, 0])
    with pytest.raises(ROIError, match="not on the CT grid"):
        make_rois(ct, shrunk, gtv_img, s)
