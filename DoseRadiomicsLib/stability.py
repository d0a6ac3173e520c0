"""The numerical-stability screen: which features of a patient are round-off noise.

Every feature is computed twice more on the same ROI, with the image changed far below any physical
meaning (``PERTURBATIONS``):

- ``relative``: every voxel increased by ``RELATIVE_PERTURBATION`` (1e-6) of its own magnitude times a
  pseudo-random factor in [0, 1) drawn from the voxel's *value* (splitmix64 of its bits, seed ``SEED``):
  a 60 Gy voxel grows by at most 6e-5 Gy, a -1000 HU voxel by at most 1e-3 HU. Not a pure global scale:
  a scale leaves a linear filter's round-off pattern unchanged, so it would hide exactly the features
  this screen is for. Keyed on the value, not on the voxel, so that equal voxels stay equal and values
  further apart than 1e-6 of themselves keep their order: ties of quantised data (integer HU, doses in
  steps of 1e-3 Gy) are data, not round-off, and breaking them moves pyradiomics' robust-MAD window
  (the 10-90 % percentiles) by whole voxels; a per-voxel factor flagged the original image's
  RobustMeanAbsoluteDeviation on 6 of 10 OpenKBP patients that way. One-sided (values only grow,
  toward +inf) so that data lying exactly on a bin edge (integer HU on the multiples of the 25 HU bin
  width) stays in its bin: digitising puts an edge value in the bin above, and a tie at an edge is
  pyradiomics' convention, not noise.
- ``storage``: the image stored in the other floating-point type (float32 input as float64, any other
  as float32), as two readers of the same file may store it; the filters then round differently.

Both are applied to the image pyradiomics' filters see (the ROI's pre-cropped box). One combined
perturbation (``relative+storage``, one filter pass) costs about half as much but is not the same
screen: where LBP3D's sign function meets a tie (below), whether a perturbation flips it is decided by
round-off, and the combined perturbation's round-off need not flip the ties that float32 against
float64 storage flips (measured on OpenKBP pt_11: 157 LBP features move between the two storage types,
the combined screen flags none of them). The storage perturbation is that comparison itself.

A feature is **unstable** when a perturbation moves it by more than ``RTOL * max(|a|, |b|) + ATOL``
(1e-3 relative, 1e-12 absolute). A well-conditioned feature moves by about the perturbation itself
(1e-6 relative, 6e-8 for float32 storage); 1e-3 allows a thousandfold amplification. The absolute
part is tiny on purpose: the round-off sub-bands hold values of 1e-5 to 1e-7 Gy, and a larger
absolute tolerance would call their features stable. Shape features do not depend on intensities and
are never unstable.

LBP3D's m1 and m2 images count, per voxel, the sample points around it (42 on a sphere, six of them
exactly on the neighbouring voxels) whose cubic-spline value is at least the voxel's own. Where a
neighbour holds exactly the voxel's value (doses quantised to 1e-3 Gy do, on some patients), that
comparison is a tie decided by the round-off of pyradiomics' spline (``map_coordinates`` keeps the
input's float type), which differs between float32 and float64: those patients' LBP3D m1/m2 features
move and are flagged (OpenKBP pt_1, pt_11, pt_100). A patient without such a neighbour pair at the ROI
(OpenKBP pt_10) has LBP3D m1/m2 features that do not move at all.

The cost is kept low: the extraction hands over the filtered images its features come from
(``pipeline.extract_rois(keep=...)``), so only the perturbed images are filtered, once per group of
ROIs pyradiomics filters together; exact shortcuts spare filters (:func:`_perturbed_filtered`: under a
storage change that keeps every value, the filters that see values only; LBP3D's m1/m2 where the sign
pattern did not change) and feature classes (:func:`screen_group`).
The loop is pyradiomics' own ``execute`` (load, mask check, filters, per-image crop, feature classes),
with the extraction's route to the feature classes (the exact engine, :mod:`DoseRadiomicsLib.engine`);
with the perturbation ``"none"`` it reproduces the extraction's values (a test checks every feature).
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
_DESCRIPTIONS = {
    "relative": f"each voxel x -> x + {RELATIVE_PERTURBATION:g} * u * |x|, u in [0, 1) pseudo-random (seed {SEED})",
    "storage": "float32 input as float64, any other as float32",
    "relative+storage": f"both at once: x -> x + {RELATIVE_PERTURBATION:g} * u * |x| (seed {SEED}), stored in the "
                        "other floating-point type (float32 input as float64, any other as float32)",
}
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
        from .fingerprint import _splitmix64

        values = arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float64)
        # keyed on the value, not the voxel: equal voxels stay equal (see the module docstring)
        factor = _splitmix64(values.astype(np.float64).view(np.uint64), SEED)
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


def _features(fx, filtered: list, indices, mask, bounding_box, classes) -> list:
    """The features of ``classes`` on the images ``filtered[i]``, ``i`` in ``indices``, of one ROI (its
    mask and bounding box on the filtered images' grid), by the extraction's route: the exact engine
    with the images batched (:meth:`FeatureExtractor._engine_features`; its values are pyradiomics',
    :mod:`DoseRadiomicsLib.engine`), pyradiomics' ``computeFeatures`` otherwise. One OrderedDict per index."""
    from radiomics import imageoperations as imops

    indices = list(indices)
    if not indices:
        return []
    if fx.use_engine:
        values = fx._engine_features([filtered[i] for i in indices], mask, bounding_box, classes=classes)
    else:
        restricted = copy.copy(fx._extractor)
        restricted.enabledFeatures = OrderedDict((c, v) for c, v in fx._extractor.enabledFeatures.items()
                                                 if c in classes)
        values = []
        for i in indices:
            image, type_name, kwargs = filtered[i]
            cropped, cropped_mask = imops.cropToTumorMask(image, mask, bounding_box, padDistance=0)
            values.append(restricted.computeFeatures(cropped, cropped_mask, type_name, **kwargs))
    return [OrderedDict((k, float(v)) for k, v in vector.items()) for vector in values]


def _first_order(fx, filtered: list, items: list, by_type: dict, mask, bounding_box) -> list:
    """The first-order features of the images ``filtered[i]``, ``items``: (i, the image's values inside
    the ROI, their grey levels), as :func:`_features` computes them, but without binning each image
    again: the engine's first order (:func:`DoseRadiomicsLib.engine.firstorder.features`, what
    :func:`_features` runs) on the values and grey-level counts the screen already has. Same inputs,
    same function, same values; the route of :func:`_features` wherever the engine would not compute
    them itself (no engine, settings it leaves to pyradiomics, a feature it does not name, an error).
    ``by_type``: the ROI's feature names by image type and class (:func:`_by_image`)."""
    from . import engine
    from .engine import firstorder

    if not items:
        return []
    kwargs = [filtered[i][2] for i, _v, _b in items]
    shift = {k.get("voxelArrayShift", 0) for k in kwargs}
    if fx.use_engine and len(shift) == 1 and all(engine.settings_supported(k) for k in kwargs):
        try:
            values = firstorder.features(np.stack([v for _i, v, _b in items]),
                                         [np.unique(b, return_counts=True)[1] for _i, _v, b in items],
                                         [filtered[i][0].GetSpacing() for i, _v, _b in items], shift.pop())
        except (RuntimeError, ValueError, IndexError):
            values = None      # the engine hands such an image to pyradiomics: so does _features
        if values is not None:
            out = []
            for (i, _v, _b), vector in zip(items, values):
                names = by_type.get(filtered[i][1], {}).get("firstorder", ())
                short = [n.split("_", 2)[2] for n in names]
                if any(k not in vector for k in short):
                    break
                out.append(OrderedDict((n, float(np.asarray(vector[k]).item())) for n, k in zip(names, short)))
            else:
                return out
    return _features(fx, filtered, [i for i, _v, _b in items], mask, bounding_box, ("firstorder",))


def _filtered_images(ex, image, mask, settings):
    """pyradiomics' filter chain of ``execute`` on ``image``: (filtered, type name, kwargs) in order."""
    from radiomics import imageoperations as imops

    for image_type, custom in ex.enabledImagetypes.items():
        args = settings.copy()
        args.update(custom)
        yield from getattr(imops, f"get{image_type}Image")(image, mask, **args)


# pyradiomics filters whose output depends on the input's values alone, not on its storage type: the
# original image is yielded as it is, and Square, SquareRoot, Logarithm and Exponential cast their input
# to float64 before computing (radiomics.imageoperations). A storage change that keeps every value
# (float32 as float64, int16 as float32) leaves their images bit for bit: they are not filtered again.
_VALUE_ONLY = {"Original": ("original",), "Square": ("square",), "SquareRoot": ("squareroot",),
               "Logarithm": ("logarithm",), "Exponential": ("exponential",)}


def _lbp3d_samples(im_arr: np.ndarray, ma_arr: np.ndarray, args):
    """The first steps of pyradiomics' ``getLBP3DImage``, with the same calls on the same arrays (so the
    same bits): the cubic-spline samples on the icosphere around every ROI voxel (Np x Nv), whose sign
    pattern ``sample >= centre`` its m1/m2 images are computed from, the centre values, the ROI's
    coordinates."""
    from scipy.ndimage import map_coordinates
    from trimesh.creation import icosphere

    vertices = np.array(icosphere(args.get("lbp3DIcosphereSubdivision", 1), args.get("lbp3DIcosphereRadius", 1)).vertices)
    roi = np.where(ma_arr == args.get("label", 1))
    coords = np.array(roi).T[None, :, :] + vertices[:, None, :]
    return map_coordinates(im_arr, coords.T, order=3), im_arr[roi], roi


def _lbp3d_perturbed(image, group, args, reference: list, signs: dict):
    """pyradiomics' LBP3D images (m1 ... m<levels>, k) of the perturbed group image ``image``, or None
    when they must be filtered in full. pyradiomics computes m1/m2 from the sign pattern alone (then
    spherical harmonics of it, the costly part), and k as the kurtosis of the samples: where the
    perturbed image's pattern equals the unperturbed one's, its m images are the extraction's, bit for
    bit, and only k is computed (as pyradiomics does). A pattern that differs (a tie flipped) is None.

    ``signs`` keeps per group the unperturbed pattern. SciPy's ``map_coordinates`` prefilters into
    float64 and interpolates in double whatever the input's type, then stores the result in that type
    (SciPy 1.13-1.17; ``Testing/Python/test_stability.py`` checks it): a float32 image's samples are
    those of its float64 copy rounded to float32, so one call on the float64 copy gives both the
    unperturbed pattern and the samples of the ``storage`` perturbation (that copy)."""
    from scipy.stats import kurtosis

    levels = int(args.get("lbp3DLevels", 2))
    names = [f"lbp-3D-m{i + 1}" for i in range(levels)] + ["lbp-3D-k"]
    unperturbed = sitk.GetArrayViewFromImage(group["image"])
    mask = sitk.GetArrayViewFromImage(group["filter_mask"])
    # Where the pattern is bound to change, trying costs a map_coordinates call for nothing (cost only, the
    # result is exact either way): an integer image's samples are rounded to integers (map_coordinates
    # keeps the input's type), so ties are the rule and every perturbation here (to floats) breaks
    # them; on 5-slice slabs (OpenKBP pt_10, pt_12) the perturbations changed the dose ROIs' patterns in
    # at least 5 of 8 (ROI, perturbation) pairs and trying did not pay, while on one slice the relative
    # perturbation changed none (16 patients).
    if [n for _i, n, _k in reference] != names or not np.issubdtype(unperturbed.dtype, np.floating) \
            or unperturbed.shape[0] != 1:
        return None
    if id(group) not in signs:
        if unperturbed.dtype == np.float32:
            as64 = _lbp3d_samples(unperturbed.astype(np.float64), mask, args)
            pattern = np.greater_equal(as64[0].astype(np.float32), as64[1][:, None])
        else:
            as64 = None
            samples, centres, _roi = _lbp3d_samples(unperturbed, mask, args)
            pattern = np.greater_equal(samples, centres[:, None])
        signs[id(group)] = pattern, as64
    pattern, as64 = signs[id(group)]
    values = sitk.GetArrayViewFromImage(image)
    if as64 is not None and values.dtype == np.float64 and np.array_equal(values, unperturbed):
        samples, centres, roi = as64
    else:
        samples, centres, roi = _lbp3d_samples(values, mask, args)
    if not np.array_equal(np.greater_equal(samples, centres[:, None]), pattern):
        return None
    result = sitk.GetArrayFromImage(reference[-1][0]).astype(np.float64)   # outside the ROI: never read
    # SciPy's kurtosis without its nan-policy wrapper, which only moves the axis last (it is already) and
    # handles NaN (none here), at two thirds of the call's cost: the same values (the test compares k)
    raw = getattr(kurtosis, "__wrapped__", kurtosis) if np.isfinite(samples).all() else kurtosis
    result[roi] = np.real(raw(samples, axis=1))
    k_image = sitk.GetImageFromArray(result)
    k_image.CopyInformation(image)
    return list(reference[:-1]) + [(k_image, "lbp-3D-k", args)]


def _perturbed_filtered(ex, group, kind, settings, signs: dict):
    """pyradiomics' filter chain on the group's image under perturbation ``kind``, as
    :func:`_filtered_images`, and per image whether it is the extraction's own (``True``: not
    filtered again, by the two exact shortcuts above, :data:`_VALUE_ONLY` and
    :func:`_lbp3d_perturbed`). ``signs``: the unperturbed LBP3D sign patterns, per group, filled here."""
    from radiomics import imageoperations as imops

    image = perturb(group["image"], kind)
    reference = group["filtered"]
    kept_values = kind == "storage" and np.array_equal(sitk.GetArrayViewFromImage(group["image"]),
                                                       sitk.GetArrayViewFromImage(image))
    out, same = [], []
    for image_type, custom in ex.enabledImagetypes.items():
        args = settings.copy()
        args.update(custom)
        start = len(out)
        images = None
        if kept_values and image_type in _VALUE_ONLY:
            names = _VALUE_ONLY[image_type]
            if [n for _i, n, _k in reference[start:start + len(names)]] == list(names):
                images = reference[start:start + len(names)]
        elif image_type == "LBP3D":
            images = _lbp3d_perturbed(image, group, args, reference[start:start + int(args.get("lbp3DLevels", 2)) + 1],
                                      signs)
        if images is None:
            images = list(getattr(imops, f"get{image_type}Image")(image, group["filter_mask"], **args))
            same += [False] * len(images)
        else:
            same += [r is img for r, img in zip(reference[start:], images)]
        out += images
    return out, same


def _prepared(ex, image, mask, settings):
    """pyradiomics' ``loadImage`` + ``checkMask``: the image and mask the filters see, and the box."""
    from radiomics import imageoperations as imops

    image, mask = ex.loadImage(image, mask, None, **settings)
    bounding_box, corrected = imops.checkMask(image, mask, **settings)
    if corrected is not None:
        mask = corrected
    return image, mask, bounding_box


def _bins(values: np.ndarray, kwargs) -> np.ndarray:
    """The grey levels pyradiomics' texture classes see, of the voxel values inside an ROI
    (``base._applyBinning``: bin edges from the ROI's own values)."""
    from radiomics import imageoperations as imops

    return imops.binImage(values, **kwargs)[0]


def unperturbed_groups(fx, image: sitk.Image, masks) -> list:
    """What :meth:`FeatureExtractor.extract_many` keeps (``keep``), recomputed for ROIs it did not keep:
    per ROI pyradiomics' loadImage and mask check, then its filters; one group per ROI."""
    ex = fx._extractor
    settings = dict(ex.settings, label=fx.label)
    groups = []
    for roi, mask in masks.items():
        prepared, prepared_mask, bounding_box = _prepared(ex, image, mask, settings)
        groups.append({"image": prepared, "filter_mask": prepared_mask,
                       "masks": OrderedDict([(roi, (prepared_mask, bounding_box))]),
                       "filtered": list(_filtered_images(ex, prepared, prepared_mask, settings))})
    return groups


def perturbed_features(fx, image: sitk.Image, mask: sitk.Image, kind: str) -> "OrderedDict[str, float]":
    """Every non-shape feature of one ROI with the image under perturbation ``kind`` (``"none"``: none),
    computed in full, without the screen's shortcuts: pyradiomics' loadImage and mask check, the
    perturbation of the image the filters see (as the screen perturbs it), pyradiomics' filters, every
    feature class of every filtered image. What the shortcuts are tested against."""
    ex = fx._extractor
    settings = dict(ex.settings, label=fx.label)
    prepared, prepared_mask, bounding_box = _prepared(ex, image, mask, settings)
    filtered = list(_filtered_images(ex, perturb(prepared, kind), prepared_mask, settings))
    out: "OrderedDict[str, float]" = OrderedDict()
    for vector in _features(fx, filtered, range(len(filtered)), prepared_mask, bounding_box,
                            [c for c in ex.enabledFeatures if not c.startswith("shape")]):
        out.update(vector)
    return out


_BY_IMAGE: dict = {}


def _by_image(names) -> tuple:
    """pyradiomics feature names grouped: image type -> class -> names in their order, and the same
    as frozensets (shape under 'original'). The same names for every patient of a parameter file:
    grouped once per process."""
    key = tuple(names)
    if key not in _BY_IMAGE:
        out: dict = {}
        for name in key:
            type_name, cls, _ = name.split("_", 2)
            out.setdefault(type_name, {}).setdefault(cls, []).append(name)
        if len(_BY_IMAGE) > 16:
            _BY_IMAGE.clear()
        _BY_IMAGE[key] = ({t: {c: tuple(v) for c, v in by_class.items()} for t, by_class in out.items()},
                          {t: {c: frozenset(v) for c, v in by_class.items()} for t, by_class in out.items()})
    return _BY_IMAGE[key]


def _relative_changes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`relative_change` elementwise (the same operations, so the same values)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.maximum(np.abs(a), np.abs(b))
        out = np.where(scale > 0, np.abs(a - b) / np.where(scale > 0, scale, 1.0), 0.0)
    return np.where(np.isnan(a) | np.isnan(b), np.inf, out)


def screen_group(fx, group: dict, baselines: dict, kinds=PERTURBATIONS) -> "OrderedDict[str, tuple]":
    """The screen of a group of ROIs filtered together (a value of :meth:`FeatureExtractor.extract_many`'s
    ``keep``, or of :func:`unperturbed_groups`) against their extracted features, ``baselines``: ROI ->
    {pyradiomics name: value}. Returns ROI -> (changes, recomputed): feature -> {perturbation: relative
    change} for every feature that moved beyond the tolerance, and perturbation -> the images whose
    texture classes were computed.

    Per perturbation the group's image is perturbed and filtered once, for all its ROIs, and the
    perturbed filtered images are compared with the extraction's. Exact shortcuts then spare the
    feature classes, as every feature depends only on the values inside the ROI: an image whose
    values inside the ROI did not change keeps every feature; one whose grey levels inside the ROI did
    not change keeps its texture (the texture classes see only those), and only its first order is
    computed; the other images are computed in full. Images the filter step reused from the
    extraction (:func:`_perturbed_filtered`) are unchanged by construction. An ROI's texture images of
    one perturbation are computed in one batch, its first order from the values and grey levels the
    comparison already has (:func:`_first_order`). A class all of whose features were found unstable
    under an earlier perturbation is not computed again.
    """
    ex = fx._extractor
    settings = dict(ex.settings, label=fx.label)
    classes = tuple(c for c in ex.enabledFeatures if not c.startswith("shape"))
    reference = group["filtered"]
    inside = OrderedDict((roi, sitk.GetArrayViewFromImage(m) == fx.label) for roi, (m, _bb) in group["masks"].items())
    ref_values = {roi: [sitk.GetArrayViewFromImage(f)[ins] for f, _n, _k in reference] for roi, ins in inside.items()}
    ref_bins: dict = {}
    by_image = {roi: _by_image(baselines[roi]) for roi in inside}     # (ordered names, name sets)
    out = OrderedDict((roi, (OrderedDict(), OrderedDict())) for roi in inside)
    flagged_by_roi = {roi: set() for roi in inside}      # the features of ``changes``, as a set
    signs: dict = {}
    for kind in kinds:
        perturbed, same = _perturbed_filtered(ex, group, kind, settings, signs)
        if [n for _f, n, _k in perturbed] != [n for _f, n, _k in reference]:
            raise RuntimeError("the perturbed image's filters yield other images than the extraction's")
        for roi, (mask, bounding_box) in group["masks"].items():
            changes, recomputed = out[roi]
            flagged = flagged_by_roi[roi]
            texture: "OrderedDict[int, tuple]" = OrderedDict()    # image -> its texture classes to compute
            first_order = []                                        # (image, its values and bins in the ROI)
            for i, (image, type_name, kwargs) in enumerate(perturbed):
                base = by_image[roi][1].get(type_name, {})
                # the classes with a feature not yet found unstable
                wanted = tuple(c for c in classes if not base.get(c, frozenset()) <= flagged)
                if not wanted or same[i]:
                    continue
                old, new = ref_values[roi][i], sitk.GetArrayViewFromImage(image)[inside[roi]]
                if np.array_equal(old, new):
                    continue
                if (roi, i) not in ref_bins:
                    ref_bins[roi, i] = _bins(old, kwargs)
                bins = _bins(new, kwargs)
                changed = tuple(c for c in wanted if c != "firstorder") if not np.array_equal(bins, ref_bins[roi, i]) else ()
                if changed:
                    texture[i] = changed
                if "firstorder" in wanted:
                    first_order.append((i, new, bins))
            values: "OrderedDict[str, float]" = OrderedDict()
            # one batch for all of them (a batch costs more than a class of these few-level images), the
            # classes an image did not need left out of the comparison
            union = tuple(c for c in classes if any(c in t for t in texture.values()))
            for (i, needed), vector in zip(texture.items(), _features(fx, perturbed, texture, mask, bounding_box, union)):
                names = by_image[roi][0].get(perturbed[i][1], {})
                values.update((n, vector[n]) for c in needed for n in names.get(c, ()))
            for vector in _first_order(fx, perturbed, first_order, by_image[roi][0], mask, bounding_box):
                values.update(vector)
            recomputed[kind] = [perturbed[i][1] for i in texture]
            names = list(values)
            baseline = baselines[roi]
            a = np.array([baseline[n] for n in names], dtype=float)
            b = np.fromiter(values.values(), dtype=float, count=len(names))
            flags = np.flatnonzero(moved(a, b))
            for name, change in zip(np.asarray(names, dtype=object)[flags].tolist(),
                                    _relative_changes(a[flags], b[flags]).tolist()):
                changes.setdefault(name, OrderedDict())[kind] = change
            flagged.update(names[i] for i in flags)
    return out


def unsupported_reason(fx) -> str | None:
    settings = fx._extractor.settings
    used = [k for k in _UNSUPPORTED if settings.get(k)]
    return (f"not screened: the parameter file {fx.path.name} sets {', '.join(used)}, under which a perturbed "
            "image changes the ROI itself") if used else None


def screen_rois(rois, options, features: dict, patient: str | None = None, filtered: dict | None = None) -> dict:
    """The screen of a patient's ROIs against the extracted ``features`` (``<ROI>__<feature>`` -> value).

    ``filtered``: what :func:`pipeline.extract_rois` kept (``keep``) while extracting ``features``, the
    filtered images the features come from; ROIs without it are filtered again here (same images).
    Returns the record's ``stability`` entry: the perturbations and tolerance, the counts, and
    ``unstable``: feature column -> {perturbation: relative change} for every unstable feature.
    """
    from .pipeline import ROI_SEPARATOR, extractors

    t0 = time.perf_counter()
    ex = extractors(options)
    suffix = options.section_spec.roi_suffix
    filtered = filtered or {}
    not_screened = OrderedDict()
    results: dict = {}
    by_column: dict = {}
    for column, value in features.items():
        roi, _sep, name = column.partition(ROI_SEPARATOR)
        by_column.setdefault(roi, {})[name] = value
    baselines = {roi: by_column.get(f"{roi}{suffix}", {}) for roi in rois.masks}
    n_screened = 0
    for modality, masks in rois.masks_by_modality().items():
        fx = ex[modality]
        reason = unsupported_reason(fx)
        if reason:
            not_screened.update((roi, reason) for roi in masks)
            continue
        n_screened += sum(len(baselines[roi]) for roi in masks)
        groups = list({id(filtered[roi]): filtered[roi] for roi in masks if roi in filtered}.values())
        missing = OrderedDict((roi, m) for roi, m in masks.items() if roi not in filtered)
        if missing:
            groups += unperturbed_groups(fx, rois.image_for(next(iter(missing))), missing)
        for group in groups:
            try:
                results.update(screen_group(fx, group, {roi: baselines[roi] for roi in group["masks"]}, PERTURBATIONS))
            except (ValueError, RuntimeError, IndexError) as exc:
                raise ExtractionError(f"the stability screen failed on ROI {', '.join(group['masks'])}: {exc}",
                                      patient=patient) from exc
    unstable: "OrderedDict[str, dict]" = OrderedDict()
    recomputed = OrderedDict()
    for roi in rois.masks:
        if roi in results:
            changes, recomputed[roi] = results[roi]
            unstable.update((f"{roi}{suffix}{ROI_SEPARATOR}{name}", v) for name, v in changes.items())
    return {
        "schema": SCHEMA,
        "perturbations": {kind: _DESCRIPTIONS[kind] for kind in PERTURBATIONS},
        "tolerance": {"rtol": RTOL, "atol": ATOL,
                      "rule": "unstable when |a - b| > rtol * max(|a|, |b|) + atol under any perturbation"},
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
