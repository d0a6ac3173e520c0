"""Reading the planning CT, the RT dose and the GTV contour into SimpleITK images.

CONTRACT (implemented by the readers work; other modules rely on exactly this):

- ``read_ct(path, patient=None) -> LoadedImage``: a DICOM series folder (or one DICOM file of it),
  NRRD, NIfTI (.nii/.nii.gz) or MHA/MHD. ``image`` is a 3D SimpleITK image in HU (pixel type as stored,
  rescale slope/intercept applied for DICOM). ``frame_of_reference_uid`` set for DICOM.
- ``read_dose(path, unit=None, patient=None) -> LoadedImage``: DICOM RTDOSE (DoseGridScaling applied,
  DoseUnits GY/CGY converted to Gy, GridFrameOffsetVector honoured) or NRRD/NIfTI/MHA with a
  declared ``unit`` ("Gy" or "cGy"; a NRRD may also declare it in a key; without either: InputError).
  ``image`` is float32 in Gy. ``details`` records scaling, original units, dose type, summation type.
- ``read_gtv(path, reference, name=None, label=None, patient=None) -> sitk.Image``: a UInt8 0/1 mask
  on the grid of ``reference`` (the CT): from an RTSTRUCT ROI chosen by ``name`` (contours
  rasterised), from a labelmap file (voxels == ``label``, default: any non-zero), or from a Slicer
  ``.seg.nrrd`` segment chosen by ``name``. Unknown names list the available ones in the error.
- Every failure raises :class:`~DoseRadiomicsLib.errors.InputError` naming the patient and file.

Untrusted files: a header declaring more voxels than :func:`max_image_bytes` allows (default 2 GiB
of working memory per image; the environment variable ``DOSERADIOMICS_MAX_IMAGE_BYTES`` raises it,
e.g. ``8G``) is refused BEFORE anything is allocated; CT or dose voxels that are NaN or infinite, and
a dose that is 0 Gy everywhere, are refused rather than turned into meaningless features.

Orientation: any direction cosines are supported (oblique, sagittal or coronal acquisitions): the
geometry comes from the file. Before the slice is cut, :func:`~DoseRadiomicsLib.pipeline.measure_patient`
flips and permutes the CT, dose and mask (no interpolation) into the patient's LPS orientation
(:mod:`DoseRadiomicsLib.orientation`), so HFS/HFP/FFS/FFP storage of one anatomy gives the same
features; the cross-section is then normal to that image axis (``axis`` of
:func:`~DoseRadiomicsLib.crosssection.largest_cross_section`, k = superior by default). For an
oblique CT it is the nearest such axis, i.e. the acquired slice; RTSTRUCT contours must lie in the
CT's slice planes (contours across them are refused as drawn on another CT).

DICOM specifics (series sorting, RTDOSE geometry, contour rasterisation) live in
:mod:`DoseRadiomicsLib.dicomrt`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import dicomrt
from .alignment import resample_to_reference, same_grid
from .errors import InputError
from .limits import check_direction, check_dose_maximum, check_label_value

log = logging.getLogger(__name__)

#: File endings read with SimpleITK (lower case).
IMAGE_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
#: Header keys (compared case-insensitively) a NRRD/MHA dose may declare its unit in.
DOSE_UNIT_KEYS = ("dose_unit", "doseunits", "dose_units", "doseunit")
#: Metadata key of a mask from :func:`read_gtv` holding its JSON report (source, warnings).
GTV_REPORT_KEY = "DoseRadiomics_gtv_report"
_SEGMENT_KEY = re.compile(r"^Segment(\d+)_(\w+)$")
#: Working memory one image may take unless ``DOSERADIOMICS_MAX_IMAGE_BYTES`` says otherwise.
DEFAULT_MAX_IMAGE_BYTES = 2 * 1024 ** 3
MAX_IMAGE_BYTES_VARIABLE = "DOSERADIOMICS_MAX_IMAGE_BYTES"
_SIZE_SUFFIX = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
_BITS = re.compile(r"(\d+)-bit")


@dataclass
class LoadedImage:
    """An image read from disk: the SimpleITK image, where it came from, its DICOM frame of reference
    (None for NRRD/NIfTI/MHA) and reader details (format, units, scaling, ...)."""

    image: sitk.Image
    path: str
    frame_of_reference_uid: str | None = None
    details: dict = field(default_factory=dict)


def max_image_bytes() -> int:
    """The largest image (bytes of working memory) a reader will allocate.

    ``DOSERADIOMICS_MAX_IMAGE_BYTES`` (a number of bytes, optionally with K, M, G or T) overrides
    :data:`DEFAULT_MAX_IMAGE_BYTES`; an unreadable value is an InputError.
    """
    text = os.environ.get(MAX_IMAGE_BYTES_VARIABLE, "").strip().upper().removesuffix("B").removesuffix("I")
    if not text:
        return DEFAULT_MAX_IMAGE_BYTES
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)", text)
    if not m:
        raise InputError(f"{MAX_IMAGE_BYTES_VARIABLE}={os.environ[MAX_IMAGE_BYTES_VARIABLE]!r} is not a size",
                         hint="give bytes, e.g. 4000000000 or 4G")
    return int(float(m.group(1)) * _SIZE_SUFFIX[m.group(2)])


def check_image_size(size, bytes_per_voxel: float, what: str, patient=None, path=None) -> None:
    """Refuse an image whose header declares no voxels or more than :func:`max_image_bytes`.

    Called with the size read from the header only, so a damaged or hostile header never makes
    the reader allocate (a 200000 x 200000 x 5000 NRRD would otherwise ask for 400 TB).
    """
    dims = [int(n) for n in size]
    shown = " x ".join(str(n) for n in dims)
    if not dims or min(dims) <= 0:
        raise InputError(f"the {what} header declares an empty image ({shown} voxels)",
                         patient=patient, path=path, hint="the file is damaged; export it again")
    need = float(np.prod([float(n) for n in dims])) * float(bytes_per_voxel)
    limit = max_image_bytes()
    if need > limit:
        raise InputError(f"the {what} header declares {shown} voxels ({_readable_bytes(need)} in memory), "
                         f"more than the {_readable_bytes(limit)} limit", patient=patient, path=path,
                         hint=f"if the image is genuine, raise the limit with the environment variable "
                              f"{MAX_IMAGE_BYTES_VARIABLE} (e.g. 8G); otherwise the file header is damaged")


def _readable_bytes(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def _voxel_bytes(pixel_id: int, components: int) -> int:
    """Bytes per voxel of a SimpleITK pixel type (from its description, e.g. '16-bit signed integer')."""
    text = sitk.GetPixelIDValueAsString(pixel_id)
    m = _BITS.search(text)
    per = int(m.group(1)) // 8 if m else 8
    if "complex" in text:
        per *= 2
    return per * max(1, int(components))


def _check_finite(image: sitk.Image, what: str, patient, path) -> None:
    """Refuse NaN or infinite voxels (only floating-point images can hold them)."""
    if "float" not in image.GetPixelIDTypeAsString():
        return
    values = sitk.GetArrayViewFromImage(image)
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise InputError(f"the {what} has {bad} voxel(s) that are not finite numbers (NaN or infinite)",
                         patient=patient, path=path,
                         hint=f"the {what} is damaged or has undefined voxels; fill them (or re-export) and retry")


def _check_exists(path, what: str, patient) -> Path:
    if path is None or str(path).strip() == "":
        raise InputError(f"no {what} file given", patient=patient)
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"the {what} file does not exist", patient=patient, path=p,
                         hint="check the path (a manifest's paths are relative to the manifest's folder)")
    if p.is_file() and p.stat().st_size == 0:
        raise InputError(f"the {what} file is empty", patient=patient, path=p,
                         hint="the copy or export was interrupted; copy or export it again")
    return p


def _is_image_file(p: Path) -> bool:
    return p.name.lower().endswith(IMAGE_SUFFIXES)


def _read_sitk(p: Path, what: str, patient, working_bytes: int = 0) -> sitk.Image:
    """Read with SimpleITK after checking the header's size against the memory limit.

    ``working_bytes``: bytes per voxel the caller will need afterwards (e.g. 8 for a float64 copy).
    """
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
        check_image_size(reader.GetSize(), max(_voxel_bytes(reader.GetPixelID(), reader.GetNumberOfComponents()),
                                               working_bytes), what, patient, p)
        image = reader.Execute()
    except RuntimeError as exc:
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        raise InputError(f"the {what} cannot be read ({lines[-1] if lines else 'unknown error'})",
                         patient=patient, path=p,
                         hint="the file is damaged, truncated or not an image; export it again") from None
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    if image.GetDimension() != 3:
        raise InputError(f"the {what} is {image.GetDimension()}D; a 3D image is needed", patient=patient, path=p)
    return image


def read_ct(path, patient=None, files=None) -> LoadedImage:
    """Read the planning CT (HU) from a DICOM series folder or file, NRRD, NIfTI or MHA/MHD.

    For DICOM, slices are ordered by ImagePositionPatient along the slice normal and rescale
    slope/intercept are applied; ``frame_of_reference_uid`` is filled. A one-slice series is allowed.
    ``files`` (DICOM only): the series' slices are looked for among these files, not in the folder.
    """
    p = _check_exists(path, "CT", patient)
    if p.is_dir() or (not _is_image_file(p) and dicomrt.is_dicom_file(p)):
        image, details = dicomrt.read_ct_series(p, patient=patient, files=files)
        check_direction(image.GetDirection(), "CT", patient, p)
        _check_finite(image, "CT", patient, p)
        return LoadedImage(image, str(p), details.pop("frame_of_reference_uid"), details)
    if not _is_image_file(p):
        raise InputError("unknown CT file type", patient=patient, path=p,
                         hint="give a DICOM series folder or file, or a .nrrd/.nii/.nii.gz/.mha/.mhd image")
    image = _read_sitk(p, "CT", patient)
    check_direction(image.GetDirection(), "CT", patient, p)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("the CT has several components per voxel; a scalar image is needed",
                         patient=patient, path=p, hint="give the CT in HU (grey values), not a colour image")
    _check_finite(image, "CT", patient, p)
    return LoadedImage(image, str(p), None, {"format": p.suffix.lstrip(".").upper()})


def _unit_from_header(image: sitk.Image):
    for key in image.GetMetaDataKeys():
        if key.strip().lower() in DOSE_UNIT_KEYS:
            return key, image.GetMetaData(key).strip()
    return None, None


def read_dose(path, unit=None, patient=None) -> LoadedImage:
    """Read the RT dose as a float32 image in Gy.

    DICOM RTDOSE: stored values x DoseGridScaling, DoseUnits GY/CGY converted, GridFrameOffsetVector
    (relative or absolute) honoured, FrameOfReferenceUID kept. NRRD/NIfTI/MHA: the unit comes from
    ``unit`` ("Gy"/"cGy") or a header key (``dose_unit``, ``DoseUnits``); both given must agree;
    neither: InputError asking for --dose-unit. ``details`` has units, scaling, dose/summation type
    and ``max_dose_gy``.
    """
    p = _check_exists(path, "dose", patient)
    if p.is_dir():
        raise InputError("the dose must be one file (DICOM RTDOSE, NRRD, NIfTI or MHA), not a folder",
                         patient=patient, path=p)
    if not _is_image_file(p):
        if not dicomrt.is_dicom_file(p):
            raise InputError("unknown dose file type", patient=patient, path=p,
                             hint="give a DICOM RTDOSE or a .nrrd/.nii/.nii.gz/.mha/.mhd dose in Gy or cGy")
        image, details = dicomrt.read_rtdose(p, unit=unit, patient=patient)
        check_direction(image.GetDirection(), "dose", patient, p)
        _check_dose_values(image, patient, p, f"DoseUnits {details.get('original_units') or 'not given'}")
        return LoadedImage(image, str(p), details.pop("frame_of_reference_uid"), details)

    image = _read_sitk(p, "dose", patient, working_bytes=8)  # converted through float64
    check_direction(image.GetDirection(), "dose", patient, p)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("the dose has several components per voxel; a scalar image is needed",
                         patient=patient, path=p, hint="give the dose grid in Gy or cGy, not a colour picture "
                                                       "(a dose-map picture goes to extract-dosemap)")
    key, header_unit = _unit_from_header(image)
    if unit is None and header_unit is None:
        raise InputError("the dose unit is not declared in the file", patient=patient, path=p,
                         hint="pass --dose-unit Gy or --dose-unit cGy")
    used = dicomrt.normalise_unit(unit if unit is not None else header_unit, patient, p)
    if unit is not None and header_unit is not None and dicomrt.normalise_unit(header_unit, patient, p) != used:
        raise InputError(f"the file declares {key}={header_unit} but {unit} was given",
                         patient=patient, path=p, hint="drop --dose-unit or correct the file")
    scale = dicomrt.UNIT_TO_GY[used.upper()]
    if scale == 1.0:    # Gy: one rounding to float32 either way, without two whole-volume passes
        dose = sitk.Cast(image, sitk.sitkFloat32)
    else:
        dose = sitk.Cast(sitk.Cast(image, sitk.sitkFloat64) * scale, sitk.sitkFloat32)
    _check_dose_values(dose, patient, p, f"read as {used} from the "
                       + ("--dose-unit option" if unit is not None else f"header key {key}"))
    values = sitk.GetArrayViewFromImage(dose)
    details = {"format": p.suffix.lstrip(".").upper(), "original_units": header_unit, "unit_used": used,
               "unit_source": "argument" if unit is not None else f"header key {key}",
               "dose_grid_scaling": None, "dose_type": None, "dose_summation_type": None,
               "max_dose_gy": float(values.max()), "min_dose_gy": float(values.min())}
    return LoadedImage(dose, str(p), None, details)


def _check_dose_values(dose: sitk.Image, patient, path, unit_note: str) -> None:
    """A dose must be finite, somewhere above 0 Gy and nowhere above the plausible maximum
    (:mod:`limits`): otherwise no isodose ROI means anything."""
    _check_finite(dose, "dose", patient, path)
    top = float(sitk.GetArrayViewFromImage(dose).max())
    check_dose_maximum(top, unit_note, patient, path)
    if top <= 0.0:
        raise InputError("the dose is 0 Gy everywhere", patient=patient, path=path,
                         hint="the file holds no dose (an empty plan or a failed export); export the "
                              "planned dose again")


def _binary_on_reference(binary: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """A 0/1 UInt8 mask moved onto the reference grid (nearest neighbour, 0 outside)."""
    return resample_to_reference(binary, reference, sitk.sitkNearestNeighbor, 0, pixel_type=sitk.sitkUInt8)


def _segments(image: sitk.Image) -> list[dict]:
    """Segments described in a Slicer .seg.nrrd header: name, label value, layer."""
    found: dict[int, dict] = {}
    for key in image.GetMetaDataKeys():
        m = _SEGMENT_KEY.match(key)
        if m:
            found.setdefault(int(m.group(1)), {})[m.group(2)] = image.GetMetaData(key)
    layers = image.GetNumberOfComponentsPerPixel()
    segments = []
    for index in sorted(found):
        seg = found[index]
        # Files written before Slicer 4.11 have no LabelValue/Layer: one layer per segment, value 1.
        layer = int(seg.get("Layer", index if layers > 1 else 0))
        segments.append({"index": index, "name": seg.get("Name", f"Segment_{index}").strip(),
                         "label": int(seg.get("LabelValue", 1)), "layer": layer})
    return segments


def _read_segmentation(p: Path, image: sitk.Image, reference: sitk.Image, name, label, patient):
    segments = _segments(image)
    names = ", ".join(repr(s["name"]) for s in segments)
    if name is not None:
        chosen = [segments[i] for i in dicomrt.structures_named([s["name"] for s in segments], name)]
        if not chosen:
            raise InputError(f"no segment named '{name}'; available: {names}", patient=patient, path=p,
                             hint="pass one of the available names as --gtv-name")
    elif label is not None:
        chosen = [s for s in segments if s["label"] == int(label)]
        if not chosen:
            raise InputError(f"no segment with label value {label}; segments: {names}", patient=patient, path=p)
    elif len(segments) == 1:
        chosen = segments
    else:
        raise InputError("the segmentation holds several segments; say which one is the GTV",
                         patient=patient, path=p, hint=f"pass --gtv-name, one of: {names}")
    if len(chosen) > 1:
        raise InputError(f"{len(chosen)} segments match ({', '.join(s['name'] for s in chosen)})",
                         patient=patient, path=p, hint="pass --gtv-name with a unique segment name")
    seg = chosen[0]
    layers = image.GetNumberOfComponentsPerPixel()
    if seg["layer"] >= layers:
        raise InputError(f"segment '{seg['name']}' is on layer {seg['layer']} but the file has {layers}",
                         patient=patient, path=p)
    layer = image if layers == 1 else sitk.VectorIndexSelectionCast(image, seg["layer"])
    binary = sitk.Cast(layer == seg["label"], sitk.sitkUInt8)
    return binary, {"source": "segmentation", "segment": seg["name"], "label": seg["label"],
                    "layer": seg["layer"]}


def _read_labelmap(p: Path, image: sitk.Image, label, patient):
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("the labelmap has several components per voxel", patient=patient, path=p,
                         hint="give a scalar labelmap or a Slicer .seg.nrrd")
    if label is None:
        binary = image != 0
    else:
        check_label_value(int(label), sitk.GetArrayViewFromImage(image).dtype, patient, p)
        binary = image == int(label)
        if not sitk.GetArrayViewFromImage(binary).any():
            present = np.unique(sitk.GetArrayViewFromImage(image))
            present = [int(v) for v in present if v != 0][:20]
            raise InputError(f"no voxel has label {label}; labels present: {present or 'none'}",
                             patient=patient, path=p, hint="pass one of them as --gtv-label")
    return sitk.Cast(binary, sitk.sitkUInt8), {"source": "labelmap", "label": label}


def _reference_frame(reference):
    if isinstance(reference, LoadedImage):
        return reference.image, reference.frame_of_reference_uid
    if isinstance(reference, sitk.Image):
        frame = None
        if dicomrt.FRAME_OF_REFERENCE_KEY in reference.GetMetaDataKeys():
            frame = reference.GetMetaData(dicomrt.FRAME_OF_REFERENCE_KEY).strip() or None
        return reference, frame
    raise TypeError("reference must be a LoadedImage or a SimpleITK image")


def read_gtv(path, reference, name=None, label=None, patient=None) -> sitk.Image:
    """The GTV as a UInt8 0/1 mask on the grid of ``reference`` (the CT, LoadedImage or sitk.Image).

    - DICOM RTSTRUCT: the ROI named ``name`` (case-insensitive), contours rasterised onto the CT
      slices (even-odd rule: inner contours are holes); its frame of reference must be the CT's.
    - Slicer ``.seg.nrrd``: the segment named ``name`` (``Segment<N>_Name/LabelValue/Layer``).
    - Labelmap (NRRD/NIfTI/MHA): voxels == ``label`` (default any non-zero).
    Masks on another grid are resampled nearest-neighbour onto the reference. An empty result is an
    InputError. The mask's metadata key :data:`GTV_REPORT_KEY` holds a JSON report (source,
    warnings such as contours off the CT grid); :func:`gtv_report` decodes it.
    """
    ref_image, ref_frame = _reference_frame(reference)
    p = _check_exists(path, "GTV", patient)
    if p.is_dir():
        raise InputError("the GTV must be one file (RTSTRUCT, labelmap or .seg.nrrd), not a folder",
                         patient=patient, path=p)
    if not _is_image_file(p):
        if not dicomrt.is_dicom_file(p):
            raise InputError("unknown GTV file type", patient=patient, path=p,
                             hint="give a DICOM RTSTRUCT, a labelmap (.nrrd/.nii/.nii.gz/.mha) or a .seg.nrrd")
        mask, report = dicomrt.rasterise_rtstruct(p, ref_image, name=name, reference_frame_uid=ref_frame,
                                                  patient=patient)
        report = {"source": "RTSTRUCT", **report}
    else:
        image = _read_sitk(p, "GTV", patient)
        check_direction(image.GetDirection(), "GTV", patient, p)
        is_segmentation = p.name.lower().endswith(".seg.nrrd") or any(
            _SEGMENT_KEY.match(k) for k in image.GetMetaDataKeys())
        if is_segmentation:
            binary, report = _read_segmentation(p, image, ref_image, name, label, patient)
        else:
            if name is not None and label is None:
                log.info("%s: a labelmap has no names; '%s' ignored, any non-zero voxel is the GTV", p, name)
            binary, report = _read_labelmap(p, image, label, patient)
        report["resampled"] = not same_grid(binary, ref_image)
        report["warnings"] = []
        mask = _binary_on_reference(binary, ref_image)
        if not sitk.GetArrayViewFromImage(mask).any():
            raise InputError("the GTV mask is empty on the CT grid", patient=patient, path=p,
                             hint="the GTV lies outside the CT or the label/segment is empty")
    mask.SetMetaData(GTV_REPORT_KEY, json.dumps(report))
    return mask


def gtv_report(mask: sitk.Image) -> dict:
    """The report :func:`read_gtv` attached to its mask (empty dict if none)."""
    if GTV_REPORT_KEY in mask.GetMetaDataKeys():
        return json.loads(mask.GetMetaData(GTV_REPORT_KEY))
    return {}
