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


# ----------------------------------------------------------------------------- 2.5D and 3D sections
#
# ``--section largest`` (default, the paper): the largest cross-section as a one-slice image.
# ``--section largest:K``: the slab of the K slices either side of it (2K + 1 slices) as one thin 3D
# image, not K single-slice extractions averaged: pyradiomics' 3D texture matrices (13 directions) and
# filters then see the through-plane neighbours, which an average of per-slice features never does.
# Edge rule: the slab is centred on the largest cross-section and cut at the image's end (never
# shifted), so near the first or last slice it has fewer slices on that side; the record says how many
# were missing. Slices of the slab on which the GTV is absent stay in the image (their CT and dose are
# the filters' neighbours) and hold no GTV / GTV-heat voxels; an isodose ROI holds whatever reaches the
# dose there. ``--section volume``: the whole images; the GTV and isodose regions in 3D.

SECTION_LARGEST = "largest"
SECTION_VOLUME = "volume"


@dataclass(frozen=True)
class SectionSpec:
    """A parsed ``--section``: ``kind`` "largest" or "volume", ``half_width`` K of ``largest:K``."""

    kind: str
    half_width: int = 0

    @property
    def text(self) -> str:
        return f"{SECTION_LARGEST}:{self.half_width}" if self.kind == SECTION_LARGEST and self.half_width \
            else self.kind

    @property
    def is_single_slice(self) -> bool:
        return self.kind == SECTION_LARGEST and self.half_width == 0

    @property
    def roi_suffix(self) -> str:
        """What follows the ROI name in a feature name: '' (largest), '_25D<K>' (largest:K), '_3D'."""
        if self.is_single_slice:
            return ""
        return f"_25D{self.half_width}" if self.kind == SECTION_LARGEST else "_3D"


def parse_section(text, patient: str | None = None) -> SectionSpec:
    """``"largest"``, ``"largest:K"`` (K >= 1 slices either side) or ``"volume"``; else a clear ROIError."""
    raw = str(text if text is not None else SECTION_LARGEST).strip().lower()
    if raw in (SECTION_LARGEST, SECTION_VOLUME):
        return SectionSpec(raw)
    head, sep, tail = raw.partition(":")
    if head == SECTION_LARGEST and sep and tail.isdigit() and int(tail) >= 1:
        return SectionSpec(SECTION_LARGEST, int(tail))
    raise ROIError(f"unknown section '{text}'", patient=patient,
                   hint="use 'largest' (the paper's one slice), 'largest:K' with K >= 1 (the K slices either "
                        "side of it as one thin 3D image, e.g. largest:2) or 'volume' (the whole GTV in 3D)")


@dataclass(frozen=True)
class SectionExtent:
    """The slices a section's features are computed on, along ``axis`` (indices ``first``..``last``).

    ``centre`` is the largest cross-section's index; ``missing_below``/``missing_above`` the slices
    ``largest:K`` asked for beyond the image's end; ``positions_mm`` each slice's position (as
    :func:`slice_position_mm`); ``gtv_slices`` the indices of the slices that hold GTV voxels.
    """

    spec: str
    axis: int
    first: int
    last: int
    centre: int
    missing_below: int = 0
    missing_above: int = 0
    positions_mm: tuple = field(default_factory=tuple)
    gtv_slices: tuple = field(default_factory=tuple)

    @property
    def n_slices(self) -> int:
        return self.last - self.first + 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["positions_mm"] = [round(float(p), 6) for p in self.positions_mm]
        d["gtv_slices"] = list(self.gtv_slices)
        d["n_slices"] = self.n_slices
        d["axis_name"] = AXIS_NAMES.get(self.axis, str(self.axis))
        notes = []
        if self.missing_below or self.missing_above:
            notes.append(f"the image ends {self.missing_below} slice(s) short below and {self.missing_above} "
                         f"above the {self.spec} slab: it holds {self.n_slices} slices, not "
                         f"{self.n_slices + self.missing_below + self.missing_above}")
        empty = self.n_slices - len(self.gtv_slices)
        if empty and self.spec != SECTION_VOLUME:
            notes.append(f"{empty} slice(s) of the slab hold no GTV voxel (the GTV is thinner than the slab)")
        d["notes"] = notes
        return d


def section_extent(mask: sitk.Image, section: CrossSection, spec, patient: str | None = None) -> SectionExtent:
    """Where ``spec`` (a SectionSpec or its text) puts its slices around ``section`` on ``mask``'s grid."""
    spec = spec if isinstance(spec, SectionSpec) else parse_section(spec, patient)
    n = mask.GetSize()[section.axis]
    if spec.kind == SECTION_VOLUME:
        first, last, below, above = 0, n - 1, 0, 0
    else:
        k = spec.half_width
        first, last = max(section.index - k, 0), min(section.index + k, n - 1)
        below, above = k - (section.index - first), k - (last - section.index)
    areas = slice_areas_mm2(mask, section.axis)
    gtv = tuple(int(i) for i in range(first, last + 1) if areas[i] > 0)
    positions = tuple(slice_position_mm(mask, section.axis, i) for i in range(first, last + 1))
    return SectionExtent(spec=spec.text, axis=section.axis, first=first, last=last, centre=section.index,
                         missing_below=below, missing_above=above, positions_mm=positions, gtv_slices=gtv)


def extract_extent(image: sitk.Image, extent: SectionExtent, patient: str | None = None) -> sitk.Image:
    """The slices of ``extent`` as one 3D image, physical geometry kept.

    A ``largest:K`` slab has its slice axis last (as :func:`extract_slice`, so that the 2.5D image is
    the one-slice image with neighbours); ``volume`` is the image as it is (3D features do not depend
    on which axis the largest cross-section was sought along). Uneven slice spacing is refused: a
    pyradiomics image needs one spacing, and interpolating slices would invent CT and dose.
    """
    from .slicegeom import slice_positions

    positions = slice_positions(image)
    if positions is not None:
        steps = np.diff(positions[extent.first:extent.last + 1]) if extent.axis == 2 else np.array([])
        if extent.axis != 2 or (steps.size and np.ptp(steps) > 1e-3):
            raise ROIError(f"the CT has uneven slice spacing within the {extent.spec} section (steps "
                           f"{sorted(set(np.round(steps, 3).tolist()))} mm): a 3D image needs one spacing",
                           patient=patient, hint="use --section largest (one slice), or resample the CT "
                                                 "to even slices first")
    if extent.spec == SECTION_VOLUME:
        out = sitk.Image(image)
    else:
        index = [0, 0, 0]
        size = list(image.GetSize())
        index[extent.axis] = extent.first
        size[extent.axis] = extent.n_slices
        out = sitk.RegionOfInterest(image, size=size, index=index)
        if positions is not None:   # even steps here: the slab at its true place and step
            direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
            out.SetOrigin(tuple((np.asarray(image.GetOrigin(), float)
                                 + direction[:, 2] * positions[extent.first]).tolist()))
            step = float(np.diff(positions[extent.first:extent.last + 1]).mean()) if extent.n_slices > 1 \
                else float(image.GetSpacing()[2])
            out.SetSpacing(image.GetSpacing()[:2] + (step,))
        if extent.axis != 2:
            order = [a for a in range(3) if a != extent.axis] + [extent.axis]
            out = sitk.PermuteAxes(out, order)
    for key in out.GetMetaDataKeys():   # positions metadata no longer describes this grid
        if key == "DoseRadiomics_slice_positions_mm":
            out.EraseMetaData(key)
    return out


def extent_centre(extent: SectionExtent) -> CrossSection:
    """The largest cross-section's place in an image cut by :func:`extract_extent` (for pictures)."""
    if extent.spec == SECTION_VOLUME:
        return CrossSection(axis=extent.axis, index=extent.centre, position_mm=0.0, area_mm2=0.0)
    return CrossSection(axis=2, index=extent.centre - extent.first, position_mm=0.0, area_mm2=0.0)
