"""Reading CT, dose and GTV: checked against the DICOM bytes, polygon areas and synthetic files."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from DoseRadiomicsLib import dicomrt
from DoseRadiomicsLib.errors import InputError
from DoseRadiomicsLib.readers import LoadedImage, gtv_report, read_ct, read_dose, read_gtv
from make_rt_fixtures import write_ct_series, write_seg_nrrd

BREAST_FRAME = "2.16.840.1.113662.2.12.0.3057.1241703565.36"


def shoelace(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def raw_dose(ds) -> np.ndarray:
    """Stored RTDOSE values straight from the PixelData bytes (not via any reader)."""
    assert ds.file_meta.TransferSyntaxUID in (pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.ExplicitVRLittleEndian)
    kind = "i" if ds.PixelRepresentation == 1 else "u"
    dtype = np.dtype(f"<{kind}{ds.BitsAllocated // 8}")
    return np.frombuffer(ds.PixelData, dtype=dtype).reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)


@pytest.fixture(scope="module")
def breast_dose(breast_rt):
    return read_dose(breast_rt["rtdose"])


@pytest.fixture(scope="module")
def breast_dose_ds(breast_rt):
    return pydicom.dcmread(breast_rt["rtdose"])


@pytest.fixture(scope="module")
def contour_grid(breast_rt):
    """The CT's in-plane geometry with one 3 mm slice per RTSTRUCT contour plane (the case ships
    one CT slice only): z from -122.44 to 168.56 mm."""
    ct = pydicom.dcmread(breast_rt["ct.0"], stop_before_pixels=True)
    ref = sitk.Image([int(ct.Columns), int(ct.Rows), 98], sitk.sitkInt16)
    ref.SetSpacing((float(ct.PixelSpacing[1]), float(ct.PixelSpacing[0]), 3.0))
    ref.SetOrigin((float(ct.ImagePositionPatient[0]), float(ct.ImagePositionPatient[1]), -122.44))
    return ref


def contours_of(rtss, roi_name):
    number = next(r.ROINumber for r in rtss.StructureSetROISequence if r.ROIName == roi_name)
    rc = next(rc for rc in rtss.ROIContourSequence if rc.ReferencedROINumber == number)
    return [np.asarray(c.ContourData, float).reshape(-1, 3) for c in rc.ContourSequence]


# ---------------------------------------------------------------- RTDOSE

def test_rtdose_max_geometry_and_details(breast_dose, breast_dose_ds):
    img = breast_dose.image
    assert img.GetPixelID() == sitk.sitkFloat32
    assert img.GetSize() == (194, 129, 98)
    assert img.GetSpacing() == pytest.approx((2.5, 2.5, 3.0))
    assert img.GetOrigin() == pytest.approx([float(v) for v in breast_dose_ds.ImagePositionPatient])
    assert float(sitk.GetArrayViewFromImage(img).max()) == pytest.approx(14.68, abs=0.005)
    assert breast_dose.frame_of_reference_uid == BREAST_FRAME
    d = breast_dose.details
    assert d["dose_grid_scaling"] == pytest.approx(1.4e-5)
    assert (d["original_units"], d["dose_type"], d["dose_summation_type"]) == ("GY", "PHYSICAL", "PLAN")
    assert d["max_dose_gy"] == pytest.approx(14.68, abs=0.005)


def test_rtdose_voxels_equal_raw_pixel_data_times_scaling(breast_dose, breast_dose_ds):
    raw = raw_dose(breast_dose_ds)
    scaling = float(breast_dose_ds.DoseGridScaling)
    hottest = np.unravel_index(np.argmax(raw), raw.shape)
    for k, j, i in [hottest, (50, 60, 100), (97, 0, 193)]:
        k, j, i = int(k), int(j), int(i)
        assert breast_dose.image.GetPixel(i, j, k) == pytest.approx(raw[k, j, i] * scaling, rel=1e-6, abs=1e-9)


def test_rtdose_in_cgy_reads_back_in_gy(breast_rt, breast_dose, breast_dose_ds, tmp_path):
    ds = pydicom.dcmread(breast_rt["rtdose"])
    ds.DoseUnits = "CGY"
    ds.PixelData = (raw_dose(ds).astype(np.uint64) * 100).astype("<u4").tobytes()  # same scaling -> cGy
    ds.save_as(tmp_path / "dose_cgy.dcm")
    cgy = read_dose(tmp_path / "dose_cgy.dcm")
    assert cgy.details["original_units"] == "CGY"
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(cgy.image),
                               sitk.GetArrayViewFromImage(breast_dose.image), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("form", ["absolute", "descending"])
def test_rtdose_frame_offset_forms_give_the_same_dose(breast_rt, breast_dose, tmp_path, form):
    ds = pydicom.dcmread(breast_rt["rtdose"])
    rel = np.asarray([float(v) for v in ds.GridFrameOffsetVector])
    z0 = float(ds.ImagePositionPatient[2])
    if form == "absolute":  # DICOM's second form: the offsets are z positions
        ds.GridFrameOffsetVector = [float(z0 + v) for v in rel]
    else:  # frames stored top-down: IPP at the last frame, negative offsets
        ds.PixelData = np.ascontiguousarray(raw_dose(ds)[::-1]).tobytes()
        ds.ImagePositionPatient = [float(ds.ImagePositionPatient[0]), float(ds.ImagePositionPatient[1]),
                                   float(z0 + rel[-1])]
        ds.GridFrameOffsetVector = [float(-(rel[-1] - v)) for v in rel[::-1]]
    ds.save_as(tmp_path / "dose.dcm")
    other = read_dose(tmp_path / "dose.dcm")
    assert other.image.GetOrigin() == pytest.approx(breast_dose.image.GetOrigin(), abs=1e-4)
    assert other.image.GetSpacing() == pytest.approx(breast_dose.image.GetSpacing())
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(other.image),
                                  sitk.GetArrayViewFromImage(breast_dose.image))


def test_rtdose_uneven_frames_are_interpolated(breast_rt, breast_dose, tmp_path):
    ds = pydicom.dcmread(breast_rt["rtdose"])
    keep = [k for k in range(98) if k != 10]
    ds.PixelData = np.ascontiguousarray(raw_dose(ds)[keep]).tobytes()
    ds.NumberOfFrames = len(keep)
    ds.GridFrameOffsetVector = [3.0 * k for k in keep]
    ds.save_as(tmp_path / "gap.dcm")
    gap = read_dose(tmp_path / "gap.dcm")
    assert gap.image.GetSize() == breast_dose.image.GetSize()
    assert "frames_resampled_from_offsets_mm" in gap.details
    got, full = sitk.GetArrayViewFromImage(gap.image), sitk.GetArrayViewFromImage(breast_dose.image)
    np.testing.assert_array_equal(got[keep], full[keep])
    np.testing.assert_allclose(got[10], 0.5 * (full[9] + full[11]), rtol=1e-6, atol=1e-6)


def test_rtdose_without_dose_grid_scaling_is_refused(breast_rt, tmp_path):
    ds = pydicom.dcmread(breast_rt["rtdose"])
    del ds.DoseGridScaling
    ds.save_as(tmp_path / "noscale.dcm")
    with pytest.raises(InputError, match="DoseGridScaling") as err:
        read_dose(tmp_path / "noscale.dcm", patient="P7")
    assert "noscale.dcm" in str(err.value) and "patient P7" in str(err.value)


# ---------------------------------------------------------------- non-DICOM dose

@pytest.fixture()
def dose_nrrd(tmp_path):
    arr = np.linspace(0, 7000, 4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)  # cGy
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((2.0, 2.0, 3.0))
    return arr, img, tmp_path


def test_nrrd_dose_needs_a_declared_unit(dose_nrrd):
    arr, img, tmp = dose_nrrd
    sitk.WriteImage(img, str(tmp / "dose.nrrd"))
    with pytest.raises(InputError, match="--dose-unit") as err:
        read_dose(tmp / "dose.nrrd", patient="P1")
    assert "dose.nrrd" in str(err.value)
    cgy = read_dose(tmp / "dose.nrrd", unit="cGy")
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(cgy.image), arr / 100, rtol=1e-6)
    assert cgy.image.GetPixelID() == sitk.sitkFloat32


def test_nrrd_dose_unit_from_header_key(dose_nrrd):
    arr, img, tmp = dose_nrrd
    img.SetMetaData("dose_unit", "cGy")
    sitk.WriteImage(img, str(tmp / "dose.nrrd"))
    got = read_dose(tmp / "dose.nrrd")
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(got.image), arr / 100, rtol=1e-6)
    assert got.details["max_dose_gy"] == pytest.approx(70.0)
    with pytest.raises(InputError, match="declares"):
        read_dose(tmp / "dose.nrrd", unit="Gy")


@pytest.mark.parametrize("reader", [read_ct, read_dose,
                                    lambda p, patient=None: read_gtv(p, sitk.Image([2, 2, 2], sitk.sitkUInt8),
                                                                     patient=patient)])
def test_missing_and_empty_files_are_named(reader, tmp_path):
    with pytest.raises(InputError, match="does not exist") as err:
        reader(tmp_path / "nothere.nrrd", patient="P3")
    assert "nothere.nrrd" in str(err.value) and "patient P3" in str(err.value)
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(InputError, match="is empty") as err:
        reader(tmp_path / "empty.dcm")
    assert "empty.dcm" in str(err.value)


# ---------------------------------------------------------------- CT

def test_one_slice_dicom_ct(breast_rt):
    ct = read_ct(breast_rt["ct.0"])
    ds = pydicom.dcmread(breast_rt["ct.0"])
    assert ct.image.GetSize() == (512, 512, 1)
    assert ct.image.GetOrigin() == pytest.approx([float(v) for v in ds.ImagePositionPatient])
    assert ct.image.GetSpacing()[:2] == pytest.approx((1.074219, 1.074219))
    assert ct.frame_of_reference_uid == BREAST_FRAME
    stored = np.frombuffer(ds.PixelData, dtype="<i2" if ds.PixelRepresentation else "<u2")
    hu = stored.reshape(ds.Rows, ds.Columns) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(ct.image)[0], hu)


@pytest.fixture()
def synthetic_series(tmp_path, breast_rt):
    rng = np.random.default_rng(3)
    hu = rng.integers(-1000, 2500, size=(6, 9, 11)).astype(float)
    angle = np.radians(20.0)  # a rotated patient orientation, so direction handling is exercised
    row, col = (np.cos(angle), np.sin(angle), 0.0), (-np.sin(angle), np.cos(angle), 0.0)
    folder = tmp_path / "ct"
    paths = write_ct_series(folder, hu, spacing=(0.8, 0.9, 2.5), origin=(-100.5, -80.25, 33.0),
                            row=row, col=col, frame_uid="1.2.826.0.1.3680043.99.1")
    # Objects that share a CT folder in practice must be ignored.
    shutil.copy(breast_rt["rtss"], folder / "rtss.dcm")
    (folder / "notes.txt").write_text("not DICOM")
    return hu, row, col, folder, paths


def test_dicom_series_sorted_by_position(synthetic_series):
    hu, row, col, folder, paths = synthetic_series
    expected_direction = np.column_stack([row, col, np.cross(row, col)]).ravel()
    for source in (folder, paths[2]):
        ct = read_ct(source)
        assert ct.image.GetSize() == (11, 9, 6)
        assert ct.image.GetSpacing() == pytest.approx((0.8, 0.9, 2.5))
        assert ct.image.GetOrigin() == pytest.approx((-100.5, -80.25, 33.0))
        assert ct.image.GetDirection() == pytest.approx(tuple(expected_direction))
        assert ct.frame_of_reference_uid == "1.2.826.0.1.3680043.99.1"
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(ct.image), hu)


def test_dicom_series_with_a_missing_slice_is_refused(synthetic_series):
    hu, row, col, folder, paths = synthetic_series
    by_z = sorted(paths, key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    by_z[3].unlink()
    with pytest.raises(InputError, match="uneven slice spacing"):
        read_ct(folder)


def test_ct_given_an_rtdose_is_refused(breast_rt):
    with pytest.raises(InputError, match="RTDOSE") as err:
        read_ct(breast_rt["rtdose"])
    assert "rtdose.dcm" in str(err.value)


# ---------------------------------------------------------------- RTSTRUCT

@pytest.mark.parametrize("roi", ["Tumor Bed", "Heart"])
def test_rtstruct_mask_area_matches_polygon_area(breast_rt, contour_grid, roi):
    rtss = pydicom.dcmread(breast_rt["rtss"])
    mask = read_gtv(breast_rt["rtss"], contour_grid, name=roi.upper())  # names match case-insensitively
    arr = sitk.GetArrayViewFromImage(mask)
    assert mask.GetPixelID() == sitk.sitkUInt8 and set(np.unique(arr)) <= {0, 1}
    sx, sy, _ = contour_grid.GetSpacing()
    z0 = contour_grid.GetOrigin()[2]
    contours = contours_of(rtss, roi)
    zs = [round(float(c[0, 2]), 2) for c in contours]
    checked = 0
    for c, z in zip(contours, zs):
        area = shoelace(c[:, :2])
        if zs.count(z) > 1 or area < 300:  # lone contours big enough for a 2 % pixel-count check
            continue
        k = int(round((z - z0) / 3.0))
        assert arr[k].sum() * sx * sy == pytest.approx(area, rel=0.02), f"{roi} z={z}"
        checked += 1
    assert checked >= 5
    assert any("no DICOM frame of reference" in w for w in gtv_report(mask)["warnings"])


def test_rtstruct_inner_contour_is_a_hole(breast_rt, contour_grid, tmp_path):
    rtss = pydicom.dcmread(breast_rt["rtss"])
    number = next(r.ROINumber for r in rtss.StructureSetROISequence if r.ROIName == "Tumor Bed")
    rc = next(rc for rc in rtss.ROIContourSequence if rc.ReferencedROINumber == number)
    outer = max(rc.ContourSequence, key=lambda c: shoelace(np.asarray(c.ContourData, float).reshape(-1, 3)[:, :2]))
    pts = np.asarray(outer.ContourData, float).reshape(-1, 3)
    centre = pts.mean(axis=0)
    inner_pts = centre + 0.5 * (pts - centre)  # same plane, half the size: a hole
    hole = pydicom.Dataset()
    hole.ContourGeometricType = "CLOSED_PLANAR"
    hole.NumberOfContourPoints = len(inner_pts)
    hole.ContourData = [float(v) for v in inner_pts.ravel()]
    rc.ContourSequence.append(hole)
    rtss.save_as(tmp_path / "rtss_hole.dcm")
    mask = sitk.GetArrayFromImage(read_gtv(tmp_path / "rtss_hole.dcm", contour_grid, name="Tumor Bed"))
    k = int(round((pts[0, 2] - contour_grid.GetOrigin()[2]) / 3.0))
    sx, sy, _ = contour_grid.GetSpacing()
    expected = shoelace(pts[:, :2]) - shoelace(inner_pts[:, :2])
    assert mask[k].sum() * sx * sy == pytest.approx(expected, rel=0.02)
    ci, cj = contour_grid.TransformPhysicalPointToIndex(tuple(centre))[:2]
    assert mask[k, cj, ci] == 0


def test_scanline_fill_agrees_with_matplotlib():
    from matplotlib.path import Path as MplPath

    rng = np.random.default_rng(11)
    jj, ii = np.mgrid[0:45, 0:50]
    centres = np.column_stack([ii.ravel(), jj.ravel()])
    for _ in range(25):
        angles = np.sort(rng.uniform(0, 2 * np.pi, 25))
        outer = np.column_stack([25 + rng.uniform(5, 20, 25) * np.cos(angles),
                                 22 + rng.uniform(5, 20, 25) * np.sin(angles)])
        inner = np.column_stack([25 + 3.3 * np.cos(angles), 22 + 3.3 * np.sin(angles)])
        ours = dicomrt.fill_polygons([outer, inner], 50, 45)
        theirs = MplPath(outer).contains_points(centres) ^ MplPath(inner).contains_points(centres)
        # centres on a contour (within the stated tolerance) are the ROI's too: brute-force distances
        on = np.zeros(len(centres), bool)
        for poly in (outer, inner):
            a, b = poly, np.roll(poly, -1, axis=0)
            d = b - a
            w = centres[:, None, :] - a[None]
            t = ((w * d[None]).sum(-1) / (d ** 2).sum(-1)[None]).clip(0, 1)
            on |= (np.linalg.norm(w - t[..., None] * d[None], axis=-1) <= dicomrt.ON_CONTOUR_TOLERANCE_PX).any(axis=1)
        np.testing.assert_array_equal(ours, (theirs | on).reshape(45, 50))


def test_rtstruct_on_the_dose_grid_gives_the_prescribed_target_dose(breast_rt, breast_dose):
    # Geometry check end to end: the boost target (Tumor Bed) receives the 14 Gy prescription.
    mask = read_gtv(breast_rt["rtss"], breast_dose, name="Tumor Bed")
    dose = sitk.GetArrayViewFromImage(breast_dose.image)[sitk.GetArrayViewFromImage(mask) > 0]
    assert 13.5 < float(np.median(dose)) < 14.68
    assert float(dose.min()) > 12.0


def test_rtstruct_on_the_one_slice_ct(breast_rt):
    rtss = pydicom.dcmread(breast_rt["rtss"])
    ct = read_ct(breast_rt["ct.0"])
    mask = read_gtv(breast_rt["rtss"], ct, name="BODY")
    report = gtv_report(mask)
    assert report["slices"] == [0] and "outside the CT slices" in report["warnings"][0]
    body = [c for c in contours_of(rtss, "BODY") if abs(c[0, 2] - 168.56) < 0.01]
    areas = [shoelace(c[:, :2]) for c in body]
    sx, sy, _ = ct.image.GetSpacing()
    # The large outlines here are disjoint (no holes): mask area = sum of the polygon areas.
    assert sitk.GetArrayViewFromImage(mask).sum() * sx * sy == pytest.approx(sum(areas), rel=0.02)


def test_unknown_roi_lists_available_names(breast_rt, contour_grid):
    with pytest.raises(InputError) as err:
        read_gtv(breast_rt["rtss"], contour_grid, name="GTV", patient="boost")
    text = str(err.value)
    assert "no structure named 'GTV'" in text and "'Tumor Bed'" in text and "'Heart'" in text
    assert "rtss.dcm" in text and "patient boost" in text
    with pytest.raises(InputError, match="--gtv-name, one of: 'BODY', 'Areola'"):
        read_gtv(breast_rt["rtss"], contour_grid)
    with pytest.raises(InputError, match="structure 'Areola' has no contours"):
        read_gtv(breast_rt["rtss"], contour_grid, name="areola")


def test_rtstruct_frame_of_reference_must_match_the_ct(breast_rt, contour_grid):
    other = LoadedImage(contour_grid, "ct", "1.2.3.4.5")
    with pytest.raises(InputError, match="frame of reference"):
        read_gtv(breast_rt["rtss"], other, name="Tumor Bed")


# ---------------------------------------------------------------- labelmaps and .seg.nrrd

def test_labelmap_on_its_own_and_on_a_cropped_grid(lung1, tmp_path):
    ct = read_ct(lung1["ct"])
    mask = read_gtv(lung1["label"], ct)
    assert int(sitk.GetArrayViewFromImage(mask).sum()) == 837
    assert mask.GetSize() == ct.image.GetSize() and mask.GetOrigin() == ct.image.GetOrigin()
    # A labelmap cropped around the tumour (its own, smaller grid) lands back on the same voxels.
    label = sitk.ReadImage(str(lung1["label"]))
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(label)
    x, y, z, nx, ny, nz = stats.GetBoundingBox(1)
    cropped = sitk.RegionOfInterest(label, (nx + 4, ny + 4, nz + 2), (x - 2, y - 2, z - 1))
    sitk.WriteImage(cropped, str(tmp_path / "crop.nii.gz"))
    back = read_gtv(tmp_path / "crop.nii.gz", ct)
    assert gtv_report(back)["resampled"] is True
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(mask))
    with pytest.raises(InputError, match=r"labels present: \[1\]"):
        read_gtv(lung1["label"], ct, label=2)


def test_seg_nrrd_segments_by_name_across_layers(tmp_path):
    shape = (4, 5, 6)
    layer0 = np.zeros(shape, np.uint8)
    layer0[1:3, 1:4, 1:5] = 1  # GTV: 2*3*4 = 24 voxels ...
    layer0[2, 2, 2] = 2        # ... minus one voxel taken by "Node" on the same layer
    layer1 = np.zeros(shape, np.uint8)
    layer1[0:2, 0:2, 0:3] = 1  # "Lung" overlaps GTV, so it sits on a second layer
    path = write_seg_nrrd(tmp_path / "case.seg.nrrd", [layer0, layer1],
                          [("GTV", 1, 0), ("Node", 2, 0), ("Lung", 1, 1)], spacing=(1.0, 1.0, 2.0),
                          origin=(1.0, 2.0, 3.0))
    # The reference CT is larger and starts one voxel earlier in x: the segment must move with it.
    ref = sitk.Image([8, 5, 4], sitk.sitkInt16)
    ref.SetSpacing((1.0, 1.0, 2.0))
    ref.SetOrigin((0.0, 2.0, 3.0))
    expected = {"gtv": layer0 == 1, "Node": layer0 == 2, "LUNG": layer1 == 1}
    for name, want in expected.items():
        got = sitk.GetArrayFromImage(read_gtv(path, ref, name=name))
        np.testing.assert_array_equal(got[:, :, 1:7], want.astype(np.uint8))
        assert got[:, :, 0].sum() == 0 and got[:, :, 7].sum() == 0
    with pytest.raises(InputError, match="no segment named 'Tumour'") as err:
        read_gtv(path, ref, name="Tumour")
    assert "'GTV', 'Node', 'Lung'" in str(err.value)
