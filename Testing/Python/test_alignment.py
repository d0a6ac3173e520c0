"""Dose-to-CT alignment: resampling against an independent trilinear computation, coverage,
transform files, rigid registration, and the errors for doses that cannot be placed."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.ndimage import map_coordinates

from DoseRadiomicsLib.alignment import align_dose_to_ct
from DoseRadiomicsLib.errors import AlignmentError
from DoseRadiomicsLib.readers import LoadedImage, read_ct, read_dose, read_gtv


@pytest.fixture(scope="module")
def kbp(openkbp):
    d = openkbp("pt_11")
    ct = read_ct(d / "ct.nrrd")
    dose = read_dose(d / "dose.nrrd", unit="Gy")
    gtv = read_gtv(d / "mask_PTV70.nrrd", ct)
    return ct, dose, gtv


def moved(image: sitk.Image, origin=None, direction=None) -> sitk.Image:
    out = sitk.Image(image)
    if origin is not None:
        out.SetOrigin(origin)
    if direction is not None:
        out.SetDirection(direction)
    return out


def physical_points(image: sitk.Image, index: np.ndarray) -> np.ndarray:
    """Physical points of (n, 3) continuous (i, j, k) indices, computed with numpy."""
    matrix = np.asarray(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    return np.asarray(image.GetOrigin()) + index @ matrix.T


def test_same_grid_is_the_dose_itself(kbp):
    ct, dose, gtv = kbp
    out, report = align_dose_to_ct(ct, dose, gtv=gtv)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(out), sitk.GetArrayViewFromImage(dose.image))
    assert report["method"] == "same frame" and report["gtv_dose_coverage"] == 1.0
    assert report["warnings"] == []


def test_shifted_rotated_ct_grid_matches_trilinear_interpolation(kbp):
    ct, dose, _ = kbp
    angle = np.radians(10.0)
    rot = (np.cos(angle), -np.sin(angle), 0.0, np.sin(angle), np.cos(angle), 0.0, 0.0, 0.0, 1.0)
    ct_grid = LoadedImage(moved(ct.image, origin=(31.1, -9.7, 0.45), direction=rot), "ct")
    out, report = align_dose_to_ct(ct_grid, dose)
    got = sitk.GetArrayViewFromImage(out)
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 128, size=(4000, 3))
    pts = physical_points(ct_grid.image, idx.astype(float))
    # The dose grid has identity direction: its continuous index is (p - origin) / spacing.
    cidx = (pts - np.asarray(dose.image.GetOrigin())) / np.asarray(dose.image.GetSpacing())
    inside = np.all((cidx >= 0) & (cidx <= 127), axis=1)
    assert inside.sum() > 1000
    dose_arr = sitk.GetArrayViewFromImage(dose.image)
    expected = map_coordinates(dose_arr, cidx[inside][:, ::-1].T, order=1)
    np.testing.assert_allclose(got[idx[inside, 2], idx[inside, 1], idx[inside, 0]], expected, atol=1e-4)
    far = np.any((cidx < -0.5) | (cidx > 127.5), axis=1)
    assert far.any() and not got[idx[far, 2], idx[far, 1], idx[far, 0]].any()  # 0 Gy outside the dose grid
    assert 0 < report["dose_covers_ct_fraction"] < 1


def test_partial_coverage_is_measured_and_reported(kbp):
    ct, dose, gtv = kbp
    gtv_arr = sitk.GetArrayViewFromImage(gtv)
    k = np.nonzero(gtv_arr)[0]
    cut = int(np.median(k))  # the dose grid ends halfway through the GTV (slice cut - 1 is its last)
    shifted = LoadedImage(moved(dose.image, origin=(0.0, 0.0, (cut - 128) * dose.image.GetSpacing()[2])), "dose")
    _, report = align_dose_to_ct(ct, shifted, gtv=gtv)
    expected = float((k < cut).sum() / k.size)
    assert report["gtv_dose_coverage"] == pytest.approx(expected)
    assert 0.2 < expected < 0.8
    assert any("of the GTV voxels lie inside the dose grid" in w for w in report["warnings"])


def test_dose_outside_the_gtv_or_the_ct_is_refused(kbp):
    ct, dose, gtv = kbp
    k = np.nonzero(sitk.GetArrayViewFromImage(gtv))[0]
    # A dose grid covering only slices above the GTV: it overlaps the CT, not the GTV.
    above = sitk.RegionOfInterest(dose.image, (128, 128, 127 - int(k.max())), (0, 0, int(k.max()) + 1))
    with pytest.raises(AlignmentError, match="GTV lies entirely outside the dose grid") as err:
        align_dose_to_ct(ct, LoadedImage(above, "dose_above.nrrd"), gtv=gtv, patient="pt_11")
    assert "dose_above.nrrd" in str(err.value) and "pt_11" in str(err.value)
    far = LoadedImage(moved(dose.image, origin=(0.0, 0.0, 2000.0)), "far.nrrd")
    with pytest.raises(AlignmentError, match="does not overlap the CT"):
        align_dose_to_ct(ct, far, gtv=gtv)


def test_different_frames_need_a_transform_or_registration(kbp):
    ct, dose, _ = kbp
    with pytest.raises(AlignmentError) as err:
        align_dose_to_ct(LoadedImage(ct.image, "ct", "1.2.3"), LoadedImage(dose.image, "rd.dcm", "1.2.4"))
    text = str(err.value)
    assert "different frames of reference" in text and "--transform" in text and "--register" in text


@pytest.fixture(scope="module")
def ct_pair(kbp):
    """A CT-like 'dose' in another frame: the CT moved by a known rigid transform ``true`` (which
    maps CT points to moving-image points, the ITK resampling convention)."""
    ct, _, _ = kbp
    fixed = LoadedImage(sitk.Cast(ct.image, sitk.sitkFloat32), "ct", "1.2.3")

    def make(true: sitk.Transform, background=-1000.0):
        moving = sitk.Resample(fixed.image, fixed.image, true.GetInverse(), sitk.sitkLinear, background,
                               sitk.sitkFloat32)
        return LoadedImage(moving, "moving.nrrd", "1.2.4")
    return fixed, make


def test_transform_file_gives_the_exact_alignment(ct_pair, tmp_path):
    fixed, make = ct_pair
    spacing = np.asarray(fixed.image.GetSpacing())
    true = sitk.TranslationTransform(3, tuple((np.array([2, -3, 2]) * spacing).tolist()))  # whole voxels
    moving = make(true)
    sitk.WriteTransform(true, str(tmp_path / "ct_to_dose.tfm"))
    out, report = align_dose_to_ct(fixed, moving, transform=tmp_path / "ct_to_dose.tfm")
    assert report["method"] == "transform"
    assert report["transform"]["parameters"] == pytest.approx(list(true.GetOffset()))
    got, want = sitk.GetArrayViewFromImage(out), sitk.GetArrayViewFromImage(fixed.image)
    inner = (slice(3, -3), slice(4, -4), slice(3, -3))  # where the moved CT still has data
    np.testing.assert_allclose(got[inner], want[inner], atol=1e-3)
    with pytest.raises(AlignmentError, match="transform file does not exist"):
        align_dose_to_ct(fixed, moving, transform=tmp_path / "missing.tfm")


def test_registration_recovers_a_known_rigid_motion(ct_pair, kbp):
    fixed, make = ct_pair
    _, _, gtv = kbp
    true = sitk.Euler3DTransform()
    true.SetCenter(fixed.image.TransformContinuousIndexToPhysicalPoint((63.5, 63.5, 63.5)))
    true.SetRotation(0.0, 0.0, np.radians(3.0))
    true.SetTranslation((5.0, -4.0, 3.0))
    out, report = align_dose_to_ct(fixed, make(true), gtv=gtv, register=True)
    reg = report["registration"]
    assert report["method"] == "registration" and reg["iterations_total"] > 0 and reg["metric_value"] < 0
    found = sitk.Euler3DTransform()
    found.SetCenter(reg["rigid"]["centre_mm"])
    found.SetParameters(reg["rigid"]["parameters"])
    # Error of the recovered mapping over the target volume (PTV70 voxels) and the CT's central block.
    idx = np.argwhere(sitk.GetArrayViewFromImage(gtv))[:, ::-1].astype(float)
    idx = np.vstack([idx, np.array(np.meshgrid(*[np.linspace(32, 96, 5)] * 3)).reshape(3, -1).T])
    pts = physical_points(fixed.image, idx)
    err = [np.linalg.norm(np.subtract(found.TransformPoint(tuple(p)), true.TransformPoint(tuple(p))))
           for p in pts]
    assert max(err) < 1.0, f"max registration error {max(err):.2f} mm"
