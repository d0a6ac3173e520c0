"""Placing the dose on the CT grid, and checking that it covers the GTV.

CONTRACT (implemented by the alignment work):

- ``align_dose_to_ct(ct, dose, gtv=None, transform=None, register=False, patient=None)
  -> tuple[sitk.Image, dict]``: ``ct`` and ``dose`` are ``LoadedImage``; ``gtv`` a mask on the CT grid.
  Same FrameOfReferenceUID (or, for non-DICOM, both without one and overlapping in physical space):
  resample linearly onto the CT grid, 0 outside the dose grid. Different frames: use ``transform``
  (path to an ITK .tfm/.h5, mapping CT points to dose points as ITK resampling expects) or, with
  ``register=True``, a rigid Mattes-MI registration; otherwise AlignmentError. The dict reports
  method, frames, transform parameters, registration metric, and ``gtv_dose_coverage`` (fraction of
  GTV voxels inside the dose grid; < 1 is reported, 0 raises AlignmentError).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import AlignmentError

log = logging.getLogger(__name__)

#: Registration settings (Mattes MI, rigid); recorded in the report so a run can be reproduced.
REGISTRATION_SETTINGS = {
    "metric": "MattesMutualInformation", "histogram_bins": 50, "sampling": "RANDOM",
    "samples_full_resolution": 100_000, "sampling_percentage_range": [0.01, 0.2], "seed": 20250301, "optimizer": "RegularStepGradientDescent",
    "learning_rate": 2.0, "min_step": 1e-3, "iterations": 200, "shrink_factors": [4, 2, 1],
    "smoothing_sigmas_vox": [2, 1, 0], "initialiser": "CenteredTransformInitializer(GEOMETRY)",
    "transform": "Euler3DTransform",
}


def same_grid(a: sitk.Image, b: sitk.Image, tolerance: float = 1e-4) -> bool:
    """True if two images share size, spacing, origin and direction (within ``tolerance``, relative
    to the spacing), so a voxel index means the same point in both."""
    if a.GetSize() != b.GetSize():
        return False
    spacing = np.asarray(b.GetSpacing())
    return (np.allclose(a.GetSpacing(), spacing, rtol=tolerance)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tolerance * spacing.min())
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance))


def resample_to_reference(image: sitk.Image, reference: sitk.Image, interpolator=sitk.sitkLinear,
                          default: float = 0.0, transform: sitk.Transform | None = None,
                          pixel_type=None) -> sitk.Image:
    """``image`` resampled onto the grid of ``reference``; ``transform`` maps reference points to
    ``image`` points (ITK convention; identity if None); ``default`` outside ``image``'s grid.
    Without a transform on the very same grid, the voxels are copied unchanged."""
    from .slicegeom import copy_slice_positions, resample_slices, slice_positions

    positions, own = slice_positions(reference), slice_positions(image)
    same_slices = (positions is None and own is None) or (
        positions is not None and own is not None and np.array_equal(positions, own))
    if transform is None and same_slices and same_grid(image, reference):
        out = sitk.Cast(image, image.GetPixelID() if pixel_type is None else pixel_type)
        out.CopyInformation(reference)
        return copy_slice_positions(reference, out)
    if positions is not None:  # uneven CT slices: each at its true position
        return resample_slices(image, reference, positions, transform, interpolator, default,
                               image.GetPixelID() if pixel_type is None else pixel_type)
    return sitk.Resample(image, reference, transform if transform is not None else sitk.Transform(),
                         interpolator, float(default),
                         image.GetPixelID() if pixel_type is None else pixel_type)


def _read_transform(path, patient) -> sitk.Transform:
    p = Path(path)
    if not p.is_file():
        raise AlignmentError("the transform file does not exist", patient=patient, path=p,
                             hint="give an ITK .tfm/.h5 transform mapping CT points to dose points")
    try:
        tx = sitk.ReadTransform(str(p))
    except RuntimeError as exc:
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        raise AlignmentError(f"the transform cannot be read ({lines[-1] if lines else 'unknown error'})",
                             patient=patient, path=p, hint="give an ITK .tfm or .h5 transform file") from None
    if tx.GetDimension() != 3:
        raise AlignmentError(f"the transform is {tx.GetDimension()}D; a 3D transform is needed",
                             patient=patient, path=p)
    params = np.asarray(tx.GetParameters(), float)
    try:
        singular = not np.isfinite(params).all() or not np.isfinite(tx.GetInverse().GetParameters()).all()
    except RuntimeError:   # ITK cannot invert it: a singular matrix
        singular = True
    if singular:
        raise AlignmentError("the transform cannot be inverted (a singular matrix, or NaN/infinite parameters)",
                             patient=patient, path=p, hint="the file is damaged or not a rigid/affine "
                                                           "registration result; export it again")
    return tx


def _describe(tx: sitk.Transform) -> dict:
    out = {"name": tx.GetName(), "parameters": list(tx.GetParameters()),
           "fixed_parameters": list(tx.GetFixedParameters())}
    if isinstance(tx, sitk.Euler3DTransform) or tx.GetName() == "Euler3DTransform":
        e = sitk.Euler3DTransform(tx)
        out["rotation_deg"] = [float(np.degrees(a)) for a in (e.GetAngleX(), e.GetAngleY(), e.GetAngleZ())]
        out["translation_mm"] = list(e.GetTranslation())
        out["centre_mm"] = list(e.GetCenter())
    return out


def register_rigid(fixed: sitk.Image, moving: sitk.Image, initial: sitk.Transform | None = None,
                   patient=None) -> tuple[sitk.Transform, dict]:
    """Rigid (Euler3D) Mattes-MI registration, ``fixed`` = CT, ``moving`` = dose.

    Mutual information because CT and dose are different modalities; centred geometric initialiser,
    three resolution levels, fixed random-sampling seed. Returns the transform (CT points -> dose
    points) and a report with metric value, iterations, stop condition and parameters.
    """
    fixed_f = sitk.Cast(fixed, sitk.sitkFloat32)
    moving_f = sitk.Cast(moving, sitk.sitkFloat32)
    s = REGISTRATION_SETTINGS
    # Euler3DTransform(...): SimpleITK 2.3 (Slicer 5.8) returns the initialised transform as a plain
    # Transform, which has no GetCenter or angles for the report.
    euler = sitk.Euler3DTransform(sitk.CenteredTransformInitializer(
        fixed_f, moving_f, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY))
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=s["histogram_bins"])
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    # About 1e5 random samples on the full-resolution CT whatever its size (a 512x512x200 CT would
    # otherwise cost millions of samples per iteration); fewer on the shrunk levels.
    voxels = float(np.prod(fixed_f.GetSize()))
    low, high = s["sampling_percentage_range"]
    percentage = float(np.clip(s["samples_full_resolution"] / voxels, low, high))
    reg.SetMetricSamplingPercentage(percentage, s["seed"])
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=s["learning_rate"], minStep=s["min_step"],
                                                 numberOfIterations=s["iterations"],
                                                 gradientMagnitudeTolerance=1e-8)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(s["shrink_factors"])
    reg.SetSmoothingSigmasPerLevel(s["smoothing_sigmas_vox"])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    if initial is not None:
        # A user transform is the starting point: optimise the rigid part on top of it.
        reg.SetMovingInitialTransform(initial)
        euler = sitk.Euler3DTransform()
        euler.SetCenter(fixed_f.TransformContinuousIndexToPhysicalPoint(
            [(n - 1) / 2 for n in fixed_f.GetSize()]))
    reg.SetInitialTransform(euler, inPlace=True)
    iterations = []
    reg.AddCommand(sitk.sitkIterationEvent, lambda: iterations.append(reg.GetOptimizerIteration()))
    try:
        reg.Execute(fixed_f, moving_f)
    except RuntimeError as exc:
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        raise AlignmentError(f"rigid registration of the dose to the CT failed "
                             f"({lines[-1] if lines else 'unknown error'})", patient=patient,
                             hint="check that dose and CT overlap, or provide --transform") from None
    if initial is not None:
        tx = sitk.CompositeTransform([initial, euler])
    else:
        tx = euler
    report = {"metric_value": float(reg.GetMetricValue()), "iterations_total": len(iterations),
              "iterations_last_level": int(reg.GetOptimizerIteration()),
              "stop_condition": reg.GetOptimizerStopConditionDescription(),
              "sampling_percentage": percentage, "settings": dict(s), "rigid": _describe(euler)}
    return tx, report


def _all_ones(image: sitk.Image) -> sitk.Image:
    ones = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(image)
    return ones


def align_dose_to_ct(ct, dose, gtv: sitk.Image | None = None, transform=None, register: bool = False,
                     patient=None) -> tuple[sitk.Image, dict]:
    """The dose resampled (linear, 0 outside its grid) onto the CT grid, plus an alignment report.

    ``ct``/``dose``: :class:`~DoseRadiomicsLib.readers.LoadedImage`. Same frame of reference (or
    neither has one): physical coordinates are shared. Different frames: ``transform`` (path to an
    ITK .tfm/.h5 mapping CT points to dose points, or a ``sitk.Transform``) and/or ``register=True``
    (rigid Mattes-MI registration, CT fixed, dose moving, starting from ``transform`` if given);
    neither: AlignmentError. The report has ``method``, ``frames``, ``transform``, ``registration``,
    ``dose_covers_ct_fraction``, ``gtv_dose_coverage`` and ``warnings``. No overlap with the CT, or a
    GTV entirely outside the dose grid, raises AlignmentError.
    """
    ct_frame, dose_frame = ct.frame_of_reference_uid, dose.frame_of_reference_uid
    report: dict = {"frames": {"ct": ct_frame, "dose": dose_frame}, "transform": None,
                    "registration": None, "warnings": []}
    if ct_frame and dose_frame and ct_frame != dose_frame and transform is None and not register:
        raise AlignmentError(f"the dose (frame of reference {dose_frame}) and the CT (frame of reference "
                             f"{ct_frame}) are in different frames of reference", patient=patient,
                             path=dose.path, hint="provide --transform (CT to dose) or --register")
    if bool(ct_frame) != bool(dose_frame) and transform is None and not register:
        report["warnings"].append("only one of CT and dose has a DICOM frame of reference: assuming both "
                                  "share patient coordinates")
    tx = None
    if transform is not None:
        tx = transform if isinstance(transform, sitk.Transform) else _read_transform(transform, patient)
        report["transform"] = {"source": str(transform) if not isinstance(transform, sitk.Transform)
                               else "given", **_describe(tx)}
    if register:
        tx, report["registration"] = register_rigid(ct.image, dose.image, initial=tx, patient=patient)
        report["method"] = "transform+registration" if transform is not None else "registration"
    else:
        report["method"] = "transform" if transform is not None else "same frame"

    dose_on_ct = resample_to_reference(dose.image, ct.image, sitk.sitkLinear, 0.0, tx, sitk.sitkFloat32)
    covered = resample_to_reference(_all_ones(dose.image), ct.image, sitk.sitkNearestNeighbor, 0, tx,
                                    sitk.sitkUInt8)
    covered_arr = sitk.GetArrayViewFromImage(covered).astype(bool)
    report["dose_covers_ct_fraction"] = float(covered_arr.mean())
    if not covered_arr.any():
        raise AlignmentError("the dose grid does not overlap the CT anywhere", patient=patient, path=dose.path,
                             hint="check that dose and CT belong together; different positions need "
                                  "--transform or --register")
    report["dose_max_gy"] = float(sitk.GetArrayViewFromImage(dose.image).max())
    report["dose_max_gy_on_ct"] = float(sitk.GetArrayViewFromImage(dose_on_ct).max())
    report["gtv_dose_coverage"] = None
    if gtv is not None:
        if gtv.GetSize() != ct.image.GetSize():
            raise AlignmentError(f"the GTV mask ({gtv.GetSize()}) is not on the CT grid ({ct.image.GetSize()})",
                                 patient=patient, hint="read the GTV with the CT as reference")
        gtv_arr = sitk.GetArrayViewFromImage(gtv) != 0
        n = int(gtv_arr.sum())
        if n == 0:
            raise AlignmentError("the GTV mask is empty", patient=patient)
        coverage = float((gtv_arr & covered_arr).sum() / n)
        report["gtv_dose_coverage"] = coverage
        report["gtv_voxels"] = n
        if coverage == 0.0:
            raise AlignmentError("the GTV lies entirely outside the dose grid", patient=patient, path=dose.path,
                                 hint="check the dose file and its frame of reference, or give --transform")
        if coverage < 1.0:
            report["warnings"].append(f"only {coverage:.1%} of the GTV voxels lie inside the dose grid; "
                                      "the rest get 0 Gy")
    for w in report["warnings"]:
        log.warning("%s%s", f"patient {patient}: " if patient else "", w)
    return dose_on_ct, report
