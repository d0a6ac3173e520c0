"""The bad-input corpus: damaged, inconsistent or hostile inputs for every reader, made by code.

Nothing here is committed as data: :func:`make_corpus` writes every case into a folder (a pytest
``tmp_path``) from two bases,

- a tiny synthetic patient (NRRD CT, dose and GTV on a 40 x 40 x 8 grid, :func:`write_tiny_patient`),
- a real DICOM RT patient built from ``shared/data/dicompyler_breast_rt`` (:func:`write_dicom_base`):
  the real CT slice (cropped to 128 x 128 around the tumour bed) repeated at the RTSTRUCT's contour
  planes, the real RTSTRUCT ("Tumor Bed") and the real RTDOSE with DoseGridScaling x 5 (so the
  tumour bed receives about 70 Gy and the 50Gy-heat ROI exists),

and modifies copies with pydicom, SimpleITK, numpy or plain bytes. Each :class:`Case` says which
reader it targets, the error class it must end in (``"ok"`` when the input is unusual but valid and
must WORK, e.g. an oblique CT or a path with spaces and non-ASCII characters) and a regular
expression the message must contain.

``python make_corpus.py OUT`` writes the corpus and prints the case table.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One bad (or unusual but valid) input.

    ``reader``: ct | dose | gtv | rtstruct | alignment | roi | manifest | training | model | report.
    ``expect``: the error class name (``InputError``, ``AlignmentError``, ``ROIError``,
    ``ManifestError``, ``DataError``, ``ModelFileError``) or ``"ok"``.
    ``match``: a regular expression the error message must contain (case-insensitive).
    ``inputs``: PatientInputs fields for patient cases; ``path`` the manifest/model file otherwise;
    ``extra``: what else the call needs (the features table of a training case).
    ``file``: the file the message must name (None: no particular file).
    """

    name: str
    reader: str
    expect: str
    match: str
    inputs: dict | None = None
    path: Path | None = None
    extra: dict = field(default_factory=dict)
    file: str | None = None
    note: str = ""

    @property
    def patient_id(self) -> str:
        return self.inputs["patient_id"] if self.inputs else ""


# ----------------------------------------------------------------------------------- tiny patient

TINY_SHAPE_XYZ = (40, 40, 8)
TINY_SPACING = (1.5, 1.5, 3.0)


def tiny_arrays(seed: int = 0, shape_xyz=TINY_SHAPE_XYZ, spacing=TINY_SPACING):
    """(ct int16 HU, dose float32 Gy, gtv uint8) as numpy (z, y, x) arrays of a small lung tumour.

    Deterministic in ``seed``: the tumour's centre, size and texture vary with it. The dose is on the
    CT grid: ~62 Gy in the tumour and a margin, falling off outside, so every ROI exists.
    """
    rng = np.random.default_rng(1000 + seed)
    nx, ny, nz = shape_xyz
    sx, sy, sz = spacing
    z, y, x = np.meshgrid((np.arange(nz) - (nz - 1) / 2) * sz, (np.arange(ny) - (ny - 1) / 2) * sy,
                          (np.arange(nx) - (nx - 1) / 2) * sx, indexing="ij")
    cx, cy = rng.uniform(-4, 4, 2)
    a, b, c = rng.uniform(7, 11), rng.uniform(6, 10), rng.uniform(5, 8)
    rho = np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 + (z / c) ** 2)
    gtv = rho < 1.0
    ct = -820.0 + 30.0 * rng.standard_normal(x.shape)
    ct = np.where(gtv, 30.0 + rng.uniform(10, 60) * rng.standard_normal(x.shape), ct)
    ct = np.where(x > 24, 40.0, ct)                               # chest wall on one side
    dose = 62.0 * (0.25 + 0.75 / (1.0 + np.exp((rho - 1.6) * 4.0)))
    dose *= 1.0 + 0.02 * rng.standard_normal(x.shape)
    return (np.clip(np.rint(ct), -1024, 3071).astype(np.int16), dose.astype(np.float32),
            gtv.astype(np.uint8))


def _image(array, spacing=TINY_SPACING, origin=None, direction=None):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(s) for s in spacing))
    nz, ny, nx = array.shape[:3]
    if origin is None:
        origin = (-(nx - 1) / 2 * spacing[0], -(ny - 1) / 2 * spacing[1], -(nz - 1) / 2 * spacing[2])
    img.SetOrigin(tuple(float(v) for v in origin))
    if direction is not None:
        img.SetDirection(tuple(float(v) for v in direction))
    return img


def write_tiny_patient(folder, seed: int = 0, direction=None, names=("ct.nrrd", "dose.nrrd", "gtv.nrrd"),
                       arrays=None) -> dict:
    """Write a tiny patient (CT, dose with ``dose_unit: Gy`` in its header, GTV label 1) into
    ``folder``; returns ``{"ct": path, "dose": path, "gtv": path}``. ``direction`` (9 numbers) makes
    all three oblique alike; ``arrays`` replaces :func:`tiny_arrays`' (ct, dose, gtv)."""
    import SimpleITK as sitk

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ct, dose, gtv = arrays if arrays is not None else tiny_arrays(seed)
    paths = {}
    for role, name, arr in zip(("ct", "dose", "gtv"), names, (ct, dose, gtv)):
        img = _image(arr, direction=direction)
        if role == "dose":
            img.SetMetaData("dose_unit", "Gy")
        paths[role] = folder / name
        sitk.WriteImage(img, str(paths[role]), useCompression=True)
    return paths


def write_tiny_cohort(folder, n: int, seed: int = 0) -> Path:
    """``n`` tiny patients TINY01.. and their manifest (gtv_label 1, dose_unit Gy); returns its path."""
    folder = Path(folder)
    lines = ["patient_id,ct,dose,gtv,gtv_label,dose_unit"]
    for i in range(n):
        pid = f"TINY{i + 1:02d}"
        write_tiny_patient(folder / "images" / pid, seed=seed * 1000 + i)
        lines.append(f"{pid},images/{pid}/ct.nrrd,images/{pid}/dose.nrrd,images/{pid}/gtv.nrrd,1,Gy")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


# ------------------------------------------------------------------------------------ DICOM base

CROP = 128


def write_dicom_base(folder, shared_data) -> dict:
    """The real breast RT plan as a complete patient: CT series folder, RTSTRUCT, RTDOSE (x 5), RTPLAN.

    The one real CT slice is cropped to 128 x 128 around the tumour bed and repeated at each contour
    plane of 'Tumor Bed' (plus one above and below), so the real contours land on real CT slices.
    """
    import pydicom
    from pydicom.uid import generate_uid

    src_dir = Path(shared_data) / "dicompyler_breast_rt"
    folder = Path(folder)
    (folder / "ct").mkdir(parents=True, exist_ok=True)
    rs = pydicom.dcmread(src_dir / "rtss.dcm")
    number = next(str(r.ROINumber) for r in rs.StructureSetROISequence if r.ROIName == "Tumor Bed")
    points = np.concatenate([np.asarray(c.ContourData, float).reshape(-1, 3)
                             for rc in rs.ROIContourSequence if str(rc.ReferencedROINumber) == number
                             for c in rc.ContourSequence])
    planes = sorted({round(float(z), 2) for z in points[:, 2]})
    step = float(np.median(np.diff(planes)))
    ct = pydicom.dcmread(src_dir / "ct.0.dcm")
    dy, dx = (float(v) for v in ct.PixelSpacing)
    x0, y0 = float(ct.ImagePositionPatient[0]), float(ct.ImagePositionPatient[1])
    col0 = int(round((points[:, 0].mean() - x0) / dx)) - CROP // 2
    row0 = int(round((points[:, 1].mean() - y0) / dy)) - CROP // 2
    col0, row0 = max(0, min(col0, ct.Columns - CROP)), max(0, min(row0, ct.Rows - CROP))
    pixels = ct.pixel_array[row0:row0 + CROP, col0:col0 + CROP].copy()
    series = generate_uid()
    zs = [planes[0] - step] + planes + [planes[-1] + step]
    for k, z in enumerate(zs):
        ds = copy.deepcopy(ct)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [x0 + col0 * dx, y0 + row0 * dy, float(z)]
        ds.Rows, ds.Columns = CROP, CROP
        ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
        ds.save_as(folder / "ct" / f"ct.{k:03d}.dcm")
    shutil.copy(src_dir / "rtss.dcm", folder / "rtss.dcm")
    shutil.copy(src_dir / "rtplan.dcm", folder / "rtplan.dcm")
    dose = pydicom.dcmread(src_dir / "rtdose.dcm")
    dose.DoseGridScaling = float(dose.DoseGridScaling) * 5
    dose.save_as(folder / "rtdose.dcm")
    return {"ct": folder / "ct", "dose": folder / "rtdose.dcm", "gtv": folder / "rtss.dcm",
            "rtplan": folder / "rtplan.dcm"}


# ---------------------------------------------------------------------------------------- helpers

def _truncate(src, dst, fraction: float) -> Path:
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[:int(len(data) * fraction)])
    return Path(dst)


def _nrrd_header(sizes, kind="short", extra=()) -> str:
    lines = ["NRRD0004", f"type: {kind}", f"dimension: {len(sizes)}", "space: left-posterior-superior",
             "sizes: " + " ".join(str(s) for s in sizes),
             "space directions: (1.5,0,0) (0,1.5,0) (0,0,3)", "space origin: (0,0,0)",
             "endian: little", "encoding: raw", *extra]
    return "\n".join(lines) + "\n\n"


def _rewrite_dicom(src, dst, edit) -> Path:
    import pydicom

    ds = pydicom.dcmread(src)
    edit(ds)
    ds.save_as(dst)
    return Path(dst)


def _rtss_edit_roi(ds, name, edit_contour=None, drop=False):
    number = next(str(r.ROINumber) for r in ds.StructureSetROISequence if r.ROIName == name)
    for rc in ds.ROIContourSequence:
        if str(rc.ReferencedROINumber) == number:
            if drop:
                del rc.ContourSequence
            else:
                for c in rc.ContourSequence:
                    edit_contour(c)


def _bow_tie(c):
    """Replace a contour by a self-intersecting 'bow tie' over its bounding box, on its own plane."""
    pts = np.asarray(c.ContourData, float).reshape(-1, 3)
    (xa, ya), (xb, yb), z = pts[:, :2].min(axis=0), pts[:, :2].max(axis=0), float(pts[0, 2])
    c.ContourData = [xa, ya, z, xb, yb, z, xb, ya, z, xa, yb, z]
    c.NumberOfContourPoints = 4


def _rotation(axis: str, degrees: float) -> np.ndarray:
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


# ----------------------------------------------------------------------------------- the corpus

def _patient_cases(root: Path, tiny: dict, dicom: dict) -> list[Case]:
    import SimpleITK as sitk

    cases: list[Case] = []
    ct_arr, dose_arr, gtv_arr = tiny_arrays(0)

    def patient(name, reader, expect, match, file=None, note="", **inputs):
        base = dict(tiny) if not inputs.pop("dicom", False) else {**dicom, "gtv_name": "Tumor Bed"}
        base.pop("rtplan", None)
        base.update(inputs)
        base.setdefault("gtv_label", 1 if "gtv_name" not in base else None)
        base.setdefault("dose_unit", None)
        base.setdefault("gtv_name", None)
        pid = name.upper().replace("_", "-")
        base = {"patient_id": pid, **{k: (str(v) if isinstance(v, Path) else v) for k, v in base.items()}}
        cases.append(Case(name, reader, expect, match, inputs=base,
                          file=None if file is None else str(file), note=note))

    d = root / "patients"
    d.mkdir(parents=True, exist_ok=True)

    def write(name, arr, *, direction=None, dose_unit="Gy", origin=None, spacing=TINY_SPACING):
        img = _image(arr, spacing=spacing, origin=origin, direction=direction)
        if dose_unit:
            img.SetMetaData("dose_unit", dose_unit)
        sitk.WriteImage(img, str(d / name), useCompression=True)
        return d / name

    # ---- CT
    patient("ct_missing_file", "ct", "InputError", "does not exist", file=d / "nobody" / "ct.nrrd",
            ct=d / "nobody" / "ct.nrrd")
    (d / "empty_ct.nrrd").write_bytes(b"")
    patient("ct_empty_file", "ct", "InputError", "is empty", file=d / "empty_ct.nrrd", ct=d / "empty_ct.nrrd")
    (d / "garbage_ct.nrrd").write_bytes(b"NRRD0004\nthis is not a header\n\x00\x01\x02")
    patient("ct_garbage_nrrd", "ct", "InputError", "cannot be read", file=d / "garbage_ct.nrrd",
            ct=d / "garbage_ct.nrrd")
    raw = d / "raw_ct.nrrd"
    raw.write_bytes(_nrrd_header(ct_arr.shape[::-1]).encode() + ct_arr.astype("<i2").tobytes())
    _truncate(raw, d / "truncated_ct.nrrd", 0.6)
    patient("ct_truncated_nrrd", "ct", "InputError", "cannot be read", file=d / "truncated_ct.nrrd",
            ct=d / "truncated_ct.nrrd")
    (d / "random_ct.dat").write_bytes(np.random.default_rng(3).bytes(5000))
    patient("ct_random_bytes", "ct", "InputError", "unknown CT file type", file=d / "random_ct.dat",
            ct=d / "random_ct.dat")
    nan_ct = ct_arr.astype(np.float32)
    nan_ct[2, 5, 5] = np.nan
    patient("ct_nan_voxels", "ct", "InputError", "not finite", file=write("nan_ct.nrrd", nan_ct, dose_unit=None),
            ct=d / "nan_ct.nrrd")
    inf_ct = ct_arr.astype(np.float32)
    inf_ct[3, 20, 20] = np.inf
    patient("ct_inf_voxels", "ct", "InputError", "not finite", file=write("inf_ct.nrrd", inf_ct, dose_unit=None),
            ct=d / "inf_ct.nrrd")
    rgb = np.stack([ct_arr] * 3, axis=-1).astype(np.int16)
    rgb_img = sitk.GetImageFromArray(rgb, isVector=True)
    sitk.WriteImage(rgb_img, str(d / "rgb_ct.nrrd"))
    patient("ct_vector_pixels", "ct", "InputError", "several components", file=d / "rgb_ct.nrrd",
            ct=d / "rgb_ct.nrrd")
    (d / "huge_ct.nrrd").write_bytes(_nrrd_header((200000, 200000, 5000)).encode() + b"\0" * 64)
    patient("ct_huge_header", "ct", "InputError", "more than the .* limit", file=d / "huge_ct.nrrd",
            ct=d / "huge_ct.nrrd", note="refused from the header, before allocating 400 TB")
    # one-slice CT: the largest cross-section alone; must give the same features as the full CT
    k = int(np.argmax(gtv_arr.sum(axis=(1, 2))))
    z0 = -(TINY_SHAPE_XYZ[2] - 1) / 2 * TINY_SPACING[2] + k * TINY_SPACING[2]
    origin = (-(TINY_SHAPE_XYZ[0] - 1) / 2 * TINY_SPACING[0], -(TINY_SHAPE_XYZ[1] - 1) / 2 * TINY_SPACING[1], z0)
    write("one_slice_ct.nrrd", ct_arr[k:k + 1], origin=origin, dose_unit=None)
    write("one_slice_gtv.nrrd", gtv_arr[k:k + 1], origin=origin, dose_unit=None)
    patient("ct_one_slice", "ct", "ok", "", ct=d / "one_slice_ct.nrrd", gtv=d / "one_slice_gtv.nrrd",
            note="supported: same GTV features as the full CT")
    # oblique and non-axial: supported, the cross-section is normal to the image's k axis
    tilt = _rotation("x", 25.0) @ _rotation("z", 30.0)
    write_tiny_patient(d / "oblique", 0, direction=tilt.ravel())
    patient("ct_oblique", "ct", "ok", "", **{r: d / "oblique" / f"{r}.nrrd" for r in ("ct", "dose", "gtv")},
            note="supported: direction cosines honoured, same features as the axial patient")
    sagittal = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float)  # k axis along patient x
    write_tiny_patient(d / "sagittal", 0, direction=sagittal.ravel())
    patient("ct_sagittal_acquisition", "ct", "ok", "",
            **{r: d / "sagittal" / f"{r}.nrrd" for r in ("ct", "dose", "gtv")},
            note="supported: put in the patient orientation (LPS) first, so the axial cross-section is the "
                 "patient's, not the acquired slice")
    odd = write_tiny_patient(d / "Pätient ü 1 (copy)", 0, names=("ct scan ä.nrrd", "dose Gy é.nrrd", "gtv ø.nrrd"))
    patient("paths_with_spaces_and_non_ascii", "ct", "ok", "", **odd, note="must work")

    # ---- dose (NRRD)
    write("dose_no_unit.nrrd", dose_arr, dose_unit=None)
    patient("dose_unit_not_declared", "dose", "InputError", "unit is not declared", file=d / "dose_no_unit.nrrd",
            dose=d / "dose_no_unit.nrrd")
    write("dose_cgy_header.nrrd", dose_arr * 100, dose_unit="cGy")
    patient("dose_unit_conflict", "dose", "InputError", "declares .*cGy but Gy was given",
            file=d / "dose_cgy_header.nrrd", dose=d / "dose_cgy_header.nrrd", dose_unit="Gy")
    nan_dose = dose_arr.copy()
    nan_dose[4, 18, 18] = np.nan
    patient("dose_nan_voxels", "dose", "InputError", "not finite", file=write("dose_nan.nrrd", nan_dose),
            dose=d / "dose_nan.nrrd")
    inf_dose = dose_arr.copy()
    inf_dose[0, 0, 0] = -np.inf
    patient("dose_inf_voxels", "dose", "InputError", "not finite", file=write("dose_inf.nrrd", inf_dose),
            dose=d / "dose_inf.nrrd")
    patient("dose_all_zero", "dose", "InputError", "0 Gy everywhere",
            file=write("dose_zero.nrrd", np.zeros_like(dose_arr)), dose=d / "dose_zero.nrrd")
    (d / "huge_dose.nrrd").write_bytes(_nrrd_header((4000, 4000, 2000), "float", ["dose_unit:=Gy"]).encode()
                                       + b"\0" * 64)
    patient("dose_huge_header", "dose", "InputError", "more than the .* limit", file=d / "huge_dose.nrrd",
            dose=d / "huge_dose.nrrd")
    far = write("dose_far.nrrd", dose_arr, origin=(1000.0, 1000.0, 1000.0))
    patient("dose_no_overlap", "alignment", "AlignmentError", "does not overlap", file=far, dose=far)
    kz = int(np.flatnonzero(gtv_arr.sum(axis=(1, 2)) == 0)[0])  # a slice without tumour
    z_empty = -(TINY_SHAPE_XYZ[2] - 1) / 2 * TINY_SPACING[2] + kz * TINY_SPACING[2]
    beside = write("dose_beside_gtv.nrrd", dose_arr[kz:kz + 1],
                   origin=(origin[0], origin[1], z_empty))
    patient("gtv_outside_dose_grid", "alignment", "AlignmentError", "entirely outside the dose grid",
            file=beside, dose=beside)
    patient("dose_below_isodose", "roi", "ROIError", "50Gy-heat is empty",
            dose=write("dose_low.nrrd", dose_arr * 0.3))

    # ---- GTV (labelmaps)
    patient("gtv_empty_labelmap", "gtv", "InputError", "GTV mask is empty",
            file=write("gtv_empty.nrrd", np.zeros_like(gtv_arr), dose_unit=None), gtv=d / "gtv_empty.nrrd",
            gtv_label=None)
    patient("gtv_label_absent", "gtv", "InputError", "no voxel has label 7", file=tiny["gtv"], gtv_label=7)
    two = np.zeros_like(gtv_arr)
    two[k, 20, 20:22] = 1
    patient("gtv_two_pixels", "roi", "ROIError", "fewer than the 4",
            gtv=write("gtv_two_pixels.nrrd", two, dose_unit=None))
    (d / "gtv.txt").write_text("GTV\n")
    patient("gtv_unknown_file_type", "gtv", "InputError", "unknown GTV file type", file=d / "gtv.txt",
            gtv=d / "gtv.txt")

    # ---- DICOM (real breast RT plan)
    x = root / "dicom_cases"
    x.mkdir(exist_ok=True)
    ct_files = sorted(Path(dicom["ct"]).glob("*.dcm"))

    def ct_copy(name, edit=None, files=None):
        out = x / name
        out.mkdir(exist_ok=True)
        for i, f in enumerate(ct_files):
            shutil.copy(f, out / f.name)
        if edit:
            edit(out, sorted(out.glob("*.dcm")))
        return out

    def truncate_middle(out, files):
        _truncate(files[len(files) // 2], files[len(files) // 2], 0.5)

    folder = ct_copy("ct_truncated_slice", truncate_middle)
    patient("dicom_ct_truncated_slice", "ct", "InputError", "is truncated|cannot be decoded|not a readable DICOM",
            dicom=True, ct=folder)

    def garbage_all(out, files):
        for f in files:
            f.write_bytes(np.random.default_rng(len(f.name)).bytes(3000))

    folder = ct_copy("ct_all_garbage", garbage_all)
    patient("dicom_ct_folder_without_images", "ct", "InputError", "no DICOM image slices", file=folder,
            dicom=True, ct=folder)

    def drop_slice(out, files):
        files[len(files) // 2].unlink()

    folder = ct_copy("ct_missing_slice", drop_slice)
    patient("dicom_ct_missing_slice", "ct", "InputError", "uneven slice spacing", file=folder, dicom=True, ct=folder)

    def edit_all(edit):
        def run(out, files):
            import pydicom
            for f in files:
                ds = pydicom.dcmread(f)
                edit(ds)
                ds.save_as(f)
        return run

    def rotate_slices(rotation):
        """Rotate every slice's plane about the centre of the first slice; slices stay stacked along
        the new normal (a genuinely oblique series, not a gantry tilt)."""
        def edit(ds):
            row, col = np.asarray(ds.ImageOrientationPatient[:3], float), np.asarray(ds.ImageOrientationPatient[3:], float)
            dy, dx = (float(v) for v in ds.PixelSpacing)
            half = np.array([dx * (ds.Columns - 1) / 2, dy * (ds.Rows - 1) / 2])
            ipp = np.asarray(ds.ImagePositionPatient, float)
            k = int(ds.InstanceNumber) - 1
            centre = ipp - k * float(step) * np.cross(row, col) + row * half[0] + col * half[1]
            r2, c2 = rotation @ row, rotation @ col
            new = centre - r2 * half[0] - c2 * half[1] + k * float(step) * np.cross(r2, c2)
            ds.ImageOrientationPatient = [float(v) for v in (*r2, *c2)]
            ds.ImagePositionPatient = [float(v) for v in new]
        return edit_all(edit)

    import pydicom
    step = abs(float(pydicom.dcmread(ct_files[1]).ImagePositionPatient[2])
               - float(pydicom.dcmread(ct_files[0]).ImagePositionPatient[2]))
    folder = ct_copy("ct_oblique_tilted", rotate_slices(_rotation("x", 20.0)))
    patient("dicom_ct_oblique_vs_axial_contours", "rtstruct", "InputError", "not parallel to the CT slices",
            dicom=True, ct=folder, file=dicom["gtv"],
            note="an oblique CT is supported, but these contours were drawn on axial slices")
    folder = ct_copy("ct_rotated_in_plane", rotate_slices(_rotation("z", 30.0)))
    patient("dicom_ct_rotated_in_plane", "ct", "ok", "", dicom=True, ct=folder,
            note="supported: oblique in-plane orientation, contours still in the slice planes")

    def huge_rows(ds):
        ds.Rows, ds.Columns = 60000, 60000

    folder = ct_copy("ct_huge_rows", edit_all(huge_rows))
    patient("dicom_ct_huge_header", "ct", "InputError", "more than the .* limit", dicom=True, ct=folder)

    # RTDOSE
    src = dicom["dose"]
    patient("dicom_dose_truncated", "dose", "InputError", "not a readable DICOM|cannot be decoded|holds",
            file=x / "rtdose_truncated.dcm", dicom=True, dose=_truncate(src, x / "rtdose_truncated.dcm", 0.7))
    patient("dicom_dose_without_scaling", "dose", "InputError", "without DoseGridScaling",
            file=x / "rtdose_noscale.dcm", dicom=True,
            dose=_rewrite_dicom(src, x / "rtdose_noscale.dcm", lambda ds: delattr(ds, "DoseGridScaling")))
    patient("dicom_dose_negative_scaling", "dose", "InputError", "not a positive number",
            file=x / "rtdose_negscale.dcm", dicom=True,
            dose=_rewrite_dicom(src, x / "rtdose_negscale.dcm", lambda ds: setattr(ds, "DoseGridScaling", -1e-5)))

    def to_cgy(ds):
        ds.DoseUnits = "CGY"
        ds.DoseGridScaling = float(ds.DoseGridScaling) * 100

    patient("dicom_dose_in_cgy", "dose", "ok", "", dicom=True, dose=_rewrite_dicom(src, x / "rtdose_cgy.dcm", to_cgy),
            note="supported: converted to Gy, same features as the Gy file")
    patient("dicom_dose_relative_units", "dose", "InputError", "not Gy or cGy", file=x / "rtdose_relative.dcm",
            dicom=True, dose=_rewrite_dicom(src, x / "rtdose_relative.dcm",
                                            lambda ds: setattr(ds, "DoseUnits", "RELATIVE")))
    patient("dicom_dose_other_frame_of_reference", "alignment", "AlignmentError", "different frames",
            file=x / "rtdose_frame.dcm", dicom=True,
            dose=_rewrite_dicom(src, x / "rtdose_frame.dcm",
                                lambda ds: setattr(ds, "FrameOfReferenceUID", "1.2.826.0.1.3680043.8.498.1")))

    def zero(ds):
        ds.PixelData = bytes(len(ds.PixelData))

    patient("dicom_dose_all_zero", "dose", "InputError", "0 Gy everywhere", file=x / "rtdose_zero.dcm",
            dicom=True, dose=_rewrite_dicom(src, x / "rtdose_zero.dcm", zero))

    def huge_frames(ds):
        ds.NumberOfFrames = 90000
        ds.GridFrameOffsetVector = [3.0 * i for i in range(90000)]

    patient("dicom_dose_huge_header", "dose", "InputError", "more than the .* limit", file=x / "rtdose_huge.dcm",
            dicom=True, dose=_rewrite_dicom(src, x / "rtdose_huge.dcm", huge_frames))
    patient("dicom_dose_is_a_ct_slice", "dose", "InputError", "expected a DICOM RTDOSE", file=ct_files[0],
            dicom=True, dose=ct_files[0])

    # RTSTRUCT
    rs = dicom["gtv"]

    def open_contours(ds):
        _rtss_edit_roi(ds, "Tumor Bed", lambda c: setattr(c, "ContourGeometricType", "OPEN_PLANAR"))

    patient("dicom_rtstruct_open_contours", "rtstruct", "InputError", "no contour on the CT grid.*ignored",
            file=x / "rtss_open.dcm", dicom=True, gtv=_rewrite_dicom(rs, x / "rtss_open.dcm", open_contours))
    patient("dicom_rtstruct_self_intersecting", "rtstruct", "ok", "", dicom=True,
            gtv=_rewrite_dicom(rs, x / "rtss_bowtie.dcm", lambda ds: _rtss_edit_roi(ds, "Tumor Bed", _bow_tie)),
            note="supported: filled by the even-odd rule, as planning systems do")

    def lift(c):
        pts = np.asarray(c.ContourData, float).reshape(-1, 3)
        pts[:, 2] += 500.0
        c.ContourData = [float(v) for v in pts.ravel()]

    patient("dicom_rtstruct_off_grid", "rtstruct", "InputError", "outside the CT slices", file=x / "rtss_off.dcm",
            dicom=True, gtv=_rewrite_dicom(rs, x / "rtss_off.dcm", lambda ds: _rtss_edit_roi(ds, "Tumor Bed", lift)))
    patient("dicom_rtstruct_unknown_roi_name", "rtstruct", "InputError", "no structure named 'GTV'; available",
            file=rs, dicom=True, gtv_name="GTV")
    patient("dicom_rtstruct_no_roi_name_given", "rtstruct", "InputError", "say which one", file=rs, dicom=True,
            gtv_name=None)
    patient("dicom_rtstruct_empty_roi", "rtstruct", "InputError", "has no contours", file=x / "rtss_empty.dcm",
            dicom=True, gtv=_rewrite_dicom(rs, x / "rtss_empty.dcm",
                                           lambda ds: _rtss_edit_roi(ds, "Tumor Bed", drop=True)))

    def other_frame(ds):
        for ref in ds.ReferencedFrameOfReferenceSequence:
            ref.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
        for roi in ds.StructureSetROISequence:
            roi.ReferencedFrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"

    patient("dicom_rtstruct_other_frame_of_reference", "rtstruct", "InputError", "frame of reference",
            file=x / "rtss_frame.dcm", dicom=True, gtv=_rewrite_dicom(rs, x / "rtss_frame.dcm", other_frame))
    patient("dicom_rtstruct_truncated", "rtstruct", "InputError", "truncated|not a readable DICOM",
            file=x / "rtss_truncated.dcm", dicom=True, gtv=_truncate(rs, x / "rtss_truncated.dcm", 0.4))
    patient("dicom_rtstruct_is_an_rtplan", "rtstruct", "InputError", "expected a DICOM RTSTRUCT",
            file=dicom["rtplan"], dicom=True, gtv=dicom["rtplan"])
    return cases


def _manifest_cases(root: Path, tiny: dict) -> list[Case]:
    d = root / "manifests"
    d.mkdir(parents=True, exist_ok=True)
    good = f"P1,{tiny['ct']},{tiny['dose']},{tiny['gtv']}"
    cases = []

    def manifest(name, text, match, expect="ManifestError", raw: bytes | None = None, note=""):
        path = d / f"{name}.csv"
        if raw is not None:
            path.write_bytes(raw)
        else:
            path.write_text(text, encoding="utf-8")
        cases.append(Case(name, "manifest", expect, match, path=path, file=str(path), note=note))

    manifest("manifest_missing_column", "patient_id,ct,dose\nP1,a,b\n", "missing required column.*gtv")
    manifest("manifest_wrong_type", f"patient_id,ct,dose,gtv,age\n{good},sixty\n", "row 1 column 'age'.*not a number")
    manifest("manifest_bad_outcome", f"patient_id,ct,dose,gtv,outcome\n{good},maybe\n", "'maybe' is not 1")
    manifest("manifest_duplicate_ids", f"patient_id,ct,dose,gtv\n{good}\n{good.replace('P1', 'p1')}\n",
             "already used in row 1")
    manifest("manifest_ragged_row", f"patient_id,ct,dose,gtv\n{good},extra\n", "has 5 cells")
    manifest("manifest_not_utf8", "", "not UTF-8", raw="patient_id,ct,dose,gtv\nJos\xe9,a,b,c\n".encode("latin-1"))
    manifest("manifest_empty", "", "empty", raw=b"")
    manifest("manifest_header_only", "patient_id,ct,dose,gtv\n", "no patients")
    manifest("manifest_unsafe_patient_id", "patient_id,ct,dose,gtv\n../../etc,a,b,c\n", "cannot be used as a file name")
    manifest("manifest_binary_garbage", "", "not UTF-8|delimiter|missing required",
             raw=np.random.default_rng(5).bytes(4096))
    path = d / "manifest_oversized.csv"
    with open(path, "wb") as fh:  # sparse: 60 MB on paper, nothing on disk
        fh.write(b"patient_id,ct,dose,gtv\n")
        fh.truncate(60 * 1024 * 1024)
    cases.append(Case("manifest_oversized", "manifest", "ManifestError", "more than the", path=path, file=str(path)))
    return cases


def _training_cases(root: Path) -> list[Case]:
    d = root / "training"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(9)
    n = 60
    ids = [f"T{i:03d}" for i in range(n)]
    feats = ["patient_id,settings_hash,GTV__original_firstorder_Mean,GTV-heat__original_firstorder_Mean,"
             "50Gy-heat__original_firstorder_Mean"]
    feats += [f"{p},abc,{rng.normal():.6f},{rng.normal():.6f},{rng.normal():.6f}" for p in ids]
    (d / "features.csv").write_text("\n".join(feats) + "\n")
    cases = []
    for name, outcome, match in (("outcome_all_one_class", [1] * n, "only one outcome class"),
                                 ("outcome_too_few_events", [1] * 6 + [0] * (n - 6), "10-fold cross-validation")):
        path = d / f"{name}.csv"
        path.write_text("patient_id,ct,dose,gtv,outcome,hb\n" + "\n".join(
            f"{p},x.nrrd,y.nrrd,z.nrrd,{o},{120 + i % 20}" for i, (p, o) in enumerate(zip(ids, outcome))) + "\n")
        cases.append(Case(name, "training", "DataError", match, path=path, extra={"features": d / "features.csv"}))
    return cases


def _model_cases(root: Path, valid_model: Path) -> list[Case]:
    from DoseRadiomicsLib.modelfile import content_checksum

    d = root / "models"
    d.mkdir(parents=True, exist_ok=True)
    text = Path(valid_model).read_text(encoding="utf-8")
    cases = []

    def model(name, match, *, raw: str | None = None, edit=None, recompute=True, reader="model", note=""):
        path = d / f"{name}.json"
        if raw is None:
            content = json.loads(text)
            edit(content)
            if recompute:
                content["checksum"] = content_checksum(content)
            raw = json.dumps(content)
        path.write_text(raw, encoding="utf-8")
        cases.append(Case(name, reader, "ModelFileError", match, path=path, file=str(path), note=note))

    model("model_invalid_schema", "schema is 'something-else'", edit=lambda c: c.update(schema="something-else"))
    model("model_future_version", "schema version 7", edit=lambda c: c.update(schema_version=7))

    def nan_coef(c):
        c["models"]["RM_GTV"]["coefficients"][0] = float("nan")

    model("model_nan_coefficient", "NaN is not allowed", edit=nan_coef)
    model("model_infinite_coefficient", "Infinity is not allowed",
          edit=lambda c: c["models"]["RDM"].update(intercept=float("inf")))
    # 1e999 is valid JSON that parses to infinity: the checksum (computed as the loader will, with
    # the infinity as null) is right, so only the value check can refuse it
    content = json.loads(text)
    content["models"]["RDM"]["intercept"] = None
    content["checksum"] = content_checksum(content)
    content["models"]["RDM"]["intercept"] = "__OVERFLOW__"
    model("model_overflowing_intercept", "must be finite numbers",
          raw=json.dumps(content).replace('"__OVERFLOW__"', "1e999"))
    model("model_truncated", "not valid JSON", raw=text[:len(text) // 2])
    model("model_top_level_list", "not a JSON object", raw="[1, 2, 3]")
    model("model_tampered", "checksum mismatch", recompute=False,
          edit=lambda c: c["risk"].update(cutoff=0.1))
    model("model_missing_combined", "model 'combined' is missing", edit=lambda c: c["models"].pop("combined"))
    model("model_mismatched_lengths", "features but", edit=lambda c: c["models"]["RM_GTV"]["coefficients"].append(1.0))
    model("model_deeply_nested", "nested too deeply", raw="[" * 200000 + "]" * 200000)
    model("model_non_object_entry", "is not a JSON object", edit=lambda c: c["models"].update(extra=3))
    model("report_model_without_evaluation", "cannot be reported", reader="report",
          edit=lambda c: c.pop("evaluation"), note="valid for prediction, not for a report")
    path = d / "model_absurd_size.json"
    with open(path, "wb") as fh:
        fh.write(b'{"schema": "doseradiomics-model", "pad": "')
        fh.truncate(300 * 1024 * 1024)
    cases.append(Case("model_absurd_size", "model", "ModelFileError", "MB limit", path=path, file=str(path)))
    return cases


def make_corpus(root, shared_data, valid_model=None) -> list[Case]:
    """Write every case under ``root``; returns the cases (patient, manifest, training, model).

    ``valid_model``: a model file written by ``train`` to mutate (without one, no model cases).
    """
    root = Path(root)
    tiny = write_tiny_patient(root / "base" / "tiny", 0)
    dicom = write_dicom_base(root / "base" / "dicom", shared_data)
    cases = _patient_cases(root, tiny, dicom) + _manifest_cases(root, tiny) + _training_cases(root)
    if valid_model is not None:
        cases += _model_cases(root, valid_model)
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    return cases


def base_inputs(root) -> dict:
    """PatientInputs fields of the two bases written by :func:`make_corpus` (the positive controls)."""
    root = Path(root)
    tiny = {r: str(root / "base" / "tiny" / f"{r}.nrrd") for r in ("ct", "dose", "gtv")}
    dicom = root / "base" / "dicom"
    return {"tiny": {"patient_id": "BASE-TINY", **tiny, "gtv_label": 1, "gtv_name": None, "dose_unit": None},
            "dicom": {"patient_id": "BASE-DICOM", "ct": str(dicom / "ct"), "dose": str(dicom / "rtdose.dcm"),
                      "gtv": str(dicom / "rtss.dcm"), "gtv_name": "Tumor Bed", "gtv_label": None,
                      "dose_unit": None}}


if __name__ == "__main__":
    here = Path(__file__).resolve()
    shared = Path(os.environ.get("DOSERADIOMICS_SHARED_DATA", here.parents[3] / "shared" / "data"))
    for c in make_corpus(Path(sys.argv[1]), shared):
        print(f"{c.name:45s} {c.reader:10s} {c.expect:15s} {c.note}")
