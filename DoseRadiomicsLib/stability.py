"""The numerical-stability screen: which features of a patient are round-off noise.

Every feature is computed twice more on the same ROI, with the image changed far below any physical
meaning:

- ``relative``: every voxel increased by ``RELATIVE_PERTURBATION`` (1e-6) of its own magnitude times a
  fixed pseudo-random factor in [0, 1) (a 60 Gy voxel by at most 6e-5 Gy, a -1000 HU voxel by at most
  1e-3 HU). Not a pure global scale: a scale leaves a linear filter's round-off pattern unchanged, so it
  would hide exactly the features this screen is for. One-sided (values only grow, toward +inf) so that
  data lying exactly on a bin edge (integer HU on the multiples of the 25 HU bin width) stays in its
  bin: digitising puts an edge value in the bin above, and a tie at an edge is pyradiomics' convention,
  not noise.
- ``storage``: the image stored in the other floating-point type (float32 input as float64, any other
  as float32), as two readers of the same file may store it; the filters then round differently.

A feature is **unstable** when, under either perturbation, it moves by more than
``RTOL * max(|a|, |b|) + ATOL`` (1e-3 relative, 1e-12 absolute). A well-conditioned feature moves by
about the perturbation itself (1e-6 relative, 6e-8 for float32 storage); 1e-3 allows a thousandfold
amplification. The absolute part is tiny on purpose: the round-off sub-bands hold values of 1e-5 to
1e-7 Gy, and a larger absolute tolerance would call their features stable. Shape features do not
depend on intensities and are never unstable.

The cost is kept low by an exact shortcut: texture classes (GLCM, GLRLM, GLSZM, GLDM, NGTDM) see
only the binned image inside the ROI (pyradiomics' ``_applyBinning``), so where a perturbed filtered
image bins exactly as the unperturbed one inside the ROI, its texture features are the unperturbed
ones; only first order is computed for it, texture classes only where the binning changed.

The loop is pyradiomics' own ``execute`` (load, mask check, filters, per-image crop, feature classes),
with pyradiomics' ``imageoperations`` for filtering and binning; with the perturbation ``"none"`` it
reproduces the extraction's values bit for bit (a test checks every feature).
"""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import ExtractionError

RELATIVE_PERTURBATION = 1e-6
RTOL = 1e-3
ATOL = 1e-12
#: a feature unstable in more than this share of the training patients is left out by ``train``
MAX_UNSTABLE_SHARE = 0.5
PERTURBATIONS = ("relative", "storage")
#: fixed, so that the screen of a patient is the same on every run and every machine
SEED = 20251201
SCHEMA = 1
#: the sidecar written next to features.csv
SIDECAR = "feature_stability.json"
# settings under which the perturbed image would change the ROI itself; the screen is then not run
_UNSUPPORTED = ("resegmentRange", "voxelBased")
_TEXTURE = ("glcm", "glrlm", "glszm", "gldm", "ngtdm")


def perturb(image: sitk.Image, kind: str) -> sitk.Image:
    """``image`` under one of :data:`PERTURBATIONS`, or unchanged (a copy) for ``"none"``."""
    arr = sitk.GetArrayFromImage(image)
    if kind == "none":
        out = sitk.GetImageFromArray(arr)
    elif kind == "relative":
        values = arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float64)
        factor = np.random.default_rng(SEED).random(arr.shape)
        grown = values + (RELATIVE_PERTURBATION * factor) * np.abs(values)
        out = sitk.GetImageFromArray(grown.astype(values.dtype))
    elif kind == "storage":
        other = np.float64 if arr.dtype == np.float32 else np.float32
        out = sitk.GetImageFromArray(arr.astype(other))
    elif kind == "relative+storage":
        return perturb(perturb(image, "relative"), "storage") if arr.dtype == np.float32 else \
            perturb(perturb(image, "storage"), "relative")
    else:
        raise ValueError(f"unknown perturbation '{kind}'; choose one of {PERTURBATIONS} or 'none'")
    out.CopyInformation(image)
    return out


def moved(a, b, rtol: float = RTOL, atol: float = ATOL):
    """True where ``b`` differs from ``a`` beyond the screen's tolerance (NaN against a number counts;
    NaN against NaN does not). Elementwise on arrays."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(invalid="ignore"):
        beyond = np.abs(a - b) > rtol * np.maximum(np.abs(a), np.abs(b)) + atol
    return np.where(np.isnan(a) | np.isnan(b), np.isnan(a) != np.isnan(b), beyond)


def relative_change(a: float, b: float) -> float:
    """|a - b| / max(|a|, |b|) (0 for two zeros, inf against NaN): what the record shows."""
    if np.isnan(a) or np.isnan(b):
        return float("inf")
    scale = max(abs(a), abs(b))
    return float(abs(a - b) / scale) if scale > 0 else 0.0


def _compute(fx, image, mask, type_name: str, classes, kwargs, names=None) -> "OrderedDict[str, float]":
    """pyradiomics' ``computeFeatures`` restricted to ``classes`` (and, with ``names``, to those
    first-order features), by the extraction's own route: the exact engine where the extraction uses it
    (its values are pyradiomics', :mod:`DoseRadiomicsLib.engine`), pyradiomics otherwise."""
    ex = fx._extractor
    enabled = OrderedDict(
        (c, (names if c == "firstorder" and names is not None else ex.enabledFeatures[c]))
        for c in classes if c in ex.enabledFeatures)
    if getattr(fx, "use_engine", False):
        from . import engine
        values = engine.compute_features(image, mask, type_name, enabled, kwargs,
                                         label=int(kwargs.get("label", fx.label)))
    else:
        restricted = copy.copy(ex)
        restricted.enabledFeatures = enabled
        values = restricted.computeFeatures(image, mask, type_name, **kwargs)
    return OrderedDict((k, float(v)) for k, v in values.items())


# First-order features whose change is bounded by the largest voxel change d inside the ROI (n voxels,
# values x, shift c = voxelArrayShift, voxel volume V, baseline standard deviation s): order
# statistics and the mean move by at most d; ranges and the mean absolute deviation by 2d; RMS by d
# (triangle inequality); Variance by 2sd + d^2; Energy by 2d sum|x + c| + nd^2 (TotalEnergy: times V).
# Entropy and Uniformity are histogram features: equal when the binning is. RobustMeanAbsoluteDeviation
# moves by at most 2d when its 10-90 % window holds the same voxels in both images (checked with
# numpy's percentile, pyradiomics' own code path for data without NaN). With centred values y (each
# moving by at most e = 2d) and s > d: the third and fourth central moments move by at most
# 3 m2 e + 3 mean|y| e^2 + e^3 and 4 mean|y|^3 e + 6 m2 e^2 + 4 mean|y| e^3 + e^4, and s by at most d,
# which bounds Skewness m3/s^3 and Kurtosis m4/s^4. Features without a bound are computed.
_BOUND_D = ("Minimum", "Maximum", "Mean", "Median", "10Percentile", "90Percentile", "RootMeanSquared")
_BOUND_2D = ("Range", "InterquartileRange", "MeanAbsoluteDeviation")
_SAME_BINS = ("Entropy", "Uniformity")


def _window(x: np.ndarray) -> np.ndarray:
    """The voxels of pyradiomics' robust-MAD window: between the 10th and 90th percentile, inclusive."""
    p10, p90 = np.percentile(x, 10), np.percentile(x, 90)
    return ~(((x - p10) < 0) | ((x - p90) > 0))


def _first_order_bounds(ref: np.ndarray, pert: np.ndarray, base: dict, prefix: str, kwargs, spacing) -> dict:
    """pyradiomics first-order name -> an upper bound of its change, for the features that have one."""
    delta = float(np.abs(pert - ref).max())
    shifted = np.abs(ref + float(kwargs.get("voxelArrayShift", 0))).sum()
    n = ref.size
    sd = np.sqrt(max(base.get(prefix + "Variance", 0.0), 0.0))
    energy = 2 * delta * shifted + n * delta * delta
    bounds = {**{f: delta for f in _BOUND_D}, **{f: 2 * delta for f in _BOUND_2D}, **{f: 0.0 for f in _SAME_BINS},
              "Variance": 2 * sd * delta + delta * delta, "Energy": energy,
              "TotalEnergy": energy * float(np.prod(spacing))}
    if np.array_equal(_window(ref), _window(pert)):
        bounds["RobustMeanAbsoluteDeviation"] = 2 * delta
    y = ref - ref.mean()
    abs_y = np.abs(y)
    m2 = float(np.mean(y * y))
    sigma = np.sqrt(m2)
    if sigma > delta:
        e, lo = 2 * delta, sigma - delta
        a1, a3 = float(abs_y.mean()), float(np.mean(abs_y ** 3))
        m3, m4 = float(np.mean(y ** 3)), float(np.mean(y ** 4))
        bounds["Skewness"] = ((3 * m2 * e + 3 * a1 * e ** 2 + e ** 3) / lo ** 3
                              + abs(m3) * (lo ** -3 - sigma ** -3))
        bounds["Kurtosis"] = ((4 * a3 * e + 6 * m2 * e ** 2 + 4 * a1 * e ** 3 + e ** 4) / lo ** 4
                              + m4 * (lo ** -4 - sigma ** -4))
    # the bounds hold in exact arithmetic; the margin covers the round-off of computing them
    return {prefix + f: b * (1 + 1e-9) + 1e-300 for f, b in bounds.items()}


def _filtered_images(ex, image, mask, settings):
    """pyradiomics' filter chain of ``execute`` on ``image``: (filtered, type name, kwargs) in order."""
    from radiomics import imageoperations as imops

    for image_type, custom in ex.enabledImagetypes.items():
        args = settings.copy()
        args.update(custom)
        yield from getattr(imops, f"get{image_type}Image")(image, mask, **args)


def _prepared(ex, image, mask, settings):
    """pyradiomics' ``loadImage`` + ``checkMask``: the image and mask the filters see, and the box."""
    from radiomics import imageoperations as imops

    image, mask = ex.loadImage(image, mask, None, **settings)
    bounding_box, corrected = imops.checkMask(image, mask, **settings)
    if corrected is not None:
        mask = corrected
    return image, mask, bounding_box


def _binned_inside(array: np.ndarray, inside: np.ndarray, kwargs) -> np.ndarray:
    """The grey levels pyradiomics' texture classes see inside the ROI (``base._applyBinning``)."""
    from radiomics import imageoperations as imops

    return imops.binImage(array, inside, **kwargs)[0][inside]


def reference_images(fx, image: sitk.Image, mask: sitk.Image) -> list:
    """(type name, filtered array, its grey levels inside the ROI) of the unperturbed image, in pyradiomics' order: what the
    perturbed images are compared with (the filters are cheap; their features are not)."""
    ex = fx._extractor
    settings = dict(ex.settings, label=fx.label)
    ref_image, ref_mask, _ = _prepared(ex, image, mask, settings)
    inside = sitk.GetArrayViewFromImage(ref_mask) == fx.label
    out = []
    for filtered, name, kwargs in _filtered_images(ex, ref_image, ref_mask, settings):
        array = sitk.GetArrayFromImage(filtered)
        out.append((name, array, _binned_inside(array, inside, kwargs)))
    return out


def _by_image(baseline: dict) -> dict:
    """pyradiomics features grouped: image type -> class -> {name: value} (shape under 'original')."""
    out: dict = {}
    for name, value in baseline.items():
        type_name, cls, _ = name.split("_", 2)
        out.setdefault(type_name, {}).setdefault(cls, {})[name] = value
    return out


def perturbed_features(fx, image: sitk.Image, mask: sitk.Image, kind: str, baseline: dict | None = None,
                       reference: list | None = None, known: frozenset = frozenset()) -> tuple:
    """The non-shape features of one ROI on ``image`` under perturbation ``kind``.

    ``fx`` is the :class:`~DoseRadiomicsLib.extraction.FeatureExtractor` that extracted ``baseline``
    (pyradiomics name -> value). With ``reference`` (:func:`reference_images`) and ``baseline`` the
    exact shortcuts apply: a filtered image equal to the unperturbed one inside the crop gets the
    baseline's features; one that bins as the unperturbed one inside the ROI gets the baseline's
    texture features and a computed first order. A feature class all of whose features are in
    ``known`` (found unstable already) is not computed again and is left out of the result.
    Without ``reference`` everything is computed. Returns (features, names of the images whose
    texture classes were computed).
    """
    from radiomics import imageoperations as imops

    ex = fx._extractor
    settings = dict(ex.settings, label=fx.label)
    classes = [c for c in ex.enabledFeatures if not c.startswith("shape")]
    pert_image, pert_mask, box = _prepared(ex, perturb(image, kind), mask, settings)
    inside = sitk.GetArrayViewFromImage(pert_mask) == fx.label
    by_image = _by_image(baseline) if reference is not None else {}
    out: "OrderedDict[str, float]" = OrderedDict()
    recomputed = []
    for i, (filtered, type_name, kwargs) in enumerate(_filtered_images(ex, pert_image, pert_mask, settings)):
        base = by_image.get(type_name, {})
        wanted = [c for c in classes if reference is None or not known.issuperset(base.get(c, ()))]
        todo, first_order_names = wanted, None
        if reference is not None:
            ref_name, ref_array, ref_bins = reference[i]
            if ref_name != type_name:
                raise RuntimeError(f"filter order differs: {ref_name} vs {type_name}")
            array = sitk.GetArrayViewFromImage(filtered)
            if np.array_equal(array, ref_array):          # nothing moved: the features did not either
                todo = []
            elif np.array_equal(_binned_inside(array, inside, kwargs), ref_bins):
                todo = [c for c in wanted if c == "firstorder"]
                if todo:
                    fo = base.get("firstorder", {})
                    bounds = _first_order_bounds(ref_array[inside].astype(np.float64),
                                                 array[inside].astype(np.float64), fo, f"{type_name}_firstorder_", kwargs,
                                                 filtered.GetSpacing())
                    within = {k for k, b in bounds.items() if k in fo and b <= RTOL * abs(fo[k]) + ATOL}
                    out.update((k, v) for k, v in fo.items() if k in within)   # proven within tolerance
                    first_order_names = [k.split("_", 2)[2] for k in fo if k not in within]
                    if not first_order_names:
                        todo = []
            for c in wanted:
                if c not in todo:
                    out.update(base.get(c, {}))
        if todo == ["firstorder"] and first_order_names is not None:
            # only pixels inside the mask count: the uncropped image gives the cropped one's values
            out.update(_compute(fx, filtered, pert_mask, type_name, todo, kwargs, first_order_names))
        elif todo:
            cropped, cropped_mask = imops.cropToTumorMask(filtered, pert_mask, box, padDistance=0)
            out.update(_compute(fx, cropped, cropped_mask, type_name, todo, kwargs))
            if any(c != "firstorder" for c in todo):
                recomputed.append(type_name)
    return out, recomputed


def unsupported_reason(fx) -> str | None:
    settings = fx._extractor.settings
    used = [k for k in _UNSUPPORTED if settings.get(k)]
    return (f"not screened: the parameter file {fx.path.name} sets {', '.join(used)}, under which a perturbed "
            "image changes the ROI itself") if used else None


def screen_rois(rois, options, features: dict, patient: str | None = None, shortcut: bool = True) -> dict:
    """The screen of a patient's ROIs against the extracted ``features`` (``<ROI>__<feature>`` -> value).

    Returns the record's ``stability`` entry: the perturbations and tolerance, the counts, and
    ``unstable``: feature column -> {perturbation: relative change} for every unstable feature.
    """
    from .pipeline import ROI_SEPARATOR, extractors
    from .rois import roi_modality

    t0 = time.perf_counter()
    ex = extractors(options)
    unstable: "OrderedDict[str, dict]" = OrderedDict()
    recomputed = OrderedDict()
    not_screened = OrderedDict()
    n_screened = 0
    for roi, mask in rois.masks.items():
        fx = ex[roi_modality(roi)]
        reason = unsupported_reason(fx)
        if reason:
            not_screened[roi] = reason
            continue
        head = f"{roi}{ROI_SEPARATOR}"
        baseline = {k[len(head):]: v for k, v in features.items() if k.startswith(head)}
        changes: "OrderedDict[str, dict]" = OrderedDict()
        recomputed[roi] = {}
        image = rois.image_for(roi)
        reference = reference_images(fx, image, mask) if shortcut else None
        for kind in PERTURBATIONS:
            known = frozenset(k[len(head):] for k in changes)
            try:
                values, images = perturbed_features(fx, image, mask, kind, baseline, reference, known)
            except (ValueError, RuntimeError, IndexError) as exc:
                raise ExtractionError(f"the stability screen ({kind} perturbation) failed on ROI {roi}: {exc}",
                                      patient=patient) from exc
            recomputed[roi][kind] = images
            names = list(values)
            flags = moved([baseline[n] for n in names], list(values.values()))
            for name in np.asarray(names, dtype=object)[flags]:
                changes.setdefault(head + name, OrderedDict())[kind] = relative_change(baseline[name], values[name])
        n_screened += len(baseline)
        unstable.update(changes)
    return {
        "schema": SCHEMA,
        "perturbations": {"relative": f"each voxel x -> x + {RELATIVE_PERTURBATION:g} * u * |x|, u in [0, 1) "
                                      f"pseudo-random (seed {SEED})",
                          "storage": "float32 input as float64, any other as float32"},
        "tolerance": {"rtol": RTOL, "atol": ATOL,
                      "rule": "unstable when |a - b| > rtol * max(|a|, |b|) + atol under either perturbation"},
        "n_features_screened": n_screened,
        "n_unstable": len(unstable),
        "unstable": unstable,
        "texture_recomputed": recomputed,
        "not_screened": not_screened,
        "seconds": round(time.perf_counter() - t0, 3),
    }


# ----------------------------------------------------------------------------- features.csv's sidecar

SIDECAR_KIND = "DoseRadiomics feature stability"


def sidecar_text(columns, screens) -> str:
    """``feature_stability.json``, beside features.csv: which features are unstable in which patients.

    ``columns``: features.csv's feature columns; ``screens``: (patient id, the record's ``stability``
    entry, or None when the patient was not screened). Holds the screened patients, and for each
    feature unstable in at least one: those patients, their share and the largest relative change
    seen (features absent are stable in every screened patient); ``train`` reads it.
    """
    import json

    screened = [(pid, s) for pid, s in screens if s]
    first = screened[0][1] if screened else {}
    known = set(columns)
    where: "OrderedDict[str, list]" = OrderedDict((c, []) for c in columns)
    largest: dict = {}
    for pid, s in screened:
        for name, changes in (s.get("unstable") or {}).items():
            if name in known:
                where[name].append(pid)
                largest[name] = max(largest.get(name, 0.0), max(changes.values(), default=0.0))
    n = len(screened)
    features = OrderedDict((c, {"unstable_in": ids, "share": len(ids) / n, "max_relative_change": largest[c]})
                           for c, ids in where.items() if ids)
    doc = {"kind": SIDECAR_KIND, "schema": SCHEMA,
           "perturbations": first.get("perturbations"), "tolerance": first.get("tolerance"),
           "n_features": len(where), "n_features_unstable_somewhere": len(features),
           "patients_screened": [pid for pid, _ in screened],
           "patients_not_screened": [pid for pid, s in screens if not s],
           "features": features}
    return json.dumps(doc, indent=1)


def cohort_sidecar_text(out_dir, patient_ids, settings_hash: str, columns) -> str:
    """The sidecar of a cohort-extract folder, from the stored patient records (``patients/<id>.json``)."""
    from .cohort import PATIENT_SCHEMA, _read_patient_json, patient_json_path, stored_stability

    screens, cache = [], {}
    for pid in patient_ids:
        doc = _read_patient_json(patient_json_path(out_dir, pid))
        if doc and doc.get("schema") == PATIENT_SCHEMA and doc.get("settings_hash") == settings_hash:
            screens.append((pid, stored_stability(doc, out_dir, cache)))
    return sidecar_text(columns, screens)


@dataclass(frozen=True)
class Exclusion:
    """What ``train`` needs from a sidecar: per feature the patients in which it is unstable, the
    patients screened, and the largest share of training patients a kept feature may be unstable in."""

    unstable: tuple            # (feature, frozenset of patient ids) pairs
    screened: frozenset
    max_share: float = MAX_UNSTABLE_SHARE
    source: str = ""

    def shares(self, patient_ids, columns) -> list:
        """[{feature, unstable_in, screened, share}] for ``columns`` over the screened ``patient_ids``,
        features unstable in none of them left out."""
        ids = {str(p) for p in patient_ids} & self.screened
        wanted = set(columns)
        out = []
        for feature, where in self.unstable:
            if feature in wanted:
                k = len(where & ids)
                if k:
                    out.append({"feature": feature, "unstable_in": k, "screened": len(ids), "share": k / len(ids)})
        return out

    def excluded(self, patient_ids, columns) -> list:
        """The rows of :meth:`shares` above ``max_share``, each with its reason."""
        return [dict(r, reason=f"numerically unstable in {r['unstable_in']} of {r['screened']} screened "
                               f"training patients ({r['share']:.0%} > {self.max_share:.0%})")
                for r in self.shares(patient_ids, columns) if r["share"] > self.max_share]


def read_sidecar(path, max_share: float = MAX_UNSTABLE_SHARE) -> Exclusion:
    """A ``feature_stability.json`` as an :class:`Exclusion`; errors name the file and the problem."""
    import json

    from .errors import InputError

    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot read the stability sidecar: {exc}", path=path) from exc
    if not isinstance(doc, dict) or doc.get("kind") != SIDECAR_KIND:
        raise InputError(f"not a {SIDECAR} file", path=path,
                         hint="pass the file extract or cohort-extract wrote beside features.csv")
    try:
        screened = frozenset(str(p) for p in doc["patients_screened"])
        unstable = tuple((str(f), frozenset(str(p) for p in v["unstable_in"])) for f, v in doc["features"].items())
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"the stability sidecar lacks {exc}", path=path,
                         hint="the file was edited or truncated: rerun the extraction") from exc
    return Exclusion(unstable, screened, float(max_share), str(path))
