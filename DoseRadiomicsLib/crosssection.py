"""The largest tumour cross-section: the slice on which the paper measures everything.

The slice is chosen by GTV area in mm² (not voxel count), so it stays right on grids with
anisotropic or direction-cosine geometry. Ties are broken by distance to the GTV's centroid along
the slice axis, then by the lower index, so the choice never depends on iteration order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk

from .errors import ROIError

AXIS_NAMES = {0: "sagittal (x)", 1: "coronal (y)", 2: "axial (z)"}


@dataclass(frozen=True)
class CrossSection:
    """Where the largest cross-section is.

    ``axis`` is the image axis normal to the slice, in SimpleITK index order (0 = i, 1 = j, 2 = k;
    for an axial CT, 2). ``index`` is the slice's index along it, ``position_mm`` the physical
    coordinate (LPS, mm) of the slice centre along that axis' direction, ``area_mm2`` the GTV area on
    it, and ``tied_indices`` every slice with the same maximal area (usually just ``index``).
    """

    axis: int
    index: int
    position_mm: float
    area_mm2: float
    tied_indices: tuple = field(default_factory=tuple)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tied_indices"] = list(self.tied_indices)
        d["axis_name"] = AXIS_NAMES.get(self.axis, str(self.axis))
        return d


def _numpy_axis(axis: int) -> int:
    # GetArrayFromImage reverses the index order: sitk (i, j, k) -> numpy [k, j, i].
    return 2 - axis


def pixel_area_mm2(image: sitk.Image, axis: int) -> float:
    """Area of one pixel of a slice normal to ``axis``, in mm²."""
    spacing = image.GetSpacing()
    in_plane = [s for a, s in enumerate(spacing) if a != axis]
    return float(in_plane[0] * in_plane[1])


def slice_areas_mm2(mask: sitk.Image, axis: int = 2) -> np.ndarray:
    """GTV area (mm²) of every slice normal to ``axis``."""
    arr = sitk.GetArrayViewFromImage(mask) != 0
    np_axis = _numpy_axis(axis)
    other = tuple(a for a in range(3) if a != np_axis)
    return arr.sum(axis=other).astype(float) * pixel_area_mm2(mask, axis)


def largest_cross_section(mask: sitk.Image, axis: int = 2, patient: str | None = None) -> CrossSection:
    """The slice normal to ``axis`` where the GTV mask covers the largest area (mm²)."""
    if mask.GetDimension() != 3:
        raise ROIError(f"the GTV mask must be a 3D image, got {mask.GetDimension()}D", patient=patient)
    if axis not in (0, 1, 2):
        raise ROIError(f"slice axis must be 0, 1 or 2 (i, j, k), got {axis}", patient=patient)
    areas = slice_areas_mm2(mask, axis)
    best = areas.max()
    if best <= 0:
        raise ROIError("the GTV is empty: no voxel is inside it", patient=patient,
                       hint="check the ROI name or label value and that the contour lies on the CT")
    # Area equality up to float noise: areas are integer multiples of one pixel area.
    tied = np.flatnonzero(np.isclose(areas, best, rtol=0, atol=1e-9 * best))
    if len(tied) > 1:
        centroid = _centroid_index(mask, axis)
        index = int(min(tied, key=lambda k: (abs(k - centroid), k)))
    else:
        index = int(tied[0])
    return CrossSection(axis=axis, index=index, position_mm=slice_position_mm(mask, axis, index),
                        area_mm2=float(best), tied_indices=tuple(int(t) for t in tied))


def _centroid_index(mask: sitk.Image, axis: int) -> float:
    arr = sitk.GetArrayViewFromImage(mask) != 0
    coords = np.nonzero(arr)[_numpy_axis(axis)]
    return float(coords.mean())


def slice_position_mm(image: sitk.Image, axis: int, index: int) -> float:
    """Physical coordinate along the axis' own direction of the centre of slice ``index``."""
    from .slicegeom import slice_positions

    centre = [0.0, 0.0, 0.0]
    centre[axis] = float(index)
    point = np.array(image.TransformContinuousIndexToPhysicalPoint(centre))
    direction = np.array(image.GetDirection()).reshape(3, 3)[:, axis]
    positions = slice_positions(image) if axis == 2 else None
    if positions is not None:  # uneven slices: the true position, not the nominal spacing's
        return float(np.asarray(image.GetOrigin(), float) @ direction + positions[index])
    # For an axial CT with identity direction this is simply z.
    return float(point @ direction)


def extract_slice(image: sitk.Image, section: CrossSection) -> sitk.Image:
    """The slice of ``image`` at ``section`` as a one-slice 3D image, slice axis last.

    Keeping it 3D with the slice along k is what the paper's feature names imply (pyradiomics' 3D
    filters on a one-slice image), and puts the slice where pyradiomics' ``force2Ddimension: 0``
    expects it for the true-2D configuration. Physical geometry is preserved.
    """
    index = [0, 0, 0]
    size = list(image.GetSize())
    index[section.axis] = section.index
    size[section.axis] = 1
    if not 0 <= section.index < image.GetSize()[section.axis]:
        raise ROIError(f"slice {section.index} is outside the image (size {image.GetSize()})")
    from .slicegeom import slice_positions, slice_thicknesses

    positions = slice_positions(image)
    if positions is not None and section.axis != 2:
        raise ROIError("the CT has uneven slice spacing: only the axial cross-section (normal to its slices) "
                       "is supported", hint="use --axis axial")
    one = sitk.RegionOfInterest(image, size=size, index=index)
    if positions is not None:  # the slice at its true place, with its own thickness
        direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
        one.SetOrigin(tuple((np.asarray(image.GetOrigin(), float) + direction[:, 2] * positions[section.index]).tolist()))
        sx, sy, _ = image.GetSpacing()
        one.SetSpacing((sx, sy, float(slice_thicknesses(positions)[section.index])))
    if section.axis != 2:
        order = [a for a in range(3) if a != section.axis] + [section.axis]
        one = sitk.PermuteAxes(one, order)
    return one
