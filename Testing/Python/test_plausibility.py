"""Implausible inputs are refused early and clearly (issue 12, Build 2).

Each case runs ``doseradiomics extract`` (or extract-dosemap) in-process on a tiny patient with one
implausible property and expects exit 1, one error line saying what is wrong, no traceback, and
(where the issue measured minutes) an answer within seconds. Each limit with a knob is shown to
be raised by its environment variable: the same input then gets past it.
"""

from __future__ import annotations

import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DoseRadiomicsLib import cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BadInputs"))
from make_corpus import tiny_arrays, write_tiny_patient  # noqa: E402


def extract(paths: dict, out: Path, capsys, *extra) -> tuple:
    capsys.readouterr()
    t0 = time.perf_counter()
    rc = cli.main(["extract", "--ct", str(paths["ct"]), "--dose", str(paths["dose"]), "--gtv", str(paths["gtv"]),
                   "--quiet", "--no-png", "--out", str(out), *extra])
    return rc, capsys.readouterr().err, time.perf_counter() - t0


def one_error(rc, err, *needles) -> str:
    assert rc == 1, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and ": error: " in lines[0], lines
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def patient_with(tmp_path, edit=None, **header) -> dict:
    ct, dose, gtv = tiny_arrays(2)
    if edit:
        ct, dose, gtv = edit(ct, dose, gtv)
    return write_tiny_patient(tmp_path / "pt", arrays=(ct, dose, gtv), **header)


def test_cgy_dose_declared_gy_fails_in_seconds_with_a_hint(tmp_path, capsys):
    paths = patient_with(tmp_path, lambda c, d, g: (c, d * 100, g))   # 6,200 "Gy"
    rc, err, seconds = extract(paths, tmp_path / "out", capsys)
    one_error(rc, err, "above the plausible maximum of 200 Gy", "cGy", str(paths["dose"]))
    assert seconds < 5, seconds


def test_absurd_dose_elsewhere_in_the_file(tmp_path, capsys):
    def edit(c, d, g):
        d = d.copy()
        d[0, 0, 0] = 300647.0          # far from the GTV
        return c, d, g
    paths = patient_with(tmp_path, edit)
    rc, err, _ = extract(paths, tmp_path / "out", capsys)
    line = one_error(rc, err, "300647 Gy", "damaged or not a dose")
    assert "cGy read as Gy" not in line   # 3,006 Gy if cGy: no such hint


def test_the_dose_limit_is_raised_by_its_variable(tmp_path, capsys, monkeypatch):
    def edit(c, d, g):
        d = d.copy()
        d[0, 0, 0] = 250.0
        return c, d, g
    paths = patient_with(tmp_path, edit)
    rc, err, _ = extract(paths, tmp_path / "out", capsys)
    one_error(rc, err, "250 Gy", "DOSERADIOMICS_MAX_DOSE_GY")
    monkeypatch.setenv("DOSERADIOMICS_MAX_DOSE_GY", "300")
    rc, err, _ = extract(paths, tmp_path / "out", capsys)
    assert rc == 0, err


def test_negative_dose_inside_the_gtv(tmp_path, capsys):
    def edit(c, d, g):
        d = d.copy()
        d[np.nonzero(g)[0][0], np.nonzero(g)[1][0], np.nonzero(g)[2][0]] = -63.0
        return c, d, g
    rc, err, _ = extract(patient_with(tmp_path, edit), tmp_path / "out", capsys)
    one_error(rc, err, "negative", "-63 Gy")


def test_uint32_max_voxel_in_the_gtv_is_refused_before_pyradiomics(tmp_path, capsys):
    def edit(c, d, g):
        c = c.astype(np.int64)
        z, y, x = (a[len(a) // 2] for a in np.nonzero(g))
        c[:, y, x] = 4294967295          # on every slice, so on the chosen one
        return c, d, g
    rc, err, seconds = extract(patient_with(tmp_path, edit), tmp_path / "out", capsys)
    one_error(rc, err, "ROI GTV spans", "grey levels at a bin width of 25", "DOSERADIOMICS_MAX_GREY_LEVELS")
    assert seconds < 10, seconds


@pytest.mark.parametrize("label,needle", [("0", "background"), ("257", "cannot occur in a uint8 labelmap"),
                                          ("-1", "cannot occur in a uint8 labelmap")])
def test_gtv_label_outside_the_mask_type(label, needle, tmp_path, capsys):
    paths = patient_with(tmp_path)
    rc, err, _ = extract(paths, tmp_path / "out", capsys, "--gtv-label", label)
    one_error(rc, err, needle, str(paths["gtv"]))


def test_sheared_direction_matrix(tmp_path, capsys):
    shear = (1.0, 0.3, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    paths = patient_with(tmp_path, direction=shear)
    rc, err, _ = extract(paths, tmp_path / "out", capsys)
    one_error(rc, err, "direction matrix is not orthonormal", str(paths["ct"]))


def test_oblique_but_orthonormal_direction_is_accepted(tmp_path, capsys):
    a = np.radians(20)
    rot = (np.cos(a), -np.sin(a), 0.0, np.sin(a), np.cos(a), 0.0, 0.0, 0.0, 1.0)
    rc, err, _ = extract(patient_with(tmp_path, direction=rot), tmp_path / "out", capsys)
    assert rc == 0, err


def test_gtv_covering_the_whole_slice(tmp_path, capsys):
    rc, err, _ = extract(patient_with(tmp_path, lambda c, d, g: (c, d, np.ones_like(g))), tmp_path / "out", capsys)
    one_error(rc, err, "ROI GTV covers the whole slice", "inverted")


def test_isodose_names_that_print_alike_are_refused_before_reading(tmp_path, capsys):
    paths = {"ct": tmp_path / "absent-ct.nrrd", "dose": tmp_path / "d.nrrd", "gtv": tmp_path / "g.nrrd"}
    rc, err, _ = extract(paths, tmp_path / "out", capsys, "--isodose", "50", "50.0000001")
    one_error(rc, err, "same ROI name", "50Gy-heat")


def test_singular_transform(tmp_path, capsys):
    paths = patient_with(tmp_path)
    tx = sitk.AffineTransform(3)
    tx.SetMatrix([1, 0, 0, 0, 1, 0, 0, 0, 0])      # flattens every point onto one plane
    sitk.WriteTransform(tx, str(tmp_path / "flat.tfm"))
    rc, err, _ = extract(paths, tmp_path / "out", capsys, "--transform", str(tmp_path / "flat.tfm"))
    one_error(rc, err, "cannot be inverted", "flat.tfm")


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid small PNG whose header declares ``width`` x ``height`` (a decompression bomb's shape)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_picture_declaring_400_megapixels(tmp_path, capsys):
    paths = patient_with(tmp_path)
    picture = _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    capsys.readouterr()
    t0 = time.process_time()     # this process's work: the machine may be shared
    rc = cli.main(["extract-dosemap", "--ct", str(paths["ct"]), "--gtv", str(paths["gtv"]), "--dose-map",
                   str(picture), "--intensity", "--dose-range", "0", "70", "--quiet", "--out", str(tmp_path / "o")])
    one_error(rc, capsys.readouterr().err, "more pixels than the limit of 50,000,000", "DOSERADIOMICS_MAX_PICTURE_PIXELS", "bomb.png")
    assert time.process_time() - t0 < 10


def _dicom_picture_header_only(path: Path, rows: int, columns: int) -> Path:
    """A small RLE-compressed DICOM secondary capture whose header declares ``rows`` x ``columns``
    RGB pixels: the RLE decoder allocates all of them before it finds the data short."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless, generate_uid

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_rt_fixtures import save_dicom_file

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.Modality, ds.Rows, ds.Columns = "OT", rows, columns
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    header = struct.pack("<16I", 3, 64, 64 + 2, 64 + 4, *([0] * 12))    # 3 segments of one RLE run each
    ds.PixelData = encapsulate([header + b"\x00\x00" * 3])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True     # encapsulated, as pydicom 2 and 3 both need it
    save_dicom_file(ds, path)
    return path


def test_dicom_picture_declaring_too_many_pixels_is_refused_before_decoding(tmp_path, capsys, monkeypatch):
    paths = patient_with(tmp_path)
    picture = _dicom_picture_header_only(tmp_path / "bomb.dcm", 2000, 3000)     # 6 Mpx, 18 MB if decoded
    assert picture.stat().st_size < 2000
    monkeypatch.setenv("DOSERADIOMICS_MAX_PICTURE_PIXELS", "5000000")  # the default's 50 M, scaled down
    argv = ["extract-dosemap", "--ct", str(paths["ct"]), "--gtv", str(paths["gtv"]), "--dose-map", str(picture),
            "--intensity", "--dose-range", "0", "70", "--quiet", "--out", str(tmp_path / "o")]
    capsys.readouterr()
    rc = cli.main(argv)
    one_error(rc, capsys.readouterr().err, "more pixels than the limit of 5,000,000", "3000 x 2000 = 6,000,000",
              "DOSERADIOMICS_MAX_PICTURE_PIXELS", "bomb.dcm")
    # raised, the same header passes the limit and the short data is what is wrong
    monkeypatch.setenv("DOSERADIOMICS_MAX_PICTURE_PIXELS", "7000000")
    rc = cli.main(argv)
    line = one_error(rc, capsys.readouterr().err, "bomb.dcm")
    assert "more pixels than the limit" not in line


def test_contours_of_fewer_than_3_points_are_named(tmp_path, shared_data):
    from make_corpus import _rewrite_dicom, _rtss_edit_roi, write_dicom_base

    from DoseRadiomicsLib.errors import InputError
    from DoseRadiomicsLib.readers import read_ct, read_gtv
    base = write_dicom_base(tmp_path / "dicom", shared_data)

    def two_points(c):
        c.ContourData = list(c.ContourData)[:6]
        c.NumberOfContourPoints = 2

    rs = _rewrite_dicom(base["gtv"], tmp_path / "rtss_2pt.dcm",
                        lambda ds: _rtss_edit_roi(ds, "Tumor Bed", two_points))
    ct = read_ct(base["ct"])
    with pytest.raises(InputError) as info:
        read_gtv(rs, ct, name="Tumor Bed")
    assert "fewer than 3 points" in str(info.value) and "CLOSED_PLANAR" not in str(info.value)


def _slice_with_metal_beside_the_gtv():
    """A one-slice CT: the GTV spans 40 grey levels (0..1000 HU at 25 HU), a 30,000 HU voxel just
    outside it and inside pyradiomics' crop. The wavelet sub-bands spread its edge into the GTV, the
    logarithm and square-root filters rescale to it: the GTV spans hundreds of grey levels there."""
    rng = np.random.default_rng(5)
    ct = np.full((1, 40, 40), 40.0)
    ct[0, 15:25, 15:25] = rng.uniform(0, 1000, (10, 10))
    ct[0, 14, 20] = 30000.0
    mask = np.zeros((1, 40, 40), np.uint8)
    mask[0, 15:25, 15:25] = 1
    image, m = sitk.GetImageFromArray(ct), sitk.GetImageFromArray(mask)
    for x in (image, m):
        x.SetSpacing((1.0, 1.0, 3.0))
    return image, m


@pytest.mark.parametrize("route", ["one ROI", "ROIs sharing the filtered images"])
def test_a_filtered_image_spanning_too_many_grey_levels_is_refused(route, monkeypatch):
    from DoseRadiomicsLib.errors import InputError
    from DoseRadiomicsLib.extraction import FeatureExtractor, parameter_file

    image, mask = _slice_with_metal_beside_the_gtv()
    fx = FeatureExtractor(parameter_file("paper", "CT"))
    monkeypatch.setenv("DOSERADIOMICS_MAX_GREY_LEVELS", "300")     # the original's 40 pass
    with pytest.raises(InputError) as info:
        if route == "one ROI":
            fx.extract(image, mask, roi="GTV", patient="P")
        else:
            assert fx.shares_filtered_images
            fx.extract_many(image, {"GTV": mask, "GTV-copy": mask}, patient="P")
    message = str(info.value)
    assert "ROI GTV spans" in message and "more than 300" in message and "original" not in message
    assert "DOSERADIOMICS_MAX_GREY_LEVELS" in message
    assert "computeFeatures" not in vars(fx._extractor)       # the check is gone with the call
    if route == "one ROI":      # raised, the same slice extracts
        monkeypatch.setenv("DOSERADIOMICS_MAX_GREY_LEVELS", "2000")
        assert len(fx.extract(image, mask, roi="GTV")) == fx.expected_count
