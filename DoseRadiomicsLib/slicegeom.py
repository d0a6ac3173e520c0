"""CT series with uneven slice spacing (finer slices around the target, common in lung planning).

Such a CT is kept as stored (no slice is interpolated): the SimpleITK image holds the slices in
order with the median step as its nominal k spacing, and its metadata key :data:`SLICE_POSITIONS_KEY`
holds each slice's true position along the slice normal (mm from the first slice). Everything that
maps between the CT's k index and space reads the positions through this module: the dose and
masks resampled onto the CT (slice by slice at the true positions), RTSTRUCT contours placed on
slices, the reported slice position, the 3D dose statistics (each voxel weighted by its slice's
own thickness) and the one-slice image the features come from (its thickness is the slice's own).
The 2D method uses one stored slice, so its features do not depend on the spacing elsewhere.
"""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

SLICE_POSITIONS_KEY = "DoseRadiomics_slice_positions_mm"


def slice_positions(image: sitk.Image):
    """The true slice positions (mm along the normal from slice 0), or None for a regular grid."""
    if SLICE_POSITIONS_KEY in image.GetMetaDataKeys():
        return np.asarray(json.loads(image.GetMetaData(SLICE_POSITIONS_KEY)), float)
    return None


def set_slice_positions(image: sitk.Image, positions) -> None:
    image.SetMetaData(SLICE_POSITIONS_KEY, json.dumps([round(float(p), 6) for p in positions]))


def copy_slice_positions(src: sitk.Image, dst: sitk.Image) -> sitk.Image:
    """Give ``dst`` (same grid as ``src``) the positions of ``src``, if it has any; returns ``dst``."""
    if SLICE_POSITIONS_KEY in src.GetMetaDataKeys():
        dst.SetMetaData(SLICE_POSITIONS_KEY, src.GetMetaData(SLICE_POSITIONS_KEY))
    return dst


def slice_thicknesses(positions) -> np.ndarray:
    """Each slice's own thickness: half the distance to each neighbour (an end slice: its one step)."""
    p = np.asarray(positions, float)
    if len(p) == 1:
        return np.ones(1)
    steps = np.diff(p)
    before = np.concatenate([[steps[0]], steps])
    after = np.concatenate([steps, [steps[-1]]])
    return (before + after) / 2.0


def fractional_index(along, positions) -> np.ndarray:
    """Fractional k index of points at ``along`` mm (from slice 0): linear between slices, and
    extrapolated with the end steps beyond them."""
    p = np.asarray(positions, float)
    a = np.asarray(along, float)
    k = np.interp(a, p, np.arange(len(p), dtype=float))
    if len(p) > 1:
        lo, hi = a < p[0], a > p[-1]
        k[lo] = (a[lo] - p[0]) / (p[1] - p[0])
        k[hi] = len(p) - 1 + (a[hi] - p[-1]) / (p[-1] - p[-2])
    return k


def slice_reference(image: sitk.Image, k: int, positions) -> sitk.Image:
    """A one-slice image at slice ``k``'s true position (the grid to resample that slice onto)."""
    nx, ny, _ = image.GetSize()
    ref = sitk.Image(nx, ny, 1, sitk.sitkUInt8)
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    ref.SetDirection(image.GetDirection())
    ref.SetSpacing(image.GetSpacing())
    ref.SetOrigin(tuple((np.asarray(image.GetOrigin(), float) + direction[:, 2] * positions[k]).tolist()))
    return ref


def resample_slices(image: sitk.Image, reference: sitk.Image, positions, transform, interpolator,
                    default: float, pixel_type) -> sitk.Image:
    """``image`` resampled onto a reference with uneven slices: each slice at its true position."""
    tx = transform if transform is not None else sitk.Transform()
    slices = [sitk.Resample(image, slice_reference(reference, k, positions), tx, interpolator, float(default),
                            pixel_type)[:, :, 0] for k in range(len(positions))]
    out = sitk.JoinSeries(slices)
    out.CopyInformation(reference)
    return copy_slice_positions(reference, out)


def weighted_percentile(values, weights, q: float) -> float:
    """The ``q``-th percentile of ``values`` with ``weights`` (the value at which the cumulative
    weight, centred on each sample, reaches q %: equal weights give numpy's linear percentile)."""
    order = np.argsort(values, kind="stable")
    v, w = np.asarray(values, float)[order], np.asarray(weights, float)[order]
    c = np.cumsum(w) - w / 2.0
    c = (c - c[0]) / (c[-1] - c[0]) if c[-1] > c[0] else np.zeros_like(c)
    return float(np.interp(q / 100.0, c, v))
