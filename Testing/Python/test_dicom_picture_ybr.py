"""DICOM secondary-capture dose-map pictures stored as YCbCr decode to the RGB that was encoded.

The pictures are generated here: colour blocks of known RGB, turned into YCbCr with the equations
of DICOM PS3.3 C.7.6.3.1.2 (YBR_FULL; YBR_FULL_422 shares Cb/Cr between horizontal pixel pairs),
written uncompressed, and as JPEG baseline (Pillow's encoder, whose JFIF stream is YCbCr 4:2:2) under
the transfer syntax 1.2.840.10008.1.2.4.50. A colour converted twice (the pydicom 3 defect) or not at
all (pydicom 2) is off by tens of levels; the checks allow 2 levels uncompressed (rounding) and 6 for
JPEG on block interiors. Runs under whatever pydicom is installed (3.x here; 2.4.4 in the Slicer 5.8
environment).
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from DoseRadiomicsLib import dosemap_colour as dc

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
BLOCK = 16  # even, and a multiple of the JPEG 4:2:2 MCU (16 x 8): chroma is constant inside a block
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255],
                    [255, 0, 255], [255, 128, 0], [40, 40, 40], [230, 230, 230], [20, 120, 200],
                    [180, 30, 90], [90, 200, 60]], dtype=np.uint8)


def _rgb_blocks() -> np.ndarray:
    rows, cols = 3, 4
    rgb = np.zeros((rows * BLOCK, cols * BLOCK, 3), np.uint8)
    for n, colour in enumerate(COLOURS):
        r, c = divmod(n, cols)
        rgb[r * BLOCK:(r + 1) * BLOCK, c * BLOCK:(c + 1) * BLOCK] = colour
    return rgb


def _ycbcr_full(rgb: np.ndarray) -> np.ndarray:
    """PS3.3 C.7.6.3.1.2, YBR_FULL (8 bits)."""
    r, g, b = (rgb[..., i].astype(float) for i in range(3))
    y = 0.2990 * r + 0.5870 * g + 0.1140 * b
    cb = -0.1687 * r - 0.3313 * g + 0.5000 * b + 128
    cr = 0.5000 * r - 0.4187 * g - 0.0813 * b + 128
    return np.clip(np.rint(np.stack([y, cb, cr], axis=-1)), 0, 255).astype(np.uint8)


def _dataset(rows: int, cols: int, photometric: str, syntax: str) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SECONDARY_CAPTURE, generate_uid(), "OT"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, photometric, 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    return ds


def _save(ds, path):
    # pydicom 2.x has no enforce_file_format; write_like_original=False is its spelling.
    try:
        ds.save_as(path, enforce_file_format=True)
    except TypeError:
        ds.save_as(path, write_like_original=False)
    return path


def _interiors(a: np.ndarray, margin: int = 4) -> np.ndarray:
    """The pixels of each block away from its edges (JPEG ringing lives at the edges)."""
    keep = np.zeros(a.shape[:2], bool)
    for r in range(0, a.shape[0], BLOCK):
        for c in range(0, a.shape[1], BLOCK):
            keep[r + margin:r + BLOCK - margin, c + margin:c + BLOCK - margin] = True
    return a[keep]


def _levels(picture) -> np.ndarray:
    return picture.rgb * 255.0


def test_ybr_full_uncompressed_decodes_to_the_encoded_rgb(tmp_path):
    rgb = _rgb_blocks()
    ds = _dataset(*rgb.shape[:2], "YBR_FULL", ExplicitVRLittleEndian)
    ds.PixelData = _ycbcr_full(rgb).tobytes()
    picture = dc.read_dose_map_picture(_save(ds, tmp_path / "ybr_full.dcm"))
    assert picture.details["photometric_interpretation"] == "YBR_FULL"
    np.testing.assert_allclose(_levels(picture), rgb, atol=2.0)


def test_ybr_full_422_uncompressed_decodes_to_the_encoded_rgb(tmp_path):
    rgb = _rgb_blocks()
    ybr = _ycbcr_full(rgb).astype(np.int32)
    # PS3.3 C.7.6.3.1.2: per horizontal pair Y1 Y2 Cb Cr, chroma of the pair (equal inside a block).
    y = ybr[..., 0].reshape(rgb.shape[0], -1, 2)
    cb = ybr[..., 1].reshape(rgb.shape[0], -1, 2).mean(axis=2).round()
    cr = ybr[..., 2].reshape(rgb.shape[0], -1, 2).mean(axis=2).round()
    packed = np.stack([y[..., 0], y[..., 1], cb, cr], axis=-1).astype(np.uint8)
    ds = _dataset(*rgb.shape[:2], "YBR_FULL_422", ExplicitVRLittleEndian)
    ds.PixelData = packed.tobytes()
    assert len(ds.PixelData) == rgb.shape[0] * rgb.shape[1] * 2
    picture = dc.read_dose_map_picture(_save(ds, tmp_path / "ybr_422.dcm"))
    assert picture.details["photometric_interpretation"] == "YBR_FULL_422"
    np.testing.assert_allclose(_levels(picture), rgb, atol=2.0)


def test_ybr_full_422_jpeg_baseline_decodes_to_the_encoded_rgb(tmp_path):
    from PIL import Image
    from pydicom.encaps import encapsulate

    rgb = _rgb_blocks()
    stream = io.BytesIO()
    Image.fromarray(rgb).save(stream, format="JPEG", quality=95, subsampling=1)  # 1 = 4:2:2
    ds = _dataset(*rgb.shape[:2], "YBR_FULL_422", JPEG_BASELINE)
    ds.PixelData = encapsulate([stream.getvalue()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.LossyImageCompression = "01"
    path = _save(ds, tmp_path / "ybr_422_jpeg.dcm")
    try:
        picture = dc.read_dose_map_picture(path)
    except dc.InputError as exc:  # no JPEG decoder for this pydicom: nothing to test here
        if "decod" in str(exc).lower() or "handler" in str(exc).lower():
            pytest.skip(f"this pydicom cannot decode JPEG baseline here: {exc}")
        raise
    assert picture.details["photometric_interpretation"] == "YBR_FULL_422"
    error = np.abs(_interiors(_levels(picture)) - _interiors(rgb.astype(float)))
    assert error.max() <= 6.0, error.max()


def test_rgb_secondary_capture_is_left_as_it_is(tmp_path):
    rgb = _rgb_blocks()
    ds = _dataset(*rgb.shape[:2], "RGB", ExplicitVRLittleEndian)
    ds.PixelData = rgb.tobytes()
    picture = dc.read_dose_map_picture(_save(ds, tmp_path / "rgb.dcm"))
    assert np.array_equal(_levels(picture).round(), rgb)
