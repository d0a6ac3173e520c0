"""Plausibility limits: inputs no planning system produces are refused early, from headers and cheap
statistics, before the heavy work (resampling, pyradiomics) that they would make absurdly slow or wrong.

A dose in cGy declared as Gy spans 100 times the grey levels at pyradiomics' bin width; its texture
matrices grow with the square of that and ran for minutes into a MemoryError. A sheared direction
matrix gives wrong areas. A picture that decodes to 400 million pixels exhausts memory. Each limit
is an environment variable a user with a genuine case can raise (README "Robustness"):

=================================== ============ ==================================================
variable                            default      what it bounds
=================================== ============ ==================================================
``DOSERADIOMICS_MAX_DOSE_GY``       200          the largest dose value in a dose file, in Gy
``DOSERADIOMICS_MAX_GREY_LEVELS``   2000         grey levels an ROI spans at its bin width, on the
                                                 original image and on every filtered one
``DOSERADIOMICS_MAX_PICTURE_PIXELS`` 50000000    pixels of a dose-map picture (PNG/JPEG by PIL's
                                                 decoder, DICOM from Rows x Columns x frames)
``DOSERADIOMICS_DIRECTION_TOLERANCE`` 0.001      how far a direction matrix may be from orthonormal
=================================== ============ ==================================================

Other checks have no knob because no valid input can fail them: a negative dose inside the GTV, a
label value of 0 (the background) or outside the labelmap's pixel type, isodose thresholds that print
as the same ROI name, a transform that cannot be inverted.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np

from .errors import InputError

MAX_DOSE_GY = ("DOSERADIOMICS_MAX_DOSE_GY", 200.0)
MAX_GREY_LEVELS = ("DOSERADIOMICS_MAX_GREY_LEVELS", 2000.0)
MAX_PICTURE_PIXELS = ("DOSERADIOMICS_MAX_PICTURE_PIXELS", 50_000_000.0)
DIRECTION_TOLERANCE = ("DOSERADIOMICS_DIRECTION_TOLERANCE", 1e-3)


def limit(spec) -> float:
    """The value of the limit ``spec`` = (environment variable, default); a bad value is an InputError."""
    name, default = spec
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"{name}={text!r} is not a positive number", hint=f"unset it to use {default:g}")
    return value


def check_dose_maximum(max_gy: float, unit_note: str, patient=None, path=None) -> None:
    """A dose whose maximum exceeds :data:`MAX_DOSE_GY` is refused, with a hint when it looks like
    cGy read as Gy (``unit_note`` says how the unit was decided)."""
    top = limit(MAX_DOSE_GY)
    if max_gy <= top:
        return
    if max_gy / 100.0 <= top:
        hint = (f"it looks like cGy read as Gy ({max_gy / 100:.1f} Gy if so): declare the unit as cGy "
                f"(--dose-unit cGy, or the file's unit); if the dose is genuine, raise {MAX_DOSE_GY[0]}")
    else:
        hint = f"the file is damaged or not a dose; if the dose is genuine, raise {MAX_DOSE_GY[0]}"
    raise InputError(f"the dose reaches {max_gy:.6g} Gy ({unit_note}), above the plausible maximum of "
                     f"{top:g} Gy", patient=patient, path=path, hint=hint)


def check_gtv_dose_not_negative(min_gy: float, patient=None, path=None) -> None:
    """A negative dose inside the GTV is not physical: refuse it rather than measure it."""
    if min_gy < 0:
        raise InputError(f"the dose inside the GTV is negative (minimum {min_gy:.6g} Gy)", patient=patient,
                         path=path, hint="the dose file is damaged or holds a dose difference, not a dose; "
                                         "export the planned dose again")


def check_direction(direction, what: str, patient=None, path=None) -> None:
    """A direction matrix must be orthonormal (rotations and reflections only): a sheared one
    measures areas wrongly."""
    d = np.asarray(direction, float)
    n = int(round(np.sqrt(d.size)))
    d = d.reshape(n, n)
    error = float(np.abs(d.T @ d - np.eye(n)).max())
    tol = limit(DIRECTION_TOLERANCE)
    if not np.isfinite(error) or error > tol:
        raise InputError(f"the {what}'s direction matrix is not orthonormal (sheared or scaled; "
                         f"max |D'D - I| = {error:.3g})", patient=patient, path=path,
                         hint=f"the header is damaged; export the image again (tolerance "
                              f"{DIRECTION_TOLERANCE[0]}={tol:g})")


def check_label_value(label: int, dtype, patient=None, path=None) -> None:
    """A GTV label must be a non-zero value the labelmap's pixel type can hold (it would otherwise
    select the background, or wrap around to another label)."""
    if label == 0:
        raise InputError("--gtv-label 0 is the background, not a structure", patient=patient, path=path,
                         hint="give the GTV's label value, or leave --gtv-label out for any non-zero voxel")
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None and not info.min <= label <= info.max:
        raise InputError(f"--gtv-label {label} cannot occur in a {np.dtype(dtype).name} labelmap (values "
                         f"{info.min} to {info.max})", patient=patient, path=path,
                         hint="give one of the labelmap's label values")


def check_grey_levels(values: np.ndarray, bin_width: float, roi: str, what: str, patient=None) -> None:
    """The grey levels an ROI spans at ``bin_width`` (pyradiomics' discretisation) are bounded by
    :data:`MAX_GREY_LEVELS`: texture matrices grow with their square."""
    if values.size == 0 or not bin_width or bin_width <= 0:
        return
    levels = float(np.ptp(values)) / float(bin_width)
    top = limit(MAX_GREY_LEVELS)
    if levels > top:
        raise InputError(f"ROI {roi} spans {levels:.0f} grey levels at a bin width of {bin_width:g} "
                         f"({what} {float(values.min()):.6g} to {float(values.max()):.6g}), more than "
                         f"{top:g}", patient=patient,
                         hint="check the image's units (a dose in cGy read as Gy, a CT not in HU); if the "
                              f"values are genuine, raise {MAX_GREY_LEVELS[0]} or the bin width")


def check_picture_pixels(rows: int, columns: int, frames: int = 1, patient=None, path=None) -> None:
    """A picture whose header declares more than :data:`MAX_PICTURE_PIXELS` pixels (all frames) is
    refused before it is decoded: a small compressed file can decode to gigabytes."""
    top = limit(MAX_PICTURE_PIXELS)
    n = int(rows) * int(columns) * max(1, int(frames))
    if n > top:
        size = f"{int(columns)} x {int(rows)}" + (f" x {int(frames)} frames" if int(frames) > 1 else "")
        raise InputError(f"the dose-map picture has more pixels than the limit of {int(top):,} ({size} = "
                         f"{n:,} in its header)", patient=patient, path=path,
                         hint=f"a screen capture has a few million; if the picture is genuine, raise "
                              f"{MAX_PICTURE_PIXELS[0]}")


def check_filtered_grey_levels(image, mask, image_type: str, settings: dict, roi, patient=None) -> None:
    """:func:`check_grey_levels` on one of pyradiomics' filtered images (cropped image and mask, as
    its feature classes get them), at the bin width they will use. A filter can spread an ROI over
    far more grey levels than the original: the logarithm and square-root filters rescale to the
    largest value in the whole crop (a metal artefact beside the GTV), wavelet and gradient
    amplify edges. The original image is checked before any filter runs."""
    if image_type == "original" or settings.get("binCount"):
        return
    import SimpleITK as sitk

    label = int(settings.get("label", 1))
    values = sitk.GetArrayViewFromImage(image)[sitk.GetArrayViewFromImage(mask) == label]
    check_grey_levels(values, float(settings.get("binWidth", 25)), roi, f"{image_type} image values", patient)


@contextmanager
def filtered_grey_levels_checked(extractor, roi, patient=None):
    """Within this, pyradiomics' ``extractor.execute`` runs :func:`check_filtered_grey_levels` on each
    filtered image before its feature classes (``execute`` calls ``computeFeatures`` once per image)."""
    compute = extractor.computeFeatures

    def checked(image, mask, image_type, **kwargs):
        check_filtered_grey_levels(image, mask, image_type, kwargs, roi, patient)
        return compute(image, mask, image_type, **kwargs)

    had_own = "computeFeatures" in vars(extractor)
    extractor.computeFeatures = checked
    try:
        yield
    finally:
        if had_own:
            extractor.computeFeatures = compute
        else:
            del extractor.computeFeatures     # the class's method again (the extractor stays picklable)
