"""An exact, faster route to pyradiomics' feature classes for one (filtered, cropped) image.

pyradiomics builds one object per feature class per image: each reads the image out of SimpleITK,
bins it, counts its grey levels and then computes every feature on its own, repeating shared terms
(means, percentiles, marginals) and looping in Python over grey levels (GLCM's p(x+-y) and MCC).
This engine bins once per image for all classes, computes each shared term once, and replaces the
grey-level loops by single numpy operations that add the same terms in the same order. Matrices
still come from pyradiomics' own C code (``radiomics.cMatrices``), and binning is pyradiomics'
``binImage``.

Where parity with pyradiomics is proven (Testing/Python/test_engine_parity.py: every feature of
every ROI, both bundled configurations, real and generated images, rtol 1e-9) the engine is used;
everything else goes to pyradiomics itself, class by class (``fallback_classes``): classes it does
not implement (shape, custom ones), settings it does not reproduce (voxel-based extraction, GLCM
weighting or an asymmetric GLCM, binCount), features it does not name (deprecated ones enabled by
name), and images where pyradiomics takes an edge path (a matrix without any entry).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from . import firstorder, glcm, texture

ENGINE_CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")

# Settings whose non-default values change what the classes compute in ways the engine does not
# reproduce; with any of them set, pyradiomics computes that image's features.
_UNSUPPORTED_SETTINGS = {"voxelBased": False, "weightingNorm": None, "symmetricalGLCM": True,
                         "binCount": None}

# Counters for the tests and the benchmark: how many class computations went each way.
stats = {"engine": 0, "fallback": 0}


def settings_supported(settings: dict) -> bool:
    """True when the engine reproduces pyradiomics under ``settings`` (see _UNSUPPORTED_SETTINGS)."""
    return all(settings.get(k, default) == default for k, default in _UNSUPPORTED_SETTINGS.items())


def _matrices():
    from radiomics import cMatrices
    return cMatrices


def compute_arrays(image_arrays: list, mask_array: np.ndarray, spacings: list, settings: dict, classes) -> list:
    """Engine values for ``classes`` on a batch of images (z, y, x arrays of one shape) seen through
    one boolean mask (an ROI's filtered images). One dict per image: class -> {feature -> value}
    for the classes computed here; a class missing from an image's dict is pyradiomics' to compute.
    """
    from radiomics import imageoperations

    wanted = [c for c in classes if c in ENGINE_CLASSES]
    out = [{} for _ in image_arrays]
    if not wanted or not settings_supported(settings):
        return out
    mask = np.asarray(mask_array, dtype=bool)
    cm = _matrices()
    binned, levels, counts, ngs = [], [], [], []
    for arr in image_arrays:
        b, _edges = imageoperations.binImage(arr, mask, **settings)
        gl, c = np.unique(b[mask], return_counts=True)
        binned.append(b)
        levels.append(gl)
        counts.append(c)
        ngs.append(int(np.max(gl)))

    def guarded(fn, *args):
        try:
            return fn(*args)
        except (RuntimeError, ValueError, IndexError):
            return None     # pyradiomics' class then runs and raises (or not) as it does on its own

    for cls in wanted:
        if cls == "firstorder":
            x = np.stack([arr[mask] for arr in image_arrays])
            values = guarded(firstorder.features, x, counts, spacings, settings.get("voxelArrayShift", 0))
            for b, v in enumerate(values or ()):
                out[b][cls] = v
        elif cls in ("glcm", "glrlm"):
            make, batch = (glcm.matrix, glcm.features) if cls == "glcm" else (texture.glrlm_matrix, texture.glrlm)
            mats = [guarded(make, binned[b], mask, levels[b], ngs[b], settings, cm)
                    for b in range(len(image_arrays))]
            ok = [b for b, m in enumerate(mats) if m is not None]
            # one ROI: the same angles survive in every image; batch those that agree with the first
            ok = [b for b in ok if mats[b].shape[3] == mats[ok[0]].shape[3]] if ok else []
            for group in _size_groups(ok, [mats[b].shape[1] for b in ok]):
                args = [[mats[b] for b in group], [levels[b] for b in group]]
                values = guarded(batch, *args, [ngs[b] for b in group]) if cls == "glcm" else guarded(batch, *args)
                for b, v in zip(group, values or ()):
                    out[b][cls] = v
        else:
            fn = getattr(texture, cls)
            for b in range(len(image_arrays)):
                v = guarded(fn, binned[b], mask, levels[b], ngs[b], settings, cm)
                if v is not None:
                    out[b][cls] = v
    return out


def _size_groups(members: list, sizes: list) -> list:
    """``members`` in groups of similar matrix size, so that zero-padding a group to its largest
    matrix costs little (padding leaves the values alone, but not the time)."""
    order = sorted(range(len(members)), key=lambda k: sizes[k])
    groups, current, lo = [], [], None
    for k in order:
        if current and sizes[k] > 1.25 * lo + 4:
            groups.append(current)
            current = []
        if not current:
            lo = sizes[k]
        current.append(members[k])
    if current:
        groups.append(current)
    return groups


def compute_features(image, mask, image_type_name: str, enabled_features: dict, settings: dict,
                     label: int = 1) -> "OrderedDict[str, float]":
    """pyradiomics' ``computeFeatures`` for one cropped image and mask (SimpleITK), same names, same
    order, same values: ``<image type>_<class>_<feature>`` -> value.

    ``enabled_features``: class -> list of names or None (all non-deprecated), as pyradiomics'
    ``RadiomicsFeatureExtractor.enabledFeatures``; shape classes are skipped, as pyradiomics does.
    """
    import SimpleITK as sitk

    image_array = sitk.GetArrayFromImage(image)
    mask_array = sitk.GetArrayFromImage(mask) == label
    return compute_batch([image_array], mask_array, [image.GetSpacing()], [image_type_name],
                         enabled_features, settings, lambda b: (image, mask))[0]


def compute_batch(image_arrays, mask_array, spacings, image_type_names, enabled_features, settings,
                  sitk_images) -> list:
    """:func:`compute_features` for a batch of images seen through one mask, given as arrays; one
    OrderedDict per image. ``sitk_images(b)`` gives image b's SimpleITK (image, mask) pair, which
    pyradiomics needs for a class the engine leaves to it."""
    from radiomics import getFeatureClasses

    classes = [c for c in enabled_features if not c.startswith("shape")]
    done = compute_arrays(image_arrays, mask_array, spacings, settings, classes)
    feature_classes = getFeatureClasses()
    vectors = []
    for b, type_name in enumerate(image_type_names):
        vector = OrderedDict()
        for cls in classes:
            names = enabled_features[cls]
            values = done[b].get(cls)
            if values is not None and names is not None and any(n not in values for n in names):
                values = None      # a feature the engine does not compute (deprecated, enabled by name)
            if values is None:
                stats["fallback"] += 1
                image, mask = sitk_images(b)
                instance = feature_classes[cls](image, mask, **settings)
                for name in names or ():
                    instance.enableFeatureByName(name)
                for name, value in instance.execute().items():
                    vector[f"{type_name}_{cls}_{name}"] = value
                continue
            stats["engine"] += 1
            for name in names if names is not None else _default_names(feature_classes[cls]):
                vector[f"{type_name}_{cls}_{name}"] = np.squeeze(values[name])
        vectors.append(vector)
    return vectors


_DEFAULT_NAMES: dict = {}


def _default_names(feature_class) -> list:
    """pyradiomics' order for 'all features': its getFeatureNames order, deprecated ones left out."""
    if feature_class not in _DEFAULT_NAMES:
        _DEFAULT_NAMES[feature_class] = [n for n, dep in feature_class.getFeatureNames().items() if not dep]
    return _DEFAULT_NAMES[feature_class]
