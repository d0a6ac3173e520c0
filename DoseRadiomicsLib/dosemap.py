"""The dose-map picture route: a planning-system dose picture instead of an RTDOSE grid.

The paper exported "50 Gy dose distribution images of the largest lesion" as PNG from the planning
system. This module takes such a picture, registers it to the CT's largest cross-section, turns its
colour wash (or grey levels) into dose (:mod:`DoseRadiomicsLib.dosemap_colour`), puts that dose on
the CT grid (the chosen slice; 0 Gy elsewhere) and extracts exactly as the RTDOSE route does
(:func:`rois.make_rois` + :func:`pipeline.extract_rois`), so feature names and counts are the same.
``doseradiomics extract-dosemap`` is its command.

Coordinates. The CT slice frame is the slice's pixel index times its spacing (mm, origin at the
first pixel, the slice's own axes); the picture frame is picture pixels (x right, y down). The
registration result is an affine map CT-slice mm -> picture pixels (ITK's fixed -> moving). A
picture is assumed to show the slice as the CT's index order lays it out (for an axial CT with
identity direction: patient right on the left, anterior on top); a mirrored picture gives a large
landmark residual or a poor metric, both reported.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .crosssection import CrossSection, extract_slice, largest_cross_section
from .dosemap_colour import (DecodedDoseMap, DoseMapPicture, check_box, colour_table_from_bar,
                             decode_colour_wash, decode_intensity, load_colour_table,
                             read_dose_map_picture)
from .errors import AlignmentError, DoseRadiomicsError, InputError

MODES = ("colour-bar", "colour-table", "intensity")
KINDS = ("similarity", "affine")
#: Intensity-registration settings, recorded in the extraction record.
REGISTRATION_SETTINGS = {
    "metric": "MattesMutualInformation", "histogram_bins": 32, "sampling": "all fixed pixels in the body",
    "optimizer": "RegularStepGradientDescent", "learning_rate": 2.0, "fine_learning_rate": 0.5, "affine_learning_rate": 0.25, "relaxation": 0.8, "min_step": 1e-4,
    "coarse_iterations": 150, "iterations": 300, "coarse_shrink_factors": [4, 2], "coarse_smoothing_sigmas_vox": [2, 1],
    "fine_shrink_factors": [2, 1], "fine_smoothing_sigmas_vox": [1, 0], "threads": 1,
    "initialiser": "body moments (centroid, area -> scale, principal axis -> angle), best of "
                   "several starting angles", "ct_body_hu": -400.0,
}


# ----------------------------------------------------------------------------- geometry helpers

def slice_image_2d(ct: sitk.Image, section: CrossSection) -> sitk.Image:
    """The CT slice of ``section`` as a 2D float image in the slice frame (index x spacing, mm)."""
    one = extract_slice(ct, section)
    out = sitk.GetImageFromArray(sitk.GetArrayFromImage(one)[0].astype(np.float32))
    out.SetSpacing(one.GetSpacing()[:2])
    return out


def _affine(matrix, translation) -> sitk.AffineTransform:
    tx = sitk.AffineTransform(2)
    tx.SetMatrix([float(v) for v in np.asarray(matrix, float).ravel()])
    tx.SetTranslation([float(v) for v in translation])
    return tx


def _matrix(tx: sitk.Transform) -> tuple:
    """(2x2 matrix, translation) of a 2D matrix-offset transform: y = M x + t."""
    origin = np.array(tx.TransformPoint((0.0, 0.0)))
    m = np.stack([np.array(tx.TransformPoint((1.0, 0.0))) - origin,
                  np.array(tx.TransformPoint((0.0, 1.0))) - origin], axis=1)
    return m, origin


def describe_transform(tx: sitk.Transform) -> dict:
    """Matrix, translation, scale (picture pixels per mm), rotation (deg) and shear of a
    CT-slice-mm -> picture-pixel map, for the record."""
    m, t = _matrix(tx)
    u, s, vt = np.linalg.svd(m)
    r = u @ vt
    return {"matrix": m.tolist(), "translation_px": t.tolist(),
            "scale_px_per_mm": float(np.sqrt(abs(np.linalg.det(m)))),
            "rotation_deg": float(np.degrees(np.arctan2(r[1, 0], r[0, 0]))),
            "anisotropy": float(s[0] / s[1]), "mirrored": bool(np.linalg.det(m) < 0)}


def map_points(tx: sitk.Transform, points) -> np.ndarray:
    """``points`` (n, 2) in CT-slice mm through ``tx`` to picture pixels."""
    return np.array([tx.TransformPoint([float(v) for v in p]) for p in np.atleast_2d(points)])


# ----------------------------------------------------------------------------- landmarks

def read_landmarks(path, ct: sitk.Image, section: CrossSection, patient=None) -> tuple:
    """Landmark pairs from a CSV: ``picture_x, picture_y`` (picture pixels) and either
    ``ct_column, ct_row`` (pixel indices on the chosen CT slice) or ``ct_x_mm, ct_y_mm, ct_z_mm``
    (patient LPS mm, as Slicer shows them; projected onto the slice). Returns (CT-slice mm (n, 2),
    picture pixels (n, 2), report)."""
    p = Path(path)
    if not p.is_file():
        raise InputError("the landmark file does not exist", patient=patient, path=p)
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.DictReader(fh)]
    except UnicodeDecodeError as exc:
        raise InputError(f"the landmark file is not UTF-8 text (byte {exc.start})", patient=patient, path=p,
                         hint="save it as UTF-8 ('CSV UTF-8' in a spreadsheet; a BOM and CRLF are fine)") from None
    except (OSError, csv.Error) as exc:
        raise InputError(f"the landmark file cannot be read ({exc})", patient=patient, path=p) from None
    columns = {c.strip().lower() for c in (rows[0].keys() if rows else [])}
    pixel_cols, mm_cols = {"ct_column", "ct_row"}, {"ct_x_mm", "ct_y_mm", "ct_z_mm"}
    if not {"picture_x", "picture_y"} <= columns or not (pixel_cols <= columns or mm_cols <= columns):
        raise InputError(f"the landmark file needs columns picture_x, picture_y and ct_column, ct_row (or "
                         f"ct_x_mm, ct_y_mm, ct_z_mm); it has {sorted(columns) or 'none'}", patient=patient, path=p)
    spacing = np.array(extract_slice(ct, section).GetSpacing()[:2])
    in_plane = [a for a in range(3) if a != section.axis]
    ct_mm, pic, off_slice = [], [], []
    for n, raw in enumerate(rows, start=2):
        r = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        try:
            pic.append([float(r["picture_x"]), float(r["picture_y"])])
            if pixel_cols <= columns and r.get("ct_column", "") != "":
                ct_mm.append([float(r["ct_column"]), float(r["ct_row"])] * spacing)
                off_slice.append(0.0)
            else:
                idx = ct.TransformPhysicalPointToContinuousIndex(
                    [float(r["ct_x_mm"]), float(r["ct_y_mm"]), float(r["ct_z_mm"])])
                ct_mm.append(np.array([idx[a] for a in in_plane]) * spacing)
                off_slice.append(abs(idx[section.axis] - section.index) * ct.GetSpacing()[section.axis])
        except ValueError:
            raise InputError(f"line {n} of the landmark file has a missing or non-numeric coordinate",
                             patient=patient, path=p) from None
    report = {"file": str(p), "pairs": len(pic), "max_distance_from_slice_mm": max(off_slice, default=0.0)}
    return np.array(ct_mm, float).reshape(-1, 2), np.array(pic, float).reshape(-1, 2), report


def fit_landmarks(ct_mm, picture_px, kind: str = "similarity", patient=None) -> tuple:
    """Least-squares transform CT-slice mm -> picture pixels from three or more landmark pairs.

    ``kind`` "similarity" (rotation, one scale, shift; Umeyama's closed form) or "affine". ITK's
    LandmarkBasedTransformInitializer is not used: for Similarity2DTransform it leaves the scale at 1.
    Returns (transform, report with the residual RMS/max in CT mm and picture pixels, per pair).
    """
    x = np.asarray(ct_mm, float)
    y = np.asarray(picture_px, float)
    if kind not in KINDS:
        raise InputError(f"the transform must be one of {KINDS}, got '{kind}'", patient=patient)
    if len(x) != len(y) or len(x) < 3:
        raise InputError(f"{len(x)} landmark pair(s) given; at least 3 are needed", patient=patient,
                         hint="place three or more matching points on the CT slice and the picture, spread out")
    xc, yc = x - x.mean(0), y - y.mean(0)
    sv = np.linalg.svd(xc, compute_uv=False)
    if sv[-1] < 1e-3 * max(sv[0], 1e-9):
        raise InputError("the CT landmarks lie on one line; the transform is undetermined", patient=patient,
                         hint="spread the landmarks over the slice, not along a line")
    if kind == "similarity":
        cov = yc.T @ xc / len(x)
        u, d, vt = np.linalg.svd(cov)
        sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
        rot = u @ sign @ vt
        scale = float(np.trace(np.diag(d) @ sign) / (xc ** 2).sum(axis=1).mean())
        m = scale * rot
    else:
        m = np.linalg.lstsq(xc, yc, rcond=None)[0].T
    t = y.mean(0) - m @ x.mean(0)
    tx = _affine(m, t)
    res_px = np.linalg.norm(y - (x @ m.T + t), axis=1)
    per_mm = np.sqrt(abs(np.linalg.det(m)))
    report = {"method": f"landmarks ({kind}, least squares)", "kind": kind, "pairs": len(x),
              "residual_rms_mm": float(np.sqrt(np.mean(res_px ** 2)) / per_mm),
              "residual_max_mm": float(res_px.max() / per_mm),
              "residual_rms_px": float(np.sqrt(np.mean(res_px ** 2))),
              "residual_per_pair_mm": (res_px / per_mm).tolist(),
              "transform": describe_transform(tx)}
    if len(x) == 3 and kind == "affine":
        report["note"] = "3 pairs determine an affine exactly: the residual says nothing; add pairs"
    return tx, report


# ----------------------------------------------------------------------------- intensity registration

def _body(image: sitk.Image, threshold: float | None) -> sitk.Image:
    """The largest bright connected region, holes filled (the patient's outline)."""
    if threshold is None:
        mask = sitk.OtsuThreshold(image, 0, 1)
    else:
        mask = sitk.BinaryThreshold(image, float(threshold), 1e30, 1, 0)
    mask = sitk.RelabelComponent(sitk.ConnectedComponent(mask), sortByObjectSize=True) == 1
    return sitk.BinaryFillhole(sitk.Cast(mask, sitk.sitkUInt8))


def _moments(mask: sitk.Image) -> tuple:
    """(centroid (2,), area, principal-axis angle) of a 2D mask in physical units."""
    arr = sitk.GetArrayViewFromImage(mask) != 0
    rows, cols = np.nonzero(arr)
    if len(rows) < 10:
        return None
    sx, sy = mask.GetSpacing()
    pts = np.stack([cols * sx, rows * sy], axis=1) + np.array(mask.GetOrigin())
    c = pts.mean(0)
    cov = np.cov((pts - c).T)
    w, v = np.linalg.eigh(cov)
    major = v[:, 1]
    return c, len(rows) * sx * sy, float(np.arctan2(major[1], major[0]))


def _registration_method(shrink, sigmas, fixed_mask, moving_mask, iterations,
                         learning_rate) -> sitk.ImageRegistrationMethod:
    s = REGISTRATION_SETTINGS
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=s["histogram_bins"])
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetMetricFixedMask(fixed_mask)
    reg.SetMetricMovingMask(moving_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=learning_rate, minStep=s["min_step"],
                                                 numberOfIterations=int(iterations),
                                                 gradientMagnitudeTolerance=1e-8,
                                                 relaxationFactor=s["relaxation"])
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(shrink))
    reg.SetSmoothingSigmasPerLevel(list(sigmas))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return reg


def register_picture(decoded: DecodedDoseMap, ct_slice: sitk.Image, kind: str = "similarity",
                     patient=None, path=None) -> tuple:
    """Register the picture's CT-like grey (the grey under the wash, see dosemap_colour) to the CT
    slice (2D, slice frame): Mattes mutual information, multi-resolution.

    Initialisation from the body outlines: centroids, scale from their areas, angle from their
    principal axes; the principal-axis angle, its opposite and the four right angles are each tried at
    coarse resolution, the best is restarted with its angle and scale nudged, and the best metric wins.
    ``kind`` "similarity" or "affine" (the refined similarity, then affine on top, kept only if it
    improves the metric). Runs single-threaded, so a picture always gives the same transform.
    Returns (transform CT-slice mm -> picture pixels, report with the final metric and every start).
    """
    if kind not in KINDS:
        raise InputError(f"the transform must be one of {KINDS}, got '{kind}'", patient=patient)
    # ITK's metric sums differ in the last bits with the thread count and scheduling, which can steer
    # the optimiser to another result; one thread (the slice is small) gives the same answer every run.
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        return _register_picture(decoded, ct_slice, kind, patient, path)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _register_picture(decoded, ct_slice, kind, patient, path) -> tuple:
    s = REGISTRATION_SETTINGS
    grey = decoded.grey.copy()
    grey[decoded.excluded] = 0.0
    ct_body = _body(ct_slice, s["ct_body_hu"])
    pic_px = sitk.GetImageFromArray(grey.astype(np.float32))
    # The picture's window is unknown and clips everything below it to black: the outline is
    # whatever is brighter than black, just above the darkest level.
    dark, bright = np.percentile(grey[~decoded.excluded], [2, 98])
    pic_body = _body(pic_px, dark + 0.05 * (bright - dark))
    m_ct, m_pic = _moments(ct_body), _moments(pic_body)
    if m_ct is None or m_pic is None:
        raise AlignmentError("cannot find the patient's outline on the " + ("CT slice" if m_ct is None
                             else "picture"), patient=patient, path=path,
                             hint="register with landmarks (--landmarks)")
    scale0 = np.sqrt(m_pic[1] / m_ct[1])            # picture pixels per mm
    mm_per_px = 1.0 / scale0
    # The picture in (approximate) mm, smoothed to the CT's resolution so that sampling it at CT
    # pixel positions does not alias.
    moving = sitk.GetImageFromArray(grey.astype(np.float32))
    moving.SetSpacing((mm_per_px, mm_per_px))
    moving = sitk.SmoothingRecursiveGaussian(moving, 0.5 * min(ct_slice.GetSpacing()))
    moving_mask = sitk.GetImageFromArray((~decoded.excluded).astype(np.uint8))
    moving_mask.CopyInformation(moving)
    fixed = sitk.Cast(ct_slice, sitk.sitkFloat32)
    radius = [max(1, int(round(15.0 / sp))) for sp in fixed.GetSpacing()]
    fixed_mask = sitk.BinaryDilate(ct_body, radius)

    c_ct, c_pic = m_ct[0], m_pic[0] * mm_per_px
    base = m_pic[2] - m_ct[2]
    candidates = []
    for a in (base, base + np.pi, 0.0, np.pi / 2, np.pi, -np.pi / 2):
        a = float(np.arctan2(np.sin(a), np.cos(a)))
        if all(abs(np.arctan2(np.sin(a - b), np.cos(a - b))) > np.radians(10) for b in candidates):
            candidates.append(a)
    tried = []
    best = None

    def coarse(angle, scale, translation, stage):
        nonlocal best
        tx = sitk.Similarity2DTransform()
        tx.SetCenter([float(v) for v in c_ct])
        tx.SetAngle(float(angle))
        tx.SetScale(float(scale))
        tx.SetTranslation([float(v) for v in translation])
        reg = _registration_method(s["coarse_shrink_factors"], s["coarse_smoothing_sigmas_vox"],
                                   fixed_mask, moving_mask, s["coarse_iterations"], s["learning_rate"])
        reg.SetInitialTransform(tx, inPlace=True)
        try:
            reg.Execute(fixed, moving)
        except RuntimeError:
            return
        value = float(reg.GetMetricValue())
        tried.append({"stage": stage, "start_angle_deg": float(np.degrees(angle)), "start_scale": float(scale),
                      "metric": value})
        if best is None or value < best[0]:
            best = (value, tx)

    for angle in candidates:
        coarse(angle, 1.0, c_pic - c_ct, "angle")
    if best is not None:
        # A picture that cuts the body off (zoomed view, bar over it) misleads the moments: restart
        # around the best result before refining.
        start = best[1]
        for d_angle, d_scale in ((8, 1.0), (-8, 1.0), (0, 0.92), (0, 1.08)):
            coarse(start.GetAngle() + np.radians(d_angle), start.GetScale() * d_scale, start.GetTranslation(),
                   "perturbation")
    if best is None:
        raise AlignmentError("the picture could not be registered to the CT slice", patient=patient, path=path,
                             hint="register with landmarks (--landmarks)")
    def refine(tx, learning_rate):
        reg = _registration_method(s["fine_shrink_factors"], s["fine_smoothing_sigmas_vox"], fixed_mask,
                                   moving_mask, s["iterations"], learning_rate)
        reg.SetInitialTransform(tx, inPlace=True)
        try:
            reg.Execute(fixed, moving)
        except RuntimeError as exc:
            raise AlignmentError(f"registration of the picture to the CT slice failed "
                                 f"({str(exc).strip().splitlines()[-1]})", patient=patient, path=path,
                                 hint="register with landmarks (--landmarks)") from None
        return float(reg.GetMetricValue()), reg.GetOptimizerStopConditionDescription()

    tx = best[1]
    metric, stop = refine(tx, s["fine_learning_rate"])
    report = {"method": f"intensity registration ({kind}, Mattes MI)", "kind": kind}
    if kind == "affine":
        # Affine on top of the refined similarity; kept only if it explains the CT better.
        aff = sitk.AffineTransform(2)
        aff.SetCenter(tx.GetCenter())
        aff.SetMatrix(tx.GetMatrix())
        aff.SetTranslation(tx.GetTranslation())
        aff_metric, aff_stop = refine(aff, s["affine_learning_rate"])
        report["similarity_metric"] = metric
        if aff_metric <= metric:
            tx, metric, stop = aff, aff_metric, aff_stop
        else:
            report["note"] = "the affine fit did not improve the metric: the similarity result is kept"
    m, t = _matrix(tx)
    result = _affine(m / mm_per_px, t / mm_per_px)
    report.update({"final_metric": metric, "stop_condition": stop,
                   "initial_scale_px_per_mm": float(scale0), "starts": tried,
                   "body_area_ct_mm2": float(m_ct[1]), "body_area_picture_px": float(m_pic[1]),
                   "settings": dict(s), "transform": describe_transform(result)})
    return result, report


# ----------------------------------------------------------------------------- dose on the CT grid

def dose_slice_on_ct(decoded: DecodedDoseMap, transform: sitk.Transform, ct_slice: sitk.Image,
                     below_wash_gy: float = 0.0) -> tuple:
    """The picture's dose resampled onto the CT slice (2D array, Gy) and a report.

    Wash doses are extended outward before linear resampling, so edge pixels are not pulled toward
    the floor; a CT pixel is wash when at least half of its interpolated footprint is wash, else it
    gets ``below_wash_gy`` ("below the lowest isodose"); CT pixels outside the picture too.
    """
    from scipy import ndimage

    wash = decoded.wash & np.isfinite(decoded.dose)
    _, (ri, ci) = ndimage.distance_transform_edt(~wash, return_indices=True)
    filled = decoded.dose[ri, ci]
    dose_img = sitk.GetImageFromArray(filled.astype(np.float32))
    wash_img = sitk.GetImageFromArray(wash.astype(np.float32))
    inside_img = sitk.GetImageFromArray(np.ones(wash.shape, np.uint8))
    ref = sitk.Image(ct_slice.GetSize(), sitk.sitkFloat32)
    ref.SetSpacing(ct_slice.GetSpacing())
    dose = sitk.GetArrayFromImage(sitk.Resample(dose_img, ref, transform, sitk.sitkLinear, 0.0))
    frac = sitk.GetArrayFromImage(sitk.Resample(wash_img, ref, transform, sitk.sitkLinear, 0.0))
    inside = sitk.GetArrayFromImage(sitk.Resample(inside_img, ref, transform, sitk.sitkNearestNeighbor, 0,
                                                  sitk.sitkUInt8)) != 0
    on_wash = (frac >= 0.5) & inside
    out = np.where(on_wash, dose, float(below_wash_gy)).astype(np.float32)
    report = {"below_wash_gy": float(below_wash_gy), "ct_slice_pixels_in_picture": int(inside.sum()),
              "ct_slice_pixels_in_wash": int(on_wash.sum()),
              "max_dose_gy": float(out.max()), "wash_mask": on_wash}
    return out, report


def dose_volume_on_ct(dose_slice: np.ndarray, ct: sitk.Image, section: CrossSection) -> sitk.Image:
    """A float32 dose image on the CT grid: ``dose_slice`` on the section's slice, 0 Gy elsewhere."""
    vol = np.zeros(sitk.GetArrayViewFromImage(ct).shape, np.float32)
    # numpy order is (k, j, i); extract_slice keeps the other two axes in order, so the slice
    # array lines up with the volume's slice directly.
    index = [slice(None)] * 3
    index[2 - section.axis] = section.index
    vol[tuple(index)] = dose_slice
    out = sitk.GetImageFromArray(vol)
    out.CopyInformation(ct)
    return out


# ----------------------------------------------------------------------------- one patient

@dataclass
class DoseMapInputs:
    """The files of one patient on the picture route."""

    patient_id: str
    ct: str
    gtv: str
    picture: str
    gtv_name: str | None = None
    gtv_label: int | None = None
    landmarks: str | None = None


@dataclass
class DoseMapSettings:
    """How to read the picture: ``mode`` one of colour-bar / colour-table / intensity, with the
    bar box or table name and the dose range; the registration kind; the floor dose."""

    mode: str
    dose_range: tuple
    colour_bar: tuple | None = None
    bar_orientation: str = "vertical"
    colour_table: str | None = None
    opacity: float | None = None
    registration: str = "similarity"
    below_wash_gy: float = 0.0
    exclude_boxes: tuple = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def decode_picture(picture: DoseMapPicture, settings: DoseMapSettings, patient=None) -> DecodedDoseMap:
    """Dose of the picture's pixels according to ``settings`` (see dosemap_colour)."""
    excluded = [check_box(b, picture, "excluded box", patient) for b in settings.exclude_boxes]
    if settings.mode == "colour-bar":
        if settings.colour_bar is None:
            raise InputError("the colour-bar mode needs the bar's box X0 Y0 X1 Y1", patient=patient)
        table = colour_table_from_bar(picture, settings.colour_bar, settings.dose_range,
                                      settings.bar_orientation, patient=patient)
        excluded.append(tuple(table.source["box"]))
        return decode_colour_wash(picture, table, settings.opacity, excluded, patient=patient)
    if settings.mode == "colour-table":
        table = load_colour_table(settings.colour_table or "jet", settings.dose_range)
        return decode_colour_wash(picture, table, settings.opacity, excluded, patient=patient)
    if settings.mode == "intensity":
        return decode_intensity(picture, settings.dose_range, excluded, patient=patient)
    raise InputError(f"unknown dose-map mode '{settings.mode}'", patient=patient, hint=f"one of {MODES}")


@dataclass
class PlacedDoseMap:
    """A dose-map picture's dose on the CT's largest cross-section."""

    dose_on_ct: sitk.Image      # CT grid, the picture's dose on ``section``, 0 Gy elsewhere
    dose_slice: np.ndarray      # that slice as a 2D array (Gy)
    section: CrossSection
    gtv_in_wash: float          # fraction of the GTV's pixels on the slice inside the colour wash
    record: dict                # picture, settings, decoding, registration, on_ct


def place_dose_map(ct: sitk.Image, gtv: sitk.Image, picture_path, settings: DoseMapSettings,
                   landmarks=None, axis: int = 2, patient: str | None = None, progress=None,
                   timer=None) -> PlacedDoseMap:
    """Read, decode and register a dose-map picture, and put its dose on the CT's largest GTV slice.

    ``landmarks``: ``None`` (automatic mutual-information registration), a landmark CSV path, or
    ``(ct_mm, picture_px[, report])`` arrays (e.g. from Slicer markups). Shared by the command line
    and the Slicer module, so both place a picture the same way.
    """
    say = progress or (lambda _m: None)
    lap = timer.lap if timer is not None else (lambda _stage: None)
    section = largest_cross_section(gtv, axis=axis, patient=patient)
    say(f"[{patient}] largest cross-section: slice {section.index} at {section.position_mm:.1f} mm")
    say(f"[{patient}] reading dose-map picture {picture_path}")
    picture = read_dose_map_picture(picture_path, patient=patient)
    lap("read")
    decoded = decode_picture(picture, settings, patient=patient)
    lap("decode")
    ct_slice = slice_image_2d(ct, section)
    if landmarks is None:
        say(f"[{patient}] registering the picture to the CT slice ({settings.registration})")
        transform, registration = register_picture(decoded, ct_slice, settings.registration,
                                                   patient=patient, path=picture_path)
    else:
        if isinstance(landmarks, (str, Path)):
            ct_mm, pic_px, lm_report = read_landmarks(landmarks, ct, section, patient=patient)
        else:
            ct_mm, pic_px = landmarks[0], landmarks[1]
            lm_report = landmarks[2] if len(landmarks) > 2 else None
        transform, registration = fit_landmarks(ct_mm, pic_px, settings.registration, patient=patient)
        if lm_report is not None:
            registration["landmarks"] = lm_report
    lap("register")
    dose_slice, on_ct = dose_slice_on_ct(decoded, transform, ct_slice, settings.below_wash_gy)
    wash = on_ct.pop("wash_mask")
    gtv_slice = sitk.GetArrayFromImage(extract_slice(gtv, section))[0] != 0
    record = {"picture": dict(picture.details, path=str(picture_path)), "settings": settings.to_dict(),
              "decoding": decoded.report, "registration": registration, "on_ct": on_ct}
    return PlacedDoseMap(dose_on_ct=dose_volume_on_ct(dose_slice, ct, section), dose_slice=dose_slice,
                         section=section, gtv_in_wash=float((gtv_slice & wash).sum() / gtv_slice.sum()),
                         record=record)


def extract_dose_map_patient(inputs: DoseMapInputs, settings: DoseMapSettings, options=None,
                             progress=None, keep_images: bool = False):
    """The picture route for one patient: read CT, GTV and picture; find the largest cross-section;
    decode the picture; register it (landmarks if given, else mutual information); put the dose on
    the CT slice; build the ROIs and extract as the RTDOSE route does. Returns a
    :class:`pipeline.PatientResult` whose record also holds ``dose_map`` (decoding, registration)."""
    from .pipeline import ExtractionOptions, StageTimer, measure_patient
    from .readers import read_ct, read_gtv

    options = options or ExtractionOptions()
    pid = inputs.patient_id
    timer = StageTimer()
    try:
        (progress or (lambda _m: None))(f"[{pid}] reading CT {inputs.ct}")
        ct = read_ct(inputs.ct, patient=pid)
        gtv = read_gtv(inputs.gtv, ct.image, name=inputs.gtv_name, label=inputs.gtv_label, patient=pid)
        placed = place_dose_map(ct.image, gtv, inputs.picture, settings, landmarks=inputs.landmarks or None,
                                axis=options.axis, patient=pid, progress=progress, timer=timer)
    except DoseRadiomicsError as exc:
        raise exc.with_context(patient=pid)

    # The picture holds one slice: dose statistics are the slice's, not the 3D GTV's.
    gtv_slice = sitk.GetArrayFromImage(extract_slice(gtv, placed.section))[0] != 0
    slice_stats = OrderedDict([("GTV_slice_dose_mean_Gy", float(placed.dose_slice[gtv_slice].mean())),
                               ("GTV_slice_in_wash_fraction", placed.gtv_in_wash)])
    warnings = []
    if placed.gtv_in_wash < 1.0:
        warnings.append(f"{1 - placed.gtv_in_wash:.1%} of the GTV on the slice lies outside the dose wash: "
                        f"those pixels get {settings.below_wash_gy:g} Gy")
    record = {
        "route": "dose-map picture",
        "inputs": asdict(inputs),
        "dose_map": placed.record,
        "alignment": {"method": placed.record["registration"]["method"],
                      "gtv_dose_coverage": placed.gtv_in_wash, "warnings": warnings},
    }
    return measure_patient(pid, ct, gtv, placed.dose_on_ct, options, record=record, progress=progress,
                           timer=timer, keep_images=keep_images, section=placed.section,
                           dose_statistics=slice_stats)


# ----------------------------------------------------------------------------- command line

def register_cli(sub) -> None:
    """Add ``extract-dosemap``."""
    from .pipeline import add_extraction_options

    p = sub.add_parser(
        "extract-dosemap",
        help="features of one patient from a dose-map PICTURE (PNG/JPEG/DICOM screenshot) instead of RTDOSE",
        description="The paper's route: the planning system's dose picture of the largest lesion. Reads "
                    "the CT and the GTV, finds the largest cross-section, turns the picture's colour wash "
                    "into dose (from its colour bar or a named colour table; or its grey levels with "
                    "--intensity), registers the picture to the CT slice (mutual information, or your "
                    "landmarks), and extracts the same ROIs and features as 'extract'. Writes "
                    "OUT/features.csv, OUT/extraction.json (with registration and colour-fit residuals) "
                    "and OUT/slice.png (check the dose lies where the picture shows it).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    i = p.add_argument_group("inputs")
    i.add_argument("--ct", required=True, help="planning CT: DICOM series folder, NRRD, NIfTI or MHA")
    i.add_argument("--gtv", required=True, help="GTV: RTSTRUCT (with --gtv-name), labelmap or .seg.nrrd")
    i.add_argument("--gtv-name", help="ROI name in the RTSTRUCT, or segment name in a .seg.nrrd")
    i.add_argument("--gtv-label", type=int, help="label value of the GTV in a labelmap")
    i.add_argument("--dose-map", required=True, metavar="PICTURE",
                   help="the dose picture of the largest lesion: PNG, JPEG or DICOM secondary capture")
    i.add_argument("--patient-id", help="identifier written in the outputs (default: the output folder name)")
    d = p.add_argument_group("reading the dose from the picture (choose one)")
    how = d.add_mutually_exclusive_group(required=True)
    how.add_argument("--colour-bar", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                     help="the picture's colour bar: corners of its coloured part in picture pixels "
                          "(x right, y down from the top left)")
    how.add_argument("--colour-table", metavar="NAME", help="a named colour table (bundled: jet, rainbow) "
                     "or a .json/.csv table file")
    how.add_argument("--intensity", action="store_true", help="use the picture's grey levels as the dose "
                     "(as the paper did): black = first --dose-range value, white = second")
    d.add_argument("--dose-range", type=float, nargs=2, required=True, metavar=("LOW", "HIGH"),
                   help="Gy: colour bar: the dose at its bottom (vertical) or left end and at the other end; "
                        "colour table: the doses of its first and last colour; intensity: black and white")
    d.add_argument("--bar-orientation", choices=["vertical", "horizontal"], default="vertical")
    d.add_argument("--opacity", type=float, help="opacity of the wash over the CT (0-1]; estimated if omitted")
    d.add_argument("--below-wash-gy", type=float, default=0.0,
                   help="dose given to pixels outside the wash (below the lowest isodose shown)")
    d.add_argument("--exclude-box", type=float, nargs=4, action="append", default=[],
                   metavar=("X0", "Y0", "X1", "Y1"), help="a picture region that is not image (legend, "
                   "text); repeatable")
    r = p.add_argument_group("registering the picture to the CT slice")
    r.add_argument("--landmarks", metavar="CSV", help="landmark pairs: columns picture_x, picture_y and "
                   "ct_column, ct_row (pixels of the chosen slice) or ct_x_mm, ct_y_mm, ct_z_mm; 3 or more")
    r.add_argument("--registration", choices=list(KINDS), default="similarity",
                   help="similarity (rotation, one scale, shift) or affine")
    add_extraction_options(p)
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, help="output folder")
    o.add_argument("--no-png", action="store_true", help="skip slice.png (a previous one in OUT is removed: "
                   "it would show another run)")
    o.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def settings_from_args(args) -> DoseMapSettings:
    mode = "colour-bar" if args.colour_bar else "colour-table" if args.colour_table else "intensity"
    return DoseMapSettings(mode=mode, dose_range=tuple(args.dose_range),
                           colour_bar=tuple(args.colour_bar) if args.colour_bar else None,
                           bar_orientation=args.bar_orientation, colour_table=args.colour_table,
                           opacity=args.opacity, registration=args.registration,
                           below_wash_gy=args.below_wash_gy,
                           exclude_boxes=tuple(tuple(b) for b in args.exclude_box))


def run(args) -> int:
    from .fileio import check_output_folder
    from .pipeline import DIAGNOSTIC_PREFIX, options_from_args, write_patient_outputs

    started = time.perf_counter()
    check_output_folder(args.out)   # before the registration, not after it
    if args.transform or args.register:
        raise InputError("--transform and --register place an RTDOSE grid; a dose-map picture is placed by "
                         "registration to the CT slice", hint="drop them; use --landmarks to place it yourself")
    pid = args.patient_id or Path(args.out).resolve().name
    inputs = DoseMapInputs(patient_id=pid, ct=args.ct, gtv=args.gtv, picture=args.dose_map,
                           gtv_name=args.gtv_name, gtv_label=args.gtv_label, landmarks=args.landmarks)
    say = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    result = extract_dose_map_patient(inputs, settings_from_args(args), options_from_args(args), progress=say)
    paths = write_patient_outputs(result, args.out, png=not args.no_png)
    dm = result.record["dose_map"]
    reg = dm["registration"]
    fit = (f"landmark residual {reg['residual_rms_mm']:.2f} mm RMS" if "residual_rms_mm" in reg
           else f"registration metric {reg['final_metric']:.4f}")
    colour = dm["decoding"].get("residual_levels")
    say(f"[{pid}] {fit}" + (f"; colour fit residual {colour['rms']:.1f}/255 RMS, opacity "
                            f"{dm['decoding']['opacity']:.2f}" if colour else ""))
    n = sum(1 for c in result.features if not c.startswith(DIAGNOSTIC_PREFIX))
    say(f"[{pid}] {n} features from {len(result.rois.masks)} ROIs in {time.perf_counter() - started:.1f} s")
    for w in result.record["alignment"]["warnings"]:
        print(f"[{pid}] warning: {w}", file=sys.stderr)
    for path in paths.values():
        print(path)
    return 0
