"""One canonical patient orientation before the slice is cut: features describe the patient, not the file.

The same anatomy stored head-first or feet-first, supine or prone (DICOM PatientPosition HFS, HFP,
FFS, FFP, decubitus) comes as images whose rows, columns and slices run in different directions;
wavelet sub-bands, gradients and texture directions then see mirrored pictures and give other
numbers. So the CT, the dose on its grid and the masks are first flipped and permuted (no
resampling: voxels are moved, never interpolated) so that the image axes run along the patient's
left (i), posterior (j) and superior (k) directions, DICOM's LPS with increasing index, as
SimpleITK's ``DICOMOrient(image, "LPS")`` does. For an oblique image it is the nearest such
order. The slice index the record reports is then counted from the patient's feet in this
orientation, with the index in the stored image beside it; the slice position is the patient
coordinate (DICOM z for an axial slice).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .errors import ROIError
from .slicegeom import SLICE_POSITIONS_KEY, set_slice_positions, slice_positions

CANONICAL = "LPS"
_KEEP_KEYS = ("0020|0052",)  # the CT's FrameOfReferenceUID travels with the image


def axis_map(image: sitk.Image) -> list:
    """For each canonical axis a: (stored axis, flipped) that DICOMOrient puts there."""
    d = np.asarray(image.GetDirection(), float).reshape(3, 3)  # column b = stored axis b's direction
    out = []
    for a in range(3):
        b = int(np.argmax(np.abs(d[a, :])))
        out.append((b, bool(d[a, b] < 0)))
    return out


def to_canonical(image: sitk.Image) -> sitk.Image:
    """``image`` with its axes along L, P, S (its metadata and uneven slice positions kept)."""
    mapping = axis_map(image)
    if all(b == a and not flip for a, (b, flip) in enumerate(mapping)):
        return image
    out = sitk.DICOMOrient(image, CANONICAL)
    for key in _KEEP_KEYS:
        if key in image.GetMetaDataKeys():
            out.SetMetaData(key, image.GetMetaData(key))
    positions = slice_positions(image)
    if positions is not None:
        b, flip = mapping[2]
        if b != 2:
            raise ROIError("a CT with uneven slice spacing must be acquired in axial slices to be put in the "
                           "patient's orientation", hint="resample the CT to even slices first")
        set_slice_positions(out, (positions[-1] - positions[::-1]) if flip else positions)
    elif SLICE_POSITIONS_KEY in out.GetMetaDataKeys():  # pragma: no cover - DICOMOrient keeps no metadata
        out.EraseMetaData(SLICE_POSITIONS_KEY)
    return out


def stored_index(image: sitk.Image, axis: int, index: int) -> int:
    """The stored image's index (along its own axis) of the canonical slice ``index`` normal to ``axis``."""
    b, flip = axis_map(image)[axis]
    n = image.GetSize()[b]
    return n - 1 - index if flip else index


def describe(image: sitk.Image) -> dict:
    """What the reorientation did, for the record."""
    names = "ijk"
    mapping = axis_map(image)
    return {"canonical": CANONICAL, "stored_direction": list(image.GetDirection()),
            "axes": {f"{'LPS'[a]}": f"{'-' if flip else '+'}{names[b]}" for a, (b, flip) in enumerate(mapping)},
            "changed": not all(b == a and not flip for a, (b, flip) in enumerate(mapping))}


def canonical_images(*images: sitk.Image) -> list:
    """:func:`to_canonical` of each image (CT, dose on its grid, masks): what a caller that cuts the
    slice itself (the Slicer module) does before :func:`~DoseRadiomicsLib.crosssection.largest_cross_section`,
    so that its features are the command line's."""
    return [to_canonical(im) for im in images]
