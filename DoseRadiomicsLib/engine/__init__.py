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


def compute_arrays(image_array: np.ndarray, mask_array: np.ndarray, spacing, settings: dict,
                   classes) -> dict:
    """Engine values for ``classes`` on one image given as arrays (z, y, x) and a boolean mask.

    Returns class name -> {feature name -> value} for the classes computed here; classes missing
    from the result must be computed by pyradiomics.
    """
    from radiomics import imageoperations

    wanted = [c for c in classes if c in ENGINE_CLASSES]
    if not wanted or not settings_supported(settings):
        return {}
    mask = np.asarray(mask_array, dtype=bool)
    out = {}
    need_texture = any(c != "firstorder" for c in wanted)
    binned, _edges = imageoperations.binImage(image_array, mask, **settings)
    grey_levels, counts = np.unique(binned[mask], return_counts=True)
    ng = int(np.max(grey_levels))
    cm = _matrices() if need_texture else None
    for cls in wanted:
        try:
            if cls == "firstorder":
                values = firstorder.features(image_array[mask], counts, spacing, settings.get("voxelArrayShift", 0))
            elif cls == "glcm":
                p = glcm.matrix(binned, mask, grey_levels, ng, settings, cm)
                values = None if p is None else glcm.features(p, grey_levels, ng)
            else:
                values = getattr(texture, cls)(binned, mask, grey_levels, ng, settings, cm)
        except (RuntimeError, ValueError, IndexError):
            values = None       # pyradiomics' class then runs and raises (or not) as it does on its own
        if values is not None:
            out[cls] = values
    return out


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
    return compute_from_arrays(image_array, mask_array, image.GetSpacing(), image_type_name,
                               enabled_features, settings, lambda: (image, mask))


def compute_from_arrays(image_array, mask_array, spacing, image_type_name, enabled_features, settings,
                        sitk_images) -> "OrderedDict[str, float]":
    """:func:`compute_features` on arrays; ``sitk_images()`` gives the SimpleITK (image, mask) pair
    pyradiomics needs for any class the engine leaves to it."""
    from radiomics import getFeatureClasses

    classes = [c for c in enabled_features if not c.startswith("shape")]
    done = compute_arrays(image_array, mask_array, spacing, settings, classes)
    feature_classes = getFeatureClasses()
    vector = OrderedDict()
    for cls in classes:
        names = enabled_features[cls]
        values = done.get(cls)
        if values is not None and names is not None and any(n not in values for n in names):
            values = None      # a feature the engine does not compute (deprecated, enabled by name)
        if values is None:
            stats["fallback"] += 1
            image, mask = sitk_images()
            instance = feature_classes[cls](image, mask, **settings)
            for name in names or ():
                instance.enableFeatureByName(name)
            for name, value in instance.execute().items():
                vector[f"{image_type_name}_{cls}_{name}"] = value
            continue
        stats["engine"] += 1
        if names is None:
            names = _default_names(feature_classes[cls])
        for name in names:
            vector[f"{image_type_name}_{cls}_{name}"] = np.squeeze(values[name])
    return vector


_DEFAULT_NAMES: dict = {}


def _default_names(feature_class) -> list:
    """pyradiomics' order for 'all features': its getFeatureNames order, deprecated ones left out."""
    if feature_class not in _DEFAULT_NAMES:
        _DEFAULT_NAMES[feature_class] = [n for n, dep in feature_class.getFeatureNames().items() if not dep]
    return _DEFAULT_NAMES[feature_class]
