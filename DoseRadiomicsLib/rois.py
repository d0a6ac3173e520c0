"""The paper's three regions of interest on the largest cross-section.

- ``GTV``: the tumour on the CT slice;
- ``GTV-heat``: the same pixels on the dose slice (the tumour region of the dose map);
- ``<N>Gy-heat``: the pixels of the dose slice at or above N Gy (50 Gy in the paper); several
  thresholds at once are allowed, optionally only the connected parts that touch the GTV.

CT ROIs are measured on the CT slice, dose ROIs on the dose slice, which shares the CT grid.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .crosssection import CrossSection, SectionExtent, extent_centre, extract_extent, extract_slice, pixel_area_mm2
from .errors import ROIError

GTV = "GTV"
GTV_HEAT = "GTV-heat"
# pyradiomics needs texture matrices with some extent; fewer pixels give meaningless features.
MIN_ROI_PIXELS = 4


def isodose_roi_name(gy: float) -> str:
    """``50`` -> ``50Gy-heat``; ``52.5`` -> ``52.5Gy-heat``."""
    value = float(gy)
    text = f"{value:g}"
    return f"{text}Gy-heat"


def isodose_roi_names(isodose_gy, patient=None) -> list:
    """The ROI names of ``isodose_gy``; thresholds that print as one name (50 and 50.0000001) are refused."""
    names = [isodose_roi_name(t) for t in isodose_gy]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ROIError(f"isodose thresholds {list(isodose_gy)} give the same ROI name(s) {clash}", patient=patient,
                       hint="give distinct thresholds (names print each with up to 6 significant digits)")
    return names


def roi_modality(name: str) -> str:
    """``"CT"`` for the GTV, ``"dose"`` for the dose-map ROIs."""
    return "CT" if name == GTV else "dose"


@dataclass
class SliceROIs:
    """The CT and dose images of the section and the masks of the ROIs on them.

    For ``--section largest`` (``extent`` None) the images are the one-slice largest cross-section;
    for ``largest:K`` and ``volume`` they are the slab or the whole volume (:func:`extract_extent`).
    """

    section: CrossSection
    ct: sitk.Image
    dose: sitk.Image
    masks: "OrderedDict[str, sitk.Image]"
    isodose_gy: tuple = (50.0,)
    extent: SectionExtent | None = None

    def image_for(self, roi: str) -> sitk.Image:
        return self.ct if roi_modality(roi) == "CT" else self.dose

    def masks_by_modality(self) -> "OrderedDict[str, OrderedDict]":
        """The ROI masks grouped by the image they are on: "CT" or "dose" -> {ROI: mask}, in order."""
        out: "OrderedDict[str, OrderedDict]" = OrderedDict()
        for name, mask in self.masks.items():
            out.setdefault(roi_modality(name), OrderedDict())[name] = mask
        return out

    def pixel_counts(self) -> dict:
        """Voxels of each ROI in the whole section (one slice, slab or volume)."""
        return {name: int(sitk.GetArrayViewFromImage(m).sum()) for name, m in self.masks.items()}

    def centre_slices(self) -> "SliceROIs":
        """These ROIs on the largest cross-section alone (themselves for ``largest``): for pictures and areas."""
        if self.extent is None:
            return self
        at = extent_centre(self.extent)
        masks = OrderedDict((k, extract_slice(m, at)) for k, m in self.masks.items())
        return SliceROIs(section=self.section, ct=extract_slice(self.ct, at), dose=extract_slice(self.dose, at),
                         masks=masks, isodose_gy=self.isodose_gy)

    def areas_mm2(self) -> dict:
        """Area of each ROI on the largest cross-section (mm²), whatever the section."""
        one = self.centre_slices()
        pixel = pixel_area_mm2(one.ct, 2)
        return {name: n * pixel for name, n in one.pixel_counts().items()}

    def volumes_mm3(self) -> dict:
        """Volume of each ROI in the section (mm³): its voxels times the voxel volume."""
        voxel = float(np.prod(self.ct.GetSpacing()))
        return {name: n * voxel for name, n in self.pixel_counts().items()}


def _mask_like(reference: sitk.Image, array: np.ndarray) -> sitk.Image:
    out = sitk.GetImageFromArray(array.astype(np.uint8))
    out.CopyInformation(reference)
    return out


def _touching(isodose: np.ndarray, gtv: np.ndarray) -> np.ndarray:
    """Keep the connected components (8-connectivity in-plane) of ``isodose`` that overlap ``gtv``."""
    labels = sitk.GetArrayFromImage(
        sitk.ConnectedComponent(sitk.GetImageFromArray(isodose.astype(np.uint8)), True))
    keep = np.unique(labels[(labels > 0) & gtv])
    return np.isin(labels, keep) & (labels > 0)


def make_rois(ct: sitk.Image, dose_on_ct: sitk.Image, gtv: sitk.Image, section: CrossSection,
              isodose_gy=(50.0,), isodose_touching_gtv: bool = False,
              patient: str | None = None, min_pixels: int = MIN_ROI_PIXELS,
              extent: SectionExtent | None = None) -> SliceROIs:
    """Build the GTV, GTV-heat and isodose ROIs on ``section`` (or on ``extent``'s slab or volume).

    ``dose_on_ct`` must already be on the CT grid (see :mod:`alignment`). Raises ROIError naming
    the ROI when one is empty or smaller than ``min_pixels``. With ``extent`` the isodose regions
    and the touching rule are 3D (26-connected), the GTV the mask's voxels in the extent.
    """
    for name, img in (("dose", dose_on_ct), ("GTV mask", gtv)):
        if img.GetSize() != ct.GetSize() or not np.allclose(img.GetOrigin(), ct.GetOrigin(), atol=1e-3) \
                or not np.allclose(img.GetSpacing(), ct.GetSpacing(), atol=1e-6):
            raise ROIError(f"the {name} is not on the CT grid (size {img.GetSize()} vs {ct.GetSize()})",
                           patient=patient, hint="align the dose to the CT first")
    thresholds = tuple(float(t) for t in isodose_gy)
    if not thresholds:
        raise ROIError("at least one isodose threshold is needed", patient=patient)
    if any(not np.isfinite(t) or t <= 0 for t in thresholds):
        raise ROIError(f"isodose thresholds must be positive doses in Gy, got {list(thresholds)}",
                       patient=patient)
    isodose_roi_names(thresholds, patient)
    if extent is None:
        cut = lambda img: extract_slice(img, section)   # noqa: E731
        where = f"slice {section.index}"
        where_whole, where_max = f"the whole slice {section.index}", "on the slice"
    else:
        cut = lambda img: extract_extent(img, extent, patient)   # noqa: E731
        where = (f"the {extent.spec} section (slices {extent.first}-{extent.last})"
                 if extent.spec != "volume" else "the volume")
        where_whole, where_max = f"the whole of {where}", "there"
    ct_slice = cut(ct)
    dose_slice = sitk.Cast(cut(dose_on_ct), sitk.sitkFloat32)
    gtv_arr = sitk.GetArrayFromImage(cut(gtv)) != 0
    dose_arr = sitk.GetArrayViewFromImage(dose_slice)

    masks: "OrderedDict[str, np.ndarray]" = OrderedDict()
    masks[GTV] = gtv_arr
    # The GTV's pixels on the dose map: same geometry, so the same mask, but pixels outside the
    # dose grid (dose 0 there after resampling) carry no dose information.
    masks[GTV_HEAT] = gtv_arr
    for t in thresholds:
        region = dose_arr >= t
        if isodose_touching_gtv:
            region = _touching(region, gtv_arr)
        masks[isodose_roi_name(t)] = region

    gtv_max = float(dose_arr[gtv_arr].max()) if gtv_arr.any() else 0.0
    for name, arr in masks.items():
        n = int(arr.sum())
        if n == 0:
            if name == GTV or name == GTV_HEAT:
                raise ROIError(f"ROI {name} is empty on {where}", patient=patient)
            raise ROIError(f"ROI {name} is empty: no pixel of {where} reaches "
                           f"{name.split('Gy')[0]} Gy (maximum dose {where_max} "
                           f"{float(dose_arr.max()):.2f} Gy, in the GTV {gtv_max:.2f} Gy)",
                           patient=patient,
                           hint="check the dose units and alignment, or choose a lower --isodose")
        if n == arr.size:
            raise ROIError(f"ROI {name} covers {where_whole} ({n} pixels): there is no "
                           "outside to tell it from", patient=patient,
                           hint="the GTV mask is inverted or its label wrong" if name in (GTV, GTV_HEAT) else
                           "the whole slice reaches the isodose: choose a higher --isodose, or a CT "
                           "whose field of view extends beyond it")
        if n < min_pixels:
            raise ROIError(f"ROI {name} has {n} pixel(s) on {where}, fewer than the "
                           f"{min_pixels} pyradiomics needs for meaningful texture features",
                           patient=patient, hint="check the GTV contour or label; a region this small "
                                                 "cannot be described by texture")
    return SliceROIs(section=section, ct=ct_slice, dose=dose_slice,
                     masks=OrderedDict((k, _mask_like(ct_slice, v)) for k, v in masks.items()),
                     isodose_gy=thresholds, extent=extent)
