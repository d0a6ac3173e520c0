"""Small synthetic input files for the reader tests: a DICOM CT series and a Slicer .seg.nrrd.

Written with pydicom and plain bytes (not with the readers under test), so a round trip checks the
readers against what the file says.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def save_dicom_file(ds, path) -> None:
    """Write ``ds`` as a DICOM Part 10 file (preamble, file meta) with pydicom 3 or 2.x.

    pydicom 3 says so with ``enforce_file_format=True``; 2.x (bundled by Slicer <= 5.10) with
    ``write_like_original=False`` and the encoding taken from the transfer syntax.
    """
    try:
        ds.save_as(path, enforce_file_format=True)
    except TypeError:   # pydicom 2.x: no enforce_file_format
        syntax = ds.file_meta.TransferSyntaxUID
        ds.is_little_endian, ds.is_implicit_VR = syntax.is_little_endian, syntax.is_implicit_VR
        ds.save_as(path, write_like_original=False)


def write_ct_series(folder, hu: np.ndarray, spacing=(0.8, 0.9, 2.5), origin=(-100.5, -80.25, 33.0),
                    row=(1.0, 0.0, 0.0), col=(0.0, 1.0, 0.0), intercept=-1024.0, slope=1.0,
                    frame_uid=None, seed=0) -> list[Path]:
    """Write ``hu`` (z, y, x) as one CT slice per file with shuffled, meaningless file names and
    scrambled InstanceNumbers, so only ImagePositionPatient gives the order.

    ``spacing`` is (x, y, z) in mm; slice k sits at ``origin + k * spacing_z * normal`` where
    normal = row x col. Stored values are (hu - intercept) / slope as int16.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    row, col = np.asarray(row, float), np.asarray(col, float)
    normal = np.cross(row, col)
    study, series = generate_uid(), generate_uid()
    frame_uid = frame_uid or generate_uid()
    nz, ny, nx = hu.shape
    rng = random.Random(seed)
    names = [f"img_{rng.randrange(10**6):06d}_{k}.dcm" for k in range(nz)]
    rng.shuffle(names)
    instance_numbers = list(range(1, nz + 1))
    rng.shuffle(instance_numbers)
    paths = []
    for k in range(nz):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / names[k]
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.PatientID = "SYNTH"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.FrameOfReferenceUID = frame_uid
        ds.InstanceNumber = instance_numbers[k]
        ds.ImagePositionPatient = [float(v) for v in np.asarray(origin) + k * spacing[2] * normal]
        ds.ImageOrientationPatient = [float(v) for v in (*row, *col)]
        ds.PixelSpacing = [spacing[1], spacing[0]]  # DICOM order: between rows (y), between columns (x)
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = intercept, slope
        stored = np.round((hu[k] - intercept) / slope).astype("<i2")
        ds.PixelData = stored.tobytes()
        save_dicom_file(ds, path)
        paths.append(path)
    return paths


def write_seg_nrrd(path, layers: list[np.ndarray], segments: list[tuple[str, int, int]],
                   spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> Path:
    """Write a Slicer-style .seg.nrrd: ``layers`` are (z, y, x) uint8 arrays (several layers make a
    4D file with a leading list axis), ``segments`` are (name, label value, layer)."""
    path = Path(path)
    data = np.stack(layers, axis=-1) if len(layers) > 1 else layers[0]
    nz, ny, nx = layers[0].shape
    lines = ["NRRD0004", "type: unsigned char"]
    if len(layers) > 1:
        lines += ["dimension: 4", "space: left-posterior-superior",
                  f"sizes: {len(layers)} {nx} {ny} {nz}",
                  f"space directions: none ({spacing[0]},0,0) (0,{spacing[1]},0) (0,0,{spacing[2]})",
                  "kinds: list domain domain domain"]
    else:
        lines += ["dimension: 3", "space: left-posterior-superior", f"sizes: {nx} {ny} {nz}",
                  f"space directions: ({spacing[0]},0,0) (0,{spacing[1]},0) (0,0,{spacing[2]})",
                  "kinds: domain domain domain"]
    lines += ["encoding: raw", f"space origin: ({origin[0]},{origin[1]},{origin[2]})"]
    for i, (name, label, layer) in enumerate(segments):
        lines += [f"Segment{i}_ID:=Segment_{i}", f"Segment{i}_Name:={name}",
                  f"Segment{i}_LabelValue:={label}", f"Segment{i}_Layer:={layer}",
                  f"Segment{i}_Color:=0.5 0.5 0.5"]
    with open(path, "wb") as fh:
        fh.write(("\n".join(lines) + "\n\n").encode("ascii"))
        fh.write(np.ascontiguousarray(data, dtype=np.uint8).tobytes())
    return path
