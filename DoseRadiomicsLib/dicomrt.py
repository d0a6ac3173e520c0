"""DICOM details behind :mod:`DoseRadiomicsLib.readers`: CT series, RTDOSE and RTSTRUCT.

Geometry follows DICOM PS3.3 C.7.6.2 (Image Plane) and C.8.8.3 (RT Dose): the slice normal is
row x column of ImageOrientationPatient, slices are ordered by ImagePositionPatient projected on that
normal (never by file name), and RTDOSE frames sit at ImagePositionPatient + GridFrameOffsetVector
along the normal. Everything here returns SimpleITK images plus plain dicts; the readers wrap them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from .errors import InputError
from .slicegeom import copy_slice_positions, fractional_index, set_slice_positions, slice_positions

log = logging.getLogger(__name__)

#: SimpleITK metadata key under which the CT keeps its FrameOfReferenceUID (DICOM tag 0020,0052).
FRAME_OF_REFERENCE_KEY = "0020|0052"

_RT_MODALITIES = {"RTDOSE", "RTSTRUCT", "RTPLAN", "RTIMAGE", "RTRECORD", "REG", "SEG", "SR", "PR"}
_HEADER_TAGS = ["Modality", "SeriesInstanceUID", "SeriesDescription", "ImagePositionPatient",
                "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "SpacingBetweenSlices",
                "FrameOfReferenceUID", "NumberOfFrames", "Rows", "Columns", "ImageType", "PatientID",
                "StudyInstanceUID", "BitsAllocated", "SamplesPerPixel"]
# Positions closer than this (mm) along the normal are "the same slice".
_SAME_POSITION_MM = 1e-3


def is_dicom_file(path: Path) -> bool:
    """True if ``path`` is a file with the DICOM preamble (or at least parses as DICOM)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
        if len(head) == 132 and head[128:132] == b"DICM":
            return True
        pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
        return True
    except (InvalidDicomError, OSError, ValueError, EOFError, TypeError, AttributeError):
        return False


def read_header(path: Path, patient=None, pixels: bool = False) -> pydicom.Dataset:
    """One DICOM file (its header only unless ``pixels``), or InputError saying it is not DICOM."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except (InvalidDicomError, OSError, ValueError, EOFError, TypeError, AttributeError) as exc:
        raise InputError(f"not a readable DICOM file ({exc})", patient=patient, path=path) from None


def read_rt_object(path: Path, modality: str, patient=None, hint: str = "") -> pydicom.Dataset:
    """A whole DICOM RT file that must be of ``modality`` (RTDOSE, RTSTRUCT), or InputError saying what it is."""
    ds = read_header(path, patient, pixels=True)
    found = str(ds.get("Modality", "")).upper()
    if found != modality:
        raise InputError(f"expected a DICOM {modality}, found modality '{found}'", patient=patient, path=path,
                         hint=hint)
    return ds


def _orientation(ds, patient, path):
    """Row and column direction cosines and the slice normal, as unit vectors."""
    iop = ds.get("ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        raise InputError("ImageOrientationPatient is missing or malformed", patient=patient, path=path)
    row = np.asarray(iop[:3], float)
    col = np.asarray(iop[3:], float)
    row /= np.linalg.norm(row)
    col /= np.linalg.norm(col)
    if abs(float(row @ col)) > 1e-3:
        raise InputError("ImageOrientationPatient rows and columns are not perpendicular",
                         patient=patient, path=path)
    return row, col, np.cross(row, col)


def _direction_tuple(row, col, normal) -> tuple:
    # SimpleITK wants the 3x3 direction matrix (columns = axis directions) flattened row by row.
    return tuple(np.column_stack([row, col, normal]).ravel().tolist())


def _pixel_spacing(ds, patient, path):
    ps = ds.get("PixelSpacing")
    if ps is None or len(ps) != 2 or min(float(v) for v in ps) <= 0:
        raise InputError("PixelSpacing is missing or not positive", patient=patient, path=path)
    # DICOM PixelSpacing is (between rows = y, between columns = x).
    return float(ps[1]), float(ps[0])


# ----------------------------------------------------------------------------------------------
# CT series
# ----------------------------------------------------------------------------------------------

def _image_headers(folder: Path, files=None):
    """(path, header) of every DICOM image slice in ``folder``, or of ``files`` (RT objects and
    non-DICOM skipped)."""
    found = []
    for p in sorted(folder.iterdir()) if files is None else sorted(Path(f) for f in files):
        if not p.is_file():
            continue
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        except (InvalidDicomError, OSError, ValueError, EOFError, TypeError, AttributeError):
            continue
        if str(ds.get("Modality", "")).upper() in _RT_MODALITIES:
            continue
        if ds.get("ImagePositionPatient") is None or ds.get("SeriesInstanceUID") is None:
            continue
        if is_localizer(ds):  # a scout exported with the CT is not a slice of it
            continue
        found.append((p, ds))
    return found


def is_localizer(ds) -> bool:
    """A scout / topogram: ImageType says LOCALIZER (DICOM PS3.3 C.8.2.1.1.1)."""
    image_type = ds.get("ImageType") or []
    if isinstance(image_type, str):
        image_type = image_type.split("\\")
    return any(str(v).strip().upper() == "LOCALIZER" for v in image_type)


def check_image_size(size, bytes_per_voxel, what, patient=None, path=None) -> None:
    """:func:`DoseRadiomicsLib.readers.check_image_size` (imported late: readers imports this module)."""
    from .readers import check_image_size as check

    check(size, bytes_per_voxel, what, patient, path)


def _check_not_truncated(path: Path, ds, patient) -> None:
    """A slice whose file is shorter than its uncompressed pixel data is truncated. GDCM of SimpleITK
    2.3 (Slicer 5.8) reads such a file without an error; later versions raise."""
    meta = getattr(ds, "file_meta", None)
    syntax = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if syntax is None or getattr(syntax, "is_compressed", True):
        return  # compressed pixel data has no expected length; the decoder checks it
    try:
        expected = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1)
                    * int(ds.get("NumberOfFrames") or 1) * int(ds.BitsAllocated) // 8)
    except (AttributeError, TypeError, ValueError):
        return
    size = path.stat().st_size
    if size < expected:
        raise InputError(f"the CT slice {path.name} is truncated: its pixel data needs {expected} bytes, "
                         f"the file has {size}", patient=patient, path=path,
                         hint="a slice file is damaged or truncated; copy the series again")


def read_ct_series(path: Path, patient=None, files=None) -> tuple[sitk.Image, dict]:
    """Read the CT series in a folder, or the series one DICOM file belongs to; with ``files``, the
    series ``path`` belongs to among those files only (a study in a DICOM database may keep a
    series' files in several folders, or one folder may hold more than the list).

    Slices are sorted by ImagePositionPatient along the slice normal; the spacing between slices
    must be uniform (a missing slice is an error, not silently stretched). Rescale slope and
    intercept are applied by GDCM. A one-slice series gets SpacingBetweenSlices or SliceThickness
    as its z spacing. Returns the image and details (series UID, frame of reference, slice count).
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if path.is_file():
        own = read_header(path, patient)
        modality = str(own.get("Modality", "")).upper()
        if modality in _RT_MODALITIES:
            raise InputError(f"this is a DICOM {modality} file, not a CT image",
                             patient=patient, path=path, hint="give the CT series folder or one CT slice")
        if is_localizer(own):
            raise InputError("this is a LOCALIZER (scout) image, not a slice of the planning CT",
                             patient=patient, path=path, hint="give the CT series folder or one of its axial slices")
        if own.get("ImagePositionPatient") is None:
            raise InputError("DICOM file without ImagePositionPatient: not an image slice",
                             patient=patient, path=path)
        wanted = str(own.SeriesInstanceUID)
    else:
        wanted = None
    headers = _image_headers(folder, files)
    series: dict[str, list] = {}
    for p, ds in headers:
        series.setdefault(str(ds.SeriesInstanceUID), []).append((p, ds))
    if wanted is None:
        if not series:
            raise InputError("no DICOM image slices found in this folder", patient=patient, path=path,
                             hint="give the folder of the CT series, or a NRRD/NIfTI/MHA CT")
        cts = {uid: s for uid, s in series.items()
               if str(s[0][1].get("Modality", "")).upper() == "CT"} or series
        if len(cts) > 1:
            listing = "; ".join(f"{uid} ({len(s)} slices, '{s[0][1].get('SeriesDescription', '')}', "
                                f"files {s[0][0].name} ...)" for uid, s in cts.items())
            raise InputError(f"the folder holds {len(cts)} image series: {listing}",
                             patient=patient, path=path,
                             hint="give one file of the wanted series instead of the folder, or the whole "
                                  "export with --patient-dir")
        wanted = next(iter(cts))
    slices = series[wanted]

    row, col, normal = _orientation(slices[0][1], patient, slices[0][0])
    for p, ds in slices[1:]:
        r2, c2, _ = _orientation(ds, patient, p)
        if abs(float(r2 @ row)) < 0.9999 or abs(float(c2 @ col)) < 0.9999:
            raise InputError("slices of the series have different orientations", patient=patient, path=p)
    positions = np.array([np.asarray(ds.ImagePositionPatient, float) for _, ds in slices])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    slices = [slices[i] for i in order]
    positions, along = positions[order], along[order]
    steps = np.diff(along)
    if steps.size and steps.min() < _SAME_POSITION_MM:
        i = int(np.argmin(steps))
        raise InputError(f"two slices at the same position ({slices[i][0].name}, {slices[i + 1][0].name})",
                         patient=patient, path=folder,
                         hint="the folder mixes acquisitions of one series; separate them")
    uneven = None
    if steps.size:
        dz = float(np.median(steps))
        # Uneven spacing is accepted (finer slices around the target). A slice missing from the copy
        # shows as a step beyond twice the usual one, or as one lone wider step between usual ones
        # (a protocol's coarser region has several).
        tol = max(0.01, 0.01 * dz)
        usual = np.abs(steps - dz) <= tol
        lone = [i for i in range(len(steps)) if steps[i] > 1.5 * dz and (i == 0 or usual[i - 1])
                and (i == len(steps) - 1 or usual[i + 1]) and usual.sum() == len(steps) - 1]
        wide = np.flatnonzero(steps > 2.0 * dz + tol)
        if len(wide) or lone:
            i = int(wide[np.argmax(steps[wide])]) if len(wide) else lone[0]
            why = (f"more than twice the usual {dz:.3f} mm spacing" if len(wide)
                   else f"{dz:.3f} mm between every other pair of slices")
            raise InputError(f"uneven slice spacing: a gap of {steps[i]:.3f} mm between {slices[i][0].name} and "
                             f"{slices[i + 1][0].name}, {why} (a slice missing?)",
                             patient=patient, path=folder, hint="copy the complete series (every slice) into the folder")
        if np.abs(steps - dz).max() > max(0.01, 0.01 * dz):
            uneven = (along - along[0]).tolist()
            log.info("%s: uneven slice spacing (%s mm)", folder, sorted({round(float(x), 3) for x in steps}))
        drift = positions[-1] - positions[0]
        sideways = drift - (drift @ normal) * normal
        if np.linalg.norm(sideways) > 0.01 * abs(float(drift @ normal)) + 0.01:
            raise InputError("slices are shifted in-plane from one to the next (tilted gantry); not supported",
                             patient=patient, path=folder, hint="resample the CT to an untilted grid first")
    else:
        ds0 = slices[0][1]
        dz = float(ds0.get("SpacingBetweenSlices") or ds0.get("SliceThickness") or 1.0)
        if dz <= 0:
            dz = 1.0

    first = slices[0][1]
    check_image_size((int(first.get("Columns") or 0), int(first.get("Rows") or 0), len(slices)), 4,
                     "CT", patient, slices[0][0])  # before GDCM allocates (rescaled voxels may be float32)
    for p, ds in slices:
        _check_not_truncated(p, ds, patient)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p, _ in slices])
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"the CT slices cannot be decoded ({str(exc).strip().splitlines()[-1]})",
                         patient=patient, path=path,
                         hint="a slice file is damaged or truncated; copy the series again") from None
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    sx, sy = _pixel_spacing(slices[0][1], patient, slices[0][0])
    # Set the geometry from the headers ourselves, so it is exactly what DICOM says.
    image.SetSpacing((sx, sy, dz))
    image.SetOrigin(tuple(positions[0].tolist()))
    image.SetDirection(_direction_tuple(row, col, normal))
    if uneven is not None:
        set_slice_positions(image, uneven)
    frame = slices[0][1].get("FrameOfReferenceUID")
    frame = str(frame) if frame else None
    if frame:
        image.SetMetaData(FRAME_OF_REFERENCE_KEY, frame)
    details = {"format": "DICOM", "series_instance_uid": wanted, "slices": len(slices),
               "first_file": str(slices[0][0]),
               "patient_id": str(slices[0][1].get("PatientID", "")) or None,
               "study_instance_uid": str(slices[0][1].get("StudyInstanceUID", "")) or None,
               "modality": str(slices[0][1].get("Modality", "")),
               "series_description": str(slices[0][1].get("SeriesDescription", ""))}
    if uneven is not None:
        details["uneven_slice_spacing"] = {
            "steps_mm": sorted({round(float(x), 3) for x in steps}), "nominal_spacing_mm": dz,
            "slice_positions_mm": [round(float(z), 4) for z in along],
            "note": "kept as stored: each slice at its own position, 3D dose statistics weighted by "
                    "each slice's own thickness"}
    return image, {"frame_of_reference_uid": frame, **details}


# ----------------------------------------------------------------------------------------------
# RTDOSE
# ----------------------------------------------------------------------------------------------

#: DoseUnits / unit names -> factor to Gy.
UNIT_TO_GY = {"GY": 1.0, "CGY": 0.01}


def normalise_unit(unit, patient=None, path=None) -> str:
    """'Gy' or 'cGy' from any spelling; InputError for anything else (e.g. RELATIVE)."""
    text = str(unit).strip().upper()
    if text not in UNIT_TO_GY:
        raise InputError(f"dose unit '{unit}' is not Gy or cGy", patient=patient, path=path,
                         hint="DoseRadiomics needs absolute dose; pass --dose-unit Gy or cGy")
    return "Gy" if text == "GY" else "cGy"


def _uniform_frames(values: np.ndarray, offsets: np.ndarray):
    """Linearly interpolate frames at non-uniform ``offsets`` onto a uniform grid (smallest step)."""
    step = float(np.diff(offsets).min())
    n = int(np.floor((offsets[-1] - offsets[0]) / step + 1e-6)) + 1
    target = offsets[0] + step * np.arange(n)
    hi = np.clip(np.searchsorted(offsets, target, side="right"), 1, len(offsets) - 1)
    lo = hi - 1
    w = ((target - offsets[lo]) / (offsets[hi] - offsets[lo])).clip(0, 1)[:, None, None]
    return (values[lo] * (1 - w) + values[hi] * w), step


def read_rtdose(path: Path, unit=None, patient=None) -> tuple[sitk.Image, dict]:
    """Read a DICOM RTDOSE into a float32 image in Gy.

    Dose = stored pixel value x DoseGridScaling (no DoseGridScaling: InputError, since the stored
    integers have no physical meaning without it), converted from DoseUnits GY/CGY. A ``unit``
    given by the user must agree with DoseUnits, or replaces it when DoseUnits is absent.
    GridFrameOffsetVector may be relative (first value 0) or absolute (first value = z of
    ImagePositionPatient); frames are sorted along the normal. Non-uniformly spaced frames are
    linearly interpolated onto a uniform grid at the smallest spacing (recorded in the details).
    """
    path = Path(path)
    ds = read_rt_object(path, "RTDOSE", patient, hint="give the RTDOSE file as the dose")
    if ds.get("DoseGridScaling") in (None, ""):
        raise InputError("RTDOSE without DoseGridScaling: the stored values cannot be turned into Gy",
                         patient=patient, path=path, hint="re-export the dose from the planning system")
    try:
        scaling = float(ds.DoseGridScaling)
    except (TypeError, ValueError):
        scaling = float("nan")
    if not np.isfinite(scaling) or scaling <= 0:
        raise InputError(f"RTDOSE DoseGridScaling is {ds.DoseGridScaling!r}, not a positive number",
                         patient=patient, path=path, hint="re-export the dose from the planning system")
    declared = ds.get("DoseUnits")
    if declared:
        file_unit = normalise_unit(declared, patient, path)
        if unit is not None and normalise_unit(unit, patient, path) != file_unit:
            raise InputError(f"the file declares DoseUnits {declared} but {unit} was given",
                             patient=patient, path=path, hint="drop --dose-unit for DICOM doses")
    elif unit is not None:
        file_unit = normalise_unit(unit, patient, path)
    else:
        raise InputError("RTDOSE without DoseUnits", patient=patient, path=path,
                         hint="pass --dose-unit Gy or cGy")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    # float64 working copy: check the declared size before pydicom or numpy allocate anything
    check_image_size((int(ds.get("Columns") or 0), int(ds.get("Rows") or 0), frames), 8, "dose", patient, path)
    try:
        stored = np.asarray(ds.pixel_array)
    except Exception as exc:  # pydicom raises many types for absent/undecodable pixel data
        raise InputError(f"the dose pixel data cannot be decoded ({exc})", patient=patient, path=path,
                         hint="the file is damaged or truncated; export the dose again") from None
    if stored.size != frames * int(ds.Rows) * int(ds.Columns):
        raise InputError(f"the dose pixel data holds {stored.size} values, not the {frames} x {ds.Rows} x "
                         f"{ds.Columns} the header declares", patient=patient, path=path,
                         hint="the file is damaged; export the dose again")
    stored = stored.reshape(frames, int(ds.Rows), int(ds.Columns))

    row, col, normal = _orientation(ds, patient, path)
    if ds.get("ImagePositionPatient") is None:
        raise InputError("RTDOSE without ImagePositionPatient", patient=patient, path=path)
    ipp = np.asarray(ds.ImagePositionPatient, float)
    sx, sy = _pixel_spacing(ds, patient, path)
    gfov = ds.get("GridFrameOffsetVector")
    offsets_form = "single frame"
    resampled_from = None
    if frames > 1:
        if gfov is None or len(gfov) != frames:
            raise InputError(f"GridFrameOffsetVector missing or not {frames} values long",
                             patient=patient, path=path)
        offsets = np.asarray([float(v) for v in gfov])
        if abs(offsets[0]) < 1e-4:
            offsets_form = "relative"
        elif abs(offsets[0] - ipp[2]) < 1e-3:
            offsets_form = "absolute"  # DICOM's second form: offsets are z positions
            offsets = offsets - offsets[0]
        else:
            raise InputError(f"GridFrameOffsetVector starts at {offsets[0]}, neither 0 nor the z of "
                             f"ImagePositionPatient ({ipp[2]})", patient=patient, path=path)
        order = np.argsort(offsets, kind="stable")
        offsets, stored = offsets[order], stored[order]
        steps = np.diff(offsets)
        if steps.min() < _SAME_POSITION_MM:
            raise InputError("GridFrameOffsetVector repeats a position", patient=patient, path=path)
        dz = float(np.median(steps))
        values = stored.astype(np.float64) * scaling * UNIT_TO_GY[file_unit.upper()]
        if np.abs(steps - dz).max() > 1e-3:
            resampled_from = offsets.tolist()
            values, dz = _uniform_frames(values, offsets)
            log.warning("%s: non-uniform dose frame spacing resampled to %.3f mm", path, dz)
        origin = ipp + normal * offsets[0]
    else:
        dz = float(ds.get("SliceThickness") or 1.0) or 1.0
        values = stored.astype(np.float64) * scaling * UNIT_TO_GY[file_unit.upper()]
        origin = ipp
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.SetSpacing((sx, sy, dz))
    image.SetOrigin(tuple(origin.tolist()))
    image.SetDirection(_direction_tuple(row, col, normal))
    frame = ds.get("FrameOfReferenceUID")
    frame = str(frame) if frame else None
    details = {
        "format": "DICOM RTDOSE",
        "frame_of_reference_uid": frame,
        "original_units": str(declared) if declared else None,
        "unit_used": file_unit,
        "dose_grid_scaling": scaling,
        "dose_type": str(ds.get("DoseType", "")) or None,
        "dose_summation_type": str(ds.get("DoseSummationType", "")) or None,
        "grid_frame_offsets": offsets_form,
        "frames": frames,
        "max_dose_gy": float(values.max()),
        "min_dose_gy": float(values.min()),
    }
    if resampled_from is not None:
        details["frames_resampled_from_offsets_mm"] = resampled_from
    return image, details


# ----------------------------------------------------------------------------------------------
# RTSTRUCT
# ----------------------------------------------------------------------------------------------

def _name_key(name) -> str:
    # The name rule: case and spaces do not matter ("PTV 70" is "ptv70").
    return "".join(str(name).split()).casefold()


def structures_named(names, name) -> list[int]:
    """Indices in ``names`` of the structures that the GTV name the user gave (``--gtv-name``) picks.

    The one name rule, for RTSTRUCT ROIs, segments of a ``.seg.nrrd``, the Slicer module's
    segments and the manifest builder: case and spaces do not matter. ``name`` may also be several
    rules separated by ``|`` (aliases, tried in order: the first that matches anything wins), each
    a name, ``glob:PATTERN`` (shell wildcards) or ``re:PATTERN`` (a regular expression matching the
    whole name, case-insensitive); a list or tuple of rules is the same as ``|``.
    """
    import fnmatch
    import re as _re

    rules = list(name) if isinstance(name, (list, tuple)) else str(name).split("|")
    keys = [_name_key(n) for n in names]
    for rule in (str(r).strip() for r in rules):
        if not rule:
            continue
        if rule.lower().startswith("glob:"):
            pattern = _name_key(rule[5:])
            hits = [i for i, k in enumerate(keys) if fnmatch.fnmatchcase(k, pattern)]
        elif rule.lower().startswith("re:"):
            try:
                rx = _re.compile(rule[3:].strip(), _re.IGNORECASE)
            except _re.error as exc:
                raise InputError(f"the GTV name rule '{rule}' is not a valid regular expression ({exc})",
                                 hint="write re:PATTERN with a Python regular expression") from None
            hits = [i for i, n in enumerate(names) if rx.fullmatch(str(n).strip())]
        else:
            hits = [i for i, k in enumerate(keys) if k == _name_key(rule)]
        if hits:
            return hits
    return []


def close_names(names, name, n: int = 3) -> list[str]:
    """Up to ``n`` of ``names`` that look like ``name`` (for "did you mean"), ignoring case, spaces,
    '_' and '-'."""
    import difflib

    def loose(x):
        return "".join(ch for ch in _name_key(x) if ch not in "_-.")

    rules = [r for r in (list(name) if isinstance(name, (list, tuple)) else str(name).split("|"))
             if not str(r).lower().startswith(("glob:", "re:"))]
    by_key = {}
    for x in names:
        by_key.setdefault(loose(x), x)
    out = []
    for r in rules:
        for k in difflib.get_close_matches(loose(r), list(by_key), n=n, cutoff=0.6):
            if by_key[k] not in out:
                out.append(by_key[k])
    return out[:n]


def choose_structure(names, name, what: str = "structure", patient=None, path=None) -> int:
    """The index of the one structure ``name`` picks (:func:`structures_named`), or an InputError
    listing the candidates (none matched: every name, with a close-name suggestion; several: those)."""
    listing = ", ".join(repr(n) for n in names)
    if name is None or not str(name).strip():
        raise InputError(f"the file holds several {what}s; say which one is the GTV", patient=patient, path=path,
                         hint=f"pass --gtv-name, one of: {listing}")
    hits = structures_named(names, name)
    if not hits:
        near = close_names(names, name)
        raise InputError(f"no {what} named '{name}'; available: {listing}"
                         + (f"; did you mean {' or '.join(repr(x) for x in near)}?" if near else ""),
                         patient=patient, path=path, hint="pass one of the available names as --gtv-name "
                         "(or several rules: 'GTV|GTVp|glob:GTV*|re:gtv.*')")
    if len(hits) > 1:
        raise InputError(f"{len(hits)} {what}s match '{name}': {', '.join(repr(names[i]) for i in hits)}",
                         patient=patient, path=path, hint="give one exact name as --gtv-name")
    return hits[0]


def rtstruct_rois(ds) -> list[dict]:
    """ROIs of an RTSTRUCT dataset: number, name, frame of reference, contours (datasets)."""
    contours = {}
    for rc in ds.get("ROIContourSequence", []):
        contours[str(rc.get("ReferencedROINumber"))] = list(rc.get("ContourSequence", []))
    default_frame = None
    for ref in ds.get("ReferencedFrameOfReferenceSequence", []):
        if ref.get("FrameOfReferenceUID"):
            default_frame = str(ref.FrameOfReferenceUID)
            break
    rois = []
    for roi in ds.get("StructureSetROISequence", []):
        number = str(roi.get("ROINumber"))
        frame = roi.get("ReferencedFrameOfReferenceUID") or default_frame
        rois.append({"number": number, "name": str(roi.get("ROIName", "")).strip(),
                     "frame_of_reference_uid": str(frame) if frame else None,
                     "contours": contours.get(number, [])})
    return rois


#: A pixel centre closer than this (in pixels, perpendicular to an edge) to a contour is ON it, and
#: belongs to the ROI. Contours through pixel centres (rt-utils and other mask-to-RTSTRUCT writers)
#: then give back their mask; coordinates written with 4 decimals in mm stay well within it.
ON_CONTOUR_TOLERANCE_PX = 1e-3


def _on_polygon_edges(starts, ends, nx: int, ny: int, tol: float) -> np.ndarray:
    """Pixels whose centre lies within ``tol`` (perpendicular distance) of an edge start->end."""
    on = np.zeros((ny, nx), bool)
    d = ends - starts
    length2 = (d ** 2).sum(axis=1)
    for axis in (1, 0):  # scan the rows an edge crosses (i at each row), then the columns (j at each column)
        a0, a1 = starts[:, axis], ends[:, axis]
        lo, hi = np.minimum(a0, a1), np.maximum(a0, a1)
        first = np.ceil(lo - tol).astype(np.int64)
        count = np.maximum(np.floor(hi + tol).astype(np.int64) - first + 1, 0)
        edge = np.repeat(np.arange(len(first)), count)
        if edge.size == 0:
            continue
        along = first[edge] + (np.arange(edge.size) - np.repeat(np.cumsum(count) - count, count))
        span = a1[edge] - a0[edge]
        t = np.where(span != 0, (along - a0[edge]) / np.where(span != 0, span, 1), 0.0)
        other = starts[edge, 1 - axis] + t.clip(0, 1) * d[edge, 1 - axis]
        across = np.rint(other).astype(np.int64)
        pts = np.empty((edge.size, 2))
        pts[:, axis], pts[:, 1 - axis] = along, across
        # exact perpendicular distance from the candidate centre to the segment
        w = pts - starts[edge]
        u = np.where(length2[edge] > 0, (w * d[edge]).sum(axis=1) / np.where(length2[edge] > 0, length2[edge], 1), 0)
        near = ((w - u.clip(0, 1)[:, None] * d[edge]) ** 2).sum(axis=1) <= tol * tol
        i, j = pts[near, 0].astype(np.int64), pts[near, 1].astype(np.int64)
        ok = (i >= 0) & (i < nx) & (j >= 0) & (j < ny)
        on[j[ok], i[ok]] = True
    return on


def fill_polygons(polygons, nx: int, ny: int, tol: float = ON_CONTOUR_TOLERANCE_PX) -> np.ndarray:
    """Even-odd scanline fill of polygons given in pixel-index coordinates (i, j) on an ny x nx slice.

    A pixel belongs to the ROI when its centre lies inside an odd number of the polygons (so a
    contour drawn inside another on the same plane becomes a hole, as RTSTRUCT intends) or ON any
    polygon, within ``tol`` pixels (:data:`ON_CONTOUR_TOLERANCE_PX`): a contour through the centres
    of the boundary pixels keeps them, and an inner contour through the centres of a hole's rim
    keeps the rim (the rim pixels are the ROI's) while the hole's pixels stay out. Each edge
    crossing the row of pixel centres toggles every pixel to its right; a cumulative sum gives the
    parity (edges half-open in j, so a centre exactly on an edge is counted once).
    """
    out = np.zeros((ny, nx), bool)
    if not polygons:
        return out
    starts = np.concatenate([np.asarray(p, float) for p in polygons])
    ends = np.concatenate([np.roll(np.asarray(p, float), -1, axis=0) for p in polygons])
    on = _on_polygon_edges(starts, ends, nx, ny, tol) if tol > 0 else None
    keep = starts[:, 1] != ends[:, 1]  # horizontal edges cross no row of centres
    (x0, y0), (x1, y1) = starts[keep].T, ends[keep].T
    ylo, yhi = np.minimum(y0, y1), np.maximum(y0, y1)
    first = np.ceil(ylo).astype(np.int64)
    count = np.maximum(np.ceil(yhi).astype(np.int64) - first, 0)
    edge = np.repeat(np.arange(len(first)), count)
    if edge.size == 0:
        return out | on if on is not None else out
    rows = first[edge] + (np.arange(edge.size) - np.repeat(np.cumsum(count) - count, count))
    x = x0[edge] + (rows - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    inside_rows = (rows >= 0) & (rows < ny)
    rows, x = rows[inside_rows], x[inside_rows]
    col = np.clip(np.floor(x).astype(np.int64) + 1, 0, nx)  # first pixel centre strictly right of x
    toggles = np.zeros((ny, nx + 1), np.int32)
    np.add.at(toggles, (rows, col), 1)
    out[:] = (np.cumsum(toggles, axis=1)[:, :nx] % 2).astype(bool)
    return out | on if on is not None else out


def rasterise_rtstruct(path: Path, reference: sitk.Image, name=None, reference_frame_uid=None,
                       patient=None) -> tuple[sitk.Image, dict]:
    """Rasterise one RTSTRUCT ROI onto the grid of ``reference``; returns (UInt8 mask, report).

    Each CLOSED_PLANAR contour is placed on the reference slice nearest its plane (it must lie within
    half a slice of one); contours on the same plane are filled by the even-odd rule (inner contours
    are holes); a pixel is inside when its centre is inside or on a contour (within
    :data:`ON_CONTOUR_TOLERANCE_PX`, see :func:`fill_polygons`). Contours off the grid, between slices
    (more than 5 % of a slice from the nearest) or of other types are listed in the report's
    ``warnings``. ROI names match case-insensitively; an unknown name lists the available ones.
    """
    path = Path(path)
    ds = read_rt_object(path, "RTSTRUCT", patient, hint="give the RTSTRUCT (structure set) file as the GTV")
    rois = rtstruct_rois(ds)
    names = [r["name"] for r in rois]
    # pydicom reads a cut-off file without complaint, dropping what is missing; the RT ROI
    # Observations (Type 1, stored after the contours) being absent is the tell-tale sign.
    truncated = ("; the file looks truncated (it ends before its RT ROI Observations)"
                 if ds.get("RTROIObservationsSequence") is None else "")
    if name is None:
        raise InputError("an RTSTRUCT holds several structures; say which one is the GTV",
                         patient=patient, path=path,
                         hint=f"pass --gtv-name, one of: {', '.join(repr(n) for n in names)}")
    matches = [rois[i] for i in structures_named(names, name)]
    if len({r["name"] for r in matches}) == 1 and len(matches) > 1:
        raise InputError(f"{len(matches)} structures are named '{matches[0]['name']}' (ROI numbers "
                         f"{', '.join(r['number'] for r in matches)})", patient=patient, path=path,
                         hint="rename the duplicates in the planning system")
    try:
        roi = rois[choose_structure(names, name, "structure", patient, path)]
    except InputError as exc:
        if truncated and not matches:
            exc.problem += truncated
            exc.with_context()
        raise
    if (reference_frame_uid and roi["frame_of_reference_uid"]
            and roi["frame_of_reference_uid"] != reference_frame_uid):
        raise InputError(f"structure '{roi['name']}' is in frame of reference {roi['frame_of_reference_uid']} "
                         f"but the CT is in {reference_frame_uid}", patient=patient, path=path,
                         hint="use the RTSTRUCT drawn on this CT")

    nx, ny, nz = reference.GetSize()
    origin = np.asarray(reference.GetOrigin(), float)
    matrix = np.asarray(reference.GetDirection(), float).reshape(3, 3) @ np.diag(reference.GetSpacing())
    to_index = np.linalg.inv(matrix)
    positions = slice_positions(reference)
    normal = np.asarray(reference.GetDirection(), float).reshape(3, 3)[:, 2]
    report = {"roi_name": roi["name"], "roi_number": roi["number"], "contours": len(roi["contours"]),
              "contours_used": 0, "slices": [], "warnings": []}
    planes: dict[tuple, list] = {}
    off_grid, between, other_types, partly_outside, too_few = [], [], set(), 0, 0
    for c in roi["contours"]:
        kind = str(c.get("ContourGeometricType", "CLOSED_PLANAR")).upper()
        data = c.get("ContourData")
        if kind == "CLOSED_PLANAR" and (data is None or len(data) < 9):
            too_few += 1      # a closed polygon needs 3 points; say so, not "not CLOSED_PLANAR"
            continue
        if kind != "CLOSED_PLANAR":
            other_types.add(kind)
            continue
        declared = c.get("NumberOfContourPoints")
        if len(data) % 3 or (declared not in (None, "") and len(data) != 3 * int(declared)):
            raise InputError(f"a contour of '{roi['name']}' is damaged: {len(data)} coordinates for "
                             f"{declared} points{truncated}", patient=patient, path=path,
                             hint="export the RTSTRUCT again")
        pts = np.asarray(data, float).reshape(-1, 3)
        if not np.isfinite(pts).all():
            raise InputError(f"a contour of '{roi['name']}' has coordinates that are not finite numbers "
                             "(NaN or infinite)", patient=patient, path=path, hint="export the RTSTRUCT again")
        idx = (pts - origin) @ to_index.T
        if positions is not None:  # uneven slices: k from the true slice positions
            idx[:, 2] = fractional_index((pts - origin) @ normal, positions)
        k = idx[:, 2]
        if np.ptp(k) > 0.5:
            raise InputError(f"a contour of '{roi['name']}' is not parallel to the CT slices "
                             f"(spans {np.ptp(k):.2f} slices)", patient=patient, path=path,
                             hint="the CT and the RTSTRUCT orientations differ; use the CT the contours were drawn on")
        kmean = float(k.mean())
        slice_index = int(np.floor(kmean + 0.5))
        z = float(pts[:, 2].mean())
        if slice_index < 0 or slice_index >= nz:
            off_grid.append(round(z, 2))
            continue
        if abs(kmean - slice_index) > 0.05:
            between.append(round(z, 2))
        if (idx[:, 0].min() < -0.5 or idx[:, 1].min() < -0.5
                or idx[:, 0].max() > nx - 0.5 or idx[:, 1].max() > ny - 0.5):
            partly_outside += 1
        # Group by the contour's own plane so two planes landing on one slice are OR-ed, not XOR-ed.
        planes.setdefault((slice_index, round(kmean, 2)), []).append(idx[:, :2])
        report["contours_used"] += 1
    mask = np.zeros((nz, ny, nx), np.uint8)
    for (slice_index, _), polygons in planes.items():
        mask[slice_index] |= fill_polygons(polygons, nx, ny).astype(np.uint8)
    report["slices"] = sorted({s for s, _ in planes})
    if off_grid:
        report["warnings"].append(f"{len(off_grid)} contour(s) of '{roi['name']}' lie outside the CT slices "
                                  f"(z = {', '.join(map(str, sorted(set(off_grid))[:10]))} mm) and were skipped")
    if between:
        report["warnings"].append(f"{len(between)} contour(s) of '{roi['name']}' lie between CT slices "
                                  f"(z = {', '.join(map(str, sorted(set(between))[:10]))} mm); "
                                  "each was placed on the nearest slice")
    if partly_outside:
        report["warnings"].append(f"{partly_outside} contour(s) of '{roi['name']}' extend beyond the CT "
                                  "in-plane field of view and were clipped")
    if too_few:
        report["warnings"].append(f"{too_few} contour(s) of '{roi['name']}' have fewer than 3 points (a closed "
                                  "contour needs 3) and were ignored")
    if other_types:
        report["warnings"].append(f"contours of type {', '.join(sorted(other_types))} were ignored "
                                  "(only CLOSED_PLANAR contours enclose a volume)")
    if not reference_frame_uid:
        report["warnings"].append("the CT has no DICOM frame of reference (not read from DICOM): the "
                                  "RTSTRUCT is assumed to be drawn on it")
    if not mask.any():   # the error says why (its first warning): the command prints one line
        why = "has no contours" if not roi["contours"] else "has no contour on the CT grid"
        raise InputError(f"structure '{roi['name']}' {why}" + (f": {report['warnings'][0]}" if report["warnings"] else "")
                         + truncated, patient=patient, path=path,
                         hint="export the RTSTRUCT again" if truncated else "check that the RTSTRUCT belongs to this CT")
    for w in report["warnings"]:
        log.warning("%s: %s", path, w)
    image = sitk.GetImageFromArray(mask)
    image.CopyInformation(reference)
    return copy_slice_positions(reference, image), report
