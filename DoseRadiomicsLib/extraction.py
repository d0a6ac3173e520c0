"""pyradiomics feature extraction on one ROI, with settings from a YAML parameter file.

The expected number of features is worked out from the parameter file alone (image types x
feature classes), and every extraction is checked against it: a filter that silently yields
nothing (e.g. pyradiomics' LBP3D without trimesh) is an error that says why, never a short row.

Several ROIs on one image (the dose map's GTV-heat and isodose regions) go through
:meth:`FeatureExtractor.extract_many`, which runs pyradiomics' own steps (mask check, pre-crop,
shape, filters, per-image crop, feature classes). A filtered image is computed once for several
ROIs only where pyradiomics would filter them identically: without ``preCrop``, the whole slice
for all ROIs; with ``preCrop: true`` (the bundled configurations) each ROI is filtered on its own
bounding box + ``padDistance``, and ROIs share filters only when their boxes coincide. GTV-heat and
50Gy-heat have different boxes in practice, so with the bundled configurations every ROI is
filtered on its own (the dose slice twice per patient); sharing across different boxes would
change the feature values.

The feature classes (first order and the five texture classes) are computed by the exact engine
in :mod:`DoseRadiomicsLib.engine` (pyradiomics' definitions, matrices from its C code, an ROI's
filtered images in one batch), which equals pyradiomics to rtol 1e-9 on every feature
(Testing/Python/test_engine_parity.py). Shape, filters and anything the engine does not reproduce
stay with pyradiomics; ``DOSERADIOMICS_ENGINE=pyradiomics`` uses pyradiomics for everything. The
settings hash and the feature names are the same either way.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import yaml

from collections import OrderedDict
from itertools import chain

from .errors import ExtractionError, ROIError
from .fileio import canonical_json
from .limits import check_filtered_grey_levels, check_grey_levels, filtered_grey_levels_checked

PARAMETERS_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Parameters"
# config name -> (CT parameter file, dose parameter file)
CONFIGS = {
    "paper": ("ct_paper.yaml", "dose_paper.yaml"),
    "2d": ("ct_2d.yaml", "dose_2d.yaml"),
}


# What each filter needs beyond pyradiomics; without it pyradiomics logs a warning and yields nothing.
_FILTER_HINTS = {
    "LBP3D": "pyradiomics' LBP3D needs trimesh and scipy.special.sph_harm (or sph_harm_y)",
    "LBP2D": "pyradiomics' LBP2D needs scikit-image",
    "Wavelet": "pyradiomics' Wavelet needs PyWavelets",
}


# Settings under which extract_many cannot share a filtered image; it then calls pyradiomics per ROI.
_NOT_SHAREABLE = ("normalize", "resampledPixelSpacing", "resegmentRange", "additionalInfo", "voxelBased")


def _cache_feature_names() -> None:
    """Make pyradiomics look up each feature class's feature names once per process, not per instance.

    pyradiomics enumerates a class's ``get*FeatureValue`` methods with ``inspect.getmembers`` every
    time it builds a feature-class object: 7 classes x 17 images x 3 ROIs per patient, about 3 % of
    the extraction. The names are fixed by the class, so caching them changes no value.
    """
    from radiomics import base

    cls_base = base.RadiomicsFeaturesBase
    if getattr(cls_base, "_doseradiomics_names_cached", False):
        return
    lookup = cls_base.getFeatureNames.__func__
    cache: dict = {}

    def getFeatureNames(cls):
        if cls not in cache:
            cache[cls] = lookup(cls)
        return dict(cache[cls])   # a copy: callers may not change the cached one

    cls_base.getFeatureNames = classmethod(getFeatureNames)
    cls_base._doseradiomics_names_cached = True


def _cache_icosphere() -> None:
    """Make pyradiomics' LBP3D build its sampling sphere once per process, not once per image.

    ``getLBP3DImage`` imports ``trimesh.creation.icosphere`` on every call and builds the same sphere
    (42 vertices) each time, about a third of the filter's time on a one-slice ROI. It only reads the
    vertices (copied into a numpy array), so handing back one mesh per (subdivisions, radius) changes
    no value.
    """
    try:
        import trimesh.creation as creation
    except ImportError:      # LBP3D is then refused (environment.check_lbp3d_support)
        return
    if getattr(creation.icosphere, "_doseradiomics_cached", False):
        return
    build = creation.icosphere
    cache: dict = {}

    def icosphere(*args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = build(*args, **kwargs)
        return cache[key]

    icosphere._doseradiomics_cached = True
    creation.icosphere = icosphere


def parameter_file(config: str, modality: str) -> Path:
    """The bundled parameter file of ``config`` ("paper" or "2d") for ``modality`` ("CT" or "dose")."""
    if config not in CONFIGS:
        raise ExtractionError(f"unknown configuration '{config}'", hint=f"choose one of {sorted(CONFIGS)}")
    name = CONFIGS[config][0 if modality == "CT" else 1]
    path = PARAMETERS_DIR / name
    if not path.is_file():
        raise ExtractionError(f"parameter file {path} is missing from the installation")
    return path


def load_parameters(path) -> dict:
    """Read a pyradiomics YAML parameter file into a dict with imageType, featureClass, setting."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        params = yaml.safe_load(text) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ExtractionError(f"cannot read the parameter file: {exc}", path=path) from exc
    if not isinstance(params, dict):
        raise ExtractionError("a parameter file must be a YAML mapping", path=path)
    unknown = set(params) - {"imageType", "featureClass", "setting", "voxelSetting"}
    if unknown:
        raise ExtractionError(f"unknown top-level keys {sorted(unknown)}", path=path,
                              hint="pyradiomics parameter files have imageType, featureClass and setting")
    params.setdefault("imageType", {"Original": {}})
    params.setdefault("setting", {})
    return params


def _derived_image_count(image_type: str, custom: dict, settings: dict) -> int:
    """How many images pyradiomics derives from one enabled image type."""
    merged = {**settings, **(custom or {})}
    force2d = bool(merged.get("force2D", False))
    if image_type == "Wavelet":
        dims = 2 if force2d else 3
        levels = int(merged.get("level", 1))
        return levels * (2 ** dims - 1) + 1
    if image_type == "LoG":
        return len(merged.get("sigma", []))
    if image_type == "LBP3D":
        return int(merged.get("lbp3DLevels", 2)) + 1
    return 1


def expected_feature_names(params: dict) -> dict:
    """Feature class -> list of feature names (non-deprecated) that the parameter file enables."""
    import radiomics

    classes = radiomics.getFeatureClasses()
    enabled = params.get("featureClass") or {name: None for name in classes}
    out = {}
    for cls, names in enabled.items():
        if cls not in classes:
            raise ExtractionError(f"unknown feature class '{cls}'", hint=f"pyradiomics has {sorted(classes)}")
        available = [n for n, deprecated in classes[cls].getFeatureNames().items() if not deprecated]
        out[cls] = list(names) if names else available
    return out


def expected_feature_count(params: dict) -> int:
    """Number of features the parameter file must yield: shape once, the others per derived image."""
    names = expected_feature_names(params)
    settings = params.get("setting", {}) or {}
    n_images = sum(_derived_image_count(t, c or {}, settings) for t, c in params["imageType"].items())
    shape = sum(len(v) for k, v in names.items() if k.startswith("shape"))
    per_image = sum(len(v) for k, v in names.items() if not k.startswith("shape"))
    return shape + n_images * per_image


class FeatureExtractor:
    """pyradiomics on one ROI of a one-slice image, configured by a YAML parameter file.

    >>> fx = FeatureExtractor(parameter_file("paper", "CT"))
    >>> features = fx.extract(ct_slice, gtv_mask, roi="GTV")   # 1,595 features
    """

    def __init__(self, params_path):
        from .environment import check_lbp2d_support, check_lbp3d_support, check_pyradiomics

        check_pyradiomics()
        import radiomics
        from radiomics import featureextractor

        self.path = Path(params_path)
        self.parameters = load_parameters(self.path)
        if "LBP3D" in self.parameters["imageType"]:
            check_lbp3d_support()
        if "LBP2D" in self.parameters["imageType"]:
            check_lbp2d_support()
        # pyradiomics logs every filter and feature class at INFO/WARNING; keep the console for ours.
        radiomics.setVerbosity(logging.ERROR)
        logging.getLogger("radiomics").setLevel(logging.ERROR)
        _cache_feature_names()
        if "LBP3D" in self.parameters["imageType"]:
            _cache_icosphere()
        try:
            self._extractor = featureextractor.RadiomicsFeatureExtractor(dict(self.parameters))
        except Exception as exc:  # noqa: BLE001 - pyradiomics raises bare exceptions on bad settings
            raise ExtractionError(f"pyradiomics rejected the parameter file: {exc}", path=self.path) from exc
        self.expected_count = expected_feature_count(self.parameters)
        # The exact engine (DoseRadiomicsLib/engine) for the feature classes; DOSERADIOMICS_ENGINE=
        # pyradiomics turns it off (pyradiomics' own computeFeatures, the reference it is tested on).
        from . import engine
        self.use_engine = (os.environ.get("DOSERADIOMICS_ENGINE", "fast") != "pyradiomics"
                           and engine.settings_supported(self._extractor.settings))
        self.settings_hash = hashlib.sha256(canonical_json(self.parameters).encode()).hexdigest()[:16]

    @property
    def label(self) -> int:
        return int(self.parameters["setting"].get("label", 1))

    def _check_inputs(self, image: sitk.Image, mask: sitk.Image, roi, patient) -> None:
        arr = sitk.GetArrayViewFromImage(mask)
        if not (arr == self.label).any():
            raise ROIError(f"ROI {roi or ''} has no pixel with label {self.label}".replace("  ", " "),
                           patient=patient)
        if not np.isfinite(sitk.GetArrayViewFromImage(image)).all():
            raise ExtractionError(f"the image of ROI {roi} contains NaN or infinite values",
                                  patient=patient, hint="check the dose or CT file for corrupt voxels")
        from .limits import check_grey_levels
        check_grey_levels(sitk.GetArrayViewFromImage(image)[arr == self.label],
                          self.parameters["setting"].get("binWidth"), roi, "values", patient)

    def _finish(self, result, roi, patient) -> dict:
        """pyradiomics' output without diagnostics, as floats, its count checked."""
        features = {k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")}
        if len(features) != self.expected_count:
            missing = sorted(self._missing_image_types(features))
            raise ExtractionError(
                f"pyradiomics returned {len(features)} features for ROI {roi}, the parameter file "
                f"{self.path.name} asks for {self.expected_count}"
                + (f"; no features from {missing}" if missing else ""),
                patient=patient, hint=_FILTER_HINTS.get(next(iter(missing), ""),
                                                        "a pyradiomics filter failed silently"))
        return features

    def extract(self, image: sitk.Image, mask: sitk.Image, roi: str | None = None,
                patient: str | None = None, keep: dict | None = None) -> dict:
        """Features of ``mask`` on ``image``: pyradiomics names -> float, diagnostics left out.
        ``keep``: see :meth:`extract_many`."""
        self._check_inputs(image, mask, roi, patient)
        try:
            if self.use_engine and self.shares_filtered_images:
                result = self._execute_shared(image, OrderedDict([(roi, mask)]), keep)[roi]
            else:
                with filtered_grey_levels_checked(self._extractor, roi, patient):
                    result = self._extractor.execute(image, mask, label=self.label)
        except (ValueError, RuntimeError, IndexError) as exc:
            raise ExtractionError(f"pyradiomics failed on ROI {roi}: {exc}", patient=patient) from exc
        return self._finish(result, roi, patient)

    @property
    def shares_filtered_images(self) -> bool:
        """False when a setting (resampling, normalisation, ...) makes extract_many run per ROI."""
        settings = self._extractor.settings
        return not any(settings.get(k) for k in _NOT_SHAREABLE)

    def extract_many(self, image: sitk.Image, masks, patient: str | None = None,
                     keep: dict | None = None) -> "OrderedDict[str, dict]":
        """Features of several ROIs on one image: ROI name -> (pyradiomics name -> float).

        Each ROI gets exactly the features :meth:`extract` gives it (pyradiomics called per ROI);
        filtered images are computed once for all ROIs that pyradiomics would filter identically
        (see the module docstring). ``keep``, a dict, receives for each ROI the group of ROIs it was
        filtered with: {"image", "filter_mask", "masks": ROI -> (mask, bounding box), "filtered":
        [(filtered image, image type name, kwargs)]}, the images the features were computed from (the
        stability screen filters perturbed copies of "image" and compares); ROIs that pyradiomics'
        own ``execute`` extracts (settings extract_many cannot share under) get no entry.
        """
        masks = OrderedDict(masks)
        for roi, mask in masks.items():
            self._check_inputs(image, mask, roi, patient)
        if len(masks) == 1 or not self.shares_filtered_images:
            return OrderedDict((roi, self.extract(image, m, roi=roi, patient=patient, keep=keep))
                               for roi, m in masks.items())
        try:
            raw = self._execute_shared(image, masks, keep)
        except (ValueError, RuntimeError, IndexError) as exc:
            raise ExtractionError(f"pyradiomics failed on ROIs {', '.join(masks)}: {exc}", patient=patient) from exc
        return OrderedDict((roi, self._finish(raw[roi], roi, patient)) for roi in masks)

    def _execute_shared(self, image: sitk.Image, masks: "OrderedDict[str, sitk.Image]", keep: dict | None = None) -> dict:
        """pyradiomics' ``execute`` (segment-based, no resampling/normalising/resegmenting) for several
        masks on one image, step for step, with each filter run once per group of ROIs whose
        (pre-cropped) input image is the same."""
        from radiomics import featureextractor, imageoperations as imops

        ex = self._extractor
        settings = ex.settings.copy()
        settings["label"] = label = self.label
        if featureextractor.geometryTolerance != settings.get("geometryTolerance"):
            ex._setTolerance()
        pre_crop = bool(settings.get("preCrop", False))

        # pyradiomics' loadImage: mask cast/check, then (preCrop) crop to bounding box + padDistance
        groups: "OrderedDict[tuple, list]" = OrderedDict()
        for roi, mask in masks.items():
            mask = imops.getMask(mask, **settings)
            if pre_crop:
                bb, corrected = imops.checkMask(image, mask, **settings)
                if corrected is not None:
                    mask = corrected
                if bb is None:
                    raise ValueError("Mask checks failed during pre-crop")
                key = _crop_box(mask, bb, settings.get("padDistance", 0))
            else:
                bb, key = None, ()
            groups.setdefault(key, []).append((roi, mask, bb))

        out = {}
        for members in groups.values():
            prepared = []
            group_image = image
            for i, (roi, mask, bb) in enumerate(members):
                if pre_crop:
                    cropped_image, mask = imops.cropToTumorMask(image, mask, bb, **settings)
                    if i == 0:
                        group_image = cropped_image     # same box for every member: same crop
                bounding_box, corrected = imops.checkMask(group_image, mask, **settings)
                if corrected is not None:
                    mask = corrected
                vector = (_shape_features(ex, group_image, mask, bounding_box, settings) if self.use_engine
                          else OrderedDict(ex.computeShape(group_image, mask, bounding_box, **settings)))
                prepared.append((roi, mask, bounding_box, vector))
            # Filters that look at the mask (LBP3D computes only on ROI voxels) get the union of the
            # group's masks: each voxel's filtered value depends on the image around it, not on the mask.
            filter_mask = prepared[0][1] if len(prepared) == 1 else _union_mask([p[1] for p in prepared], label)
            generators = []
            for image_type, custom in ex.enabledImagetypes.items():
                args = settings.copy()
                args.update(custom)
                generators = chain(generators, getattr(imops, f"get{image_type}Image")(group_image, filter_mask, **args))
            filtered_images = list(generators)
            if keep is not None:
                group = {"image": group_image, "filter_mask": filter_mask, "filtered": filtered_images,
                         "masks": OrderedDict((roi, (mask, bb)) for roi, mask, bb, _v in prepared)}
                keep.update((roi, group) for roi in group["masks"])
            if not self.use_engine:
                for filtered, type_name, kwargs in filtered_images:
                    for roi, mask, bounding_box, vector in prepared:
                        cropped, cropped_mask = imops.cropToTumorMask(filtered, mask, bounding_box, padDistance=0)
                        check_filtered_grey_levels(cropped, cropped_mask, type_name, kwargs, roi)
                        vector.update(ex.computeFeatures(cropped, cropped_mask, type_name, **kwargs))
            else:
                # the engine computes an ROI's filtered images together (one batch per settings)
                for roi, mask, bounding_box, vector in prepared:
                    for features in self._engine_features(filtered_images, mask, bounding_box, roi):
                        vector.update(features)
            for roi, _mask, _bb, vector in prepared:
                out[roi] = vector
        return out

    def compute_features(self, image: sitk.Image, mask: sitk.Image, image_type_name: str, **kwargs) -> "OrderedDict":
        """pyradiomics' ``computeFeatures`` on one cropped (filtered) image and its mask: the same
        names, order and values (``<image type>_<class>_<feature>``), from the engine where its
        parity is proven and from pyradiomics otherwise (:mod:`DoseRadiomicsLib.engine`).
        ``kwargs``: the image type's settings, as pyradiomics' filters yield them (default: this
        parameter file's settings). Shape classes are not computed here, as in pyradiomics."""
        settings = kwargs or self._extractor.settings.copy()
        if not self.use_engine:
            return self._extractor.computeFeatures(image, mask, image_type_name, **settings)
        from . import engine
        return engine.compute_features(image, mask, image_type_name, self._extractor.enabledFeatures,
                                       settings, label=int(settings.get("label", self.label)))

    def _engine_features(self, filtered_images: list, mask, bounding_box, roi=None, classes=None) -> list:
        """The engine on an ROI's filtered images, each cut to ``bounding_box`` as arrays (the crop of
        pyradiomics' cropToTumorMask(padDistance=0) without two SimpleITK images per image and ROI),
        batched per distinct settings; one OrderedDict per image, in the images' order. ``classes``:
        only these feature classes (default: all the parameter file enables)."""
        from . import engine
        from radiomics import imageoperations as imops

        bb = np.asarray(bounding_box)
        box = tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(bb[0::2][::-1], bb[1::2][::-1]))
        mask_view = sitk.GetArrayViewFromImage(mask)[box]
        batches: "OrderedDict[str, list]" = OrderedDict()
        for index, (_filtered, _name, kwargs) in enumerate(filtered_images):
            batches.setdefault(repr(sorted(kwargs.items())), []).append(index)
        out = [None] * len(filtered_images)
        enabled = self._extractor.enabledFeatures
        if classes is not None:
            enabled = OrderedDict((c, v) for c, v in enabled.items() if c in classes)
        for members in batches.values():
            kwargs = filtered_images[members[0]][2]
            mask_array = mask_view == int(kwargs.get("label", self.label))

            def sitk_images(b, members=members):       # for classes the engine leaves to pyradiomics
                return imops.cropToTumorMask(filtered_images[members[b]][0], mask, bounding_box, padDistance=0)
            arrays = [sitk.GetArrayViewFromImage(filtered_images[i][0])[box] for i in members]
            if not kwargs.get("binCount"):   # limits.check_filtered_grey_levels, on the arrays the engine uses
                for i, a in zip(members, arrays):
                    if filtered_images[i][1] != "original":
                        check_grey_levels(a[mask_array], float(kwargs.get("binWidth", 25)), roi,
                                          f"{filtered_images[i][1]} image values")
            results = engine.compute_batch(arrays, mask_array, [filtered_images[i][0].GetSpacing() for i in members],
                                           [filtered_images[i][1] for i in members], enabled, kwargs, sitk_images)
            for i, r in zip(members, results):
                out[i] = r
        return out

    def _missing_image_types(self, features: dict) -> set:
        # pyradiomics prefixes: original_, wavelet-LLH_, lbp-3D-m1_, lbp-2D_ ...
        prefix = {"LBP3D": "lbp-3D", "LBP2D": "lbp-2D"}
        return {t for t in self.parameters["imageType"]
                if not any(k.startswith(prefix.get(t, t.lower())) for k in features)}


#: The last shape computation of this process: (key, features). The GTV and GTV-heat are the same
#: pixels on the same grid (the CT's and the dose's ROI), and pyradiomics' shape classes read only the
#: mask, the spacing and the settings in the key, so the second is the first's values (its C code's
#: all-pairs diameters are the costliest part of a slice's shape).
_last_shape: list = [None, None]
_SHAPE_SETTINGS = ("label", "voxelBased", "force2D", "force2Ddimension")


def _shape_features(ex, image: sitk.Image, mask: sitk.Image, bounding_box, settings: dict) -> "OrderedDict":
    """``ex.computeShape(image, mask, bounding_box, **settings)``, reused when the previous call had
    the same mask pixels, bounding box, spacing, shape settings and enabled shape features."""
    enabled = {c: ex.enabledFeatures[c] for c in ("shape", "shape2D") if c in ex.enabledFeatures}
    key = (sitk.GetArrayViewFromImage(mask).tobytes(), mask.GetPixelID(), mask.GetSize(), image.GetSpacing(),
           mask.GetDimension(), tuple(int(v) for v in bounding_box),
           repr([(k, settings.get(k)) for k in _SHAPE_SETTINGS]), repr(sorted(enabled.items())))
    if _last_shape[0] != key:
        _last_shape[:] = [key, OrderedDict(ex.computeShape(image, mask, bounding_box, **settings))]
    return OrderedDict(_last_shape[1])


def _crop_box(mask: sitk.Image, bounding_box, pad: int) -> tuple:
    """The (lower, upper) crop sizes pyradiomics' cropToTumorMask uses for ``bounding_box`` + ``pad``."""
    size = np.array(mask.GetSize())
    bb = np.asarray(bounding_box)
    lower = np.maximum(bb[0::2] - pad, 0)
    upper = np.maximum(size - bb[1::2] - pad - 1, 0)
    return tuple(int(v) for v in lower) + tuple(int(v) for v in upper)


def _union_mask(masks: list, label: int) -> sitk.Image:
    """A UInt32 mask holding ``label`` where any of ``masks`` (same grid) does."""
    union = np.zeros(sitk.GetArrayViewFromImage(masks[0]).shape, bool)
    for m in masks:
        union |= sitk.GetArrayViewFromImage(m) == label
    out = sitk.GetImageFromArray((union * label).astype(np.uint32))
    out.CopyInformation(masks[0])
    return out
