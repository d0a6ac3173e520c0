"""pyradiomics feature extraction on one ROI, with settings from a YAML parameter file.

The expected number of features is worked out from the parameter file alone (image types x
feature classes), and every extraction is checked against it: a filter that silently yields
nothing (pyradiomics' LBP3D under SciPy >= 1.17) is an error that says why, never a short row.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import yaml

from .errors import ExtractionError, ROIError
from .fileio import canonical_json

PARAMETERS_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Parameters"
# config name -> (CT parameter file, dose parameter file)
CONFIGS = {
    "paper": ("ct_paper.yaml", "dose_paper.yaml"),
    "2d": ("ct_2d.yaml", "dose_2d.yaml"),
}


# What each filter needs beyond pyradiomics; without it pyradiomics logs a warning and yields nothing.
_FILTER_HINTS = {
    "LBP3D": "pyradiomics' LBP3D needs scipy < 1.17 and trimesh",
    "LBP2D": "pyradiomics' LBP2D needs scikit-image",
    "Wavelet": "pyradiomics' Wavelet needs PyWavelets",
}


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
        try:
            self._extractor = featureextractor.RadiomicsFeatureExtractor(dict(self.parameters))
        except Exception as exc:  # noqa: BLE001 - pyradiomics raises bare exceptions on bad settings
            raise ExtractionError(f"pyradiomics rejected the parameter file: {exc}", path=self.path) from exc
        self.expected_count = expected_feature_count(self.parameters)
        self.settings_hash = hashlib.sha256(canonical_json(self.parameters).encode()).hexdigest()[:16]

    @property
    def label(self) -> int:
        return int(self.parameters["setting"].get("label", 1))

    def extract(self, image: sitk.Image, mask: sitk.Image, roi: str | None = None,
                patient: str | None = None) -> dict:
        """Features of ``mask`` on ``image``: pyradiomics names -> float, diagnostics left out."""
        label = self.label
        arr = sitk.GetArrayViewFromImage(mask)
        if not (arr == label).any():
            raise ROIError(f"ROI {roi or ''} has no pixel with label {label}".replace("  ", " "),
                           patient=patient)
        if not np.isfinite(sitk.GetArrayViewFromImage(image)).all():
            raise ExtractionError(f"the image of ROI {roi} contains NaN or infinite values",
                                  patient=patient, hint="check the dose or CT file for corrupt voxels")
        try:
            result = self._extractor.execute(image, mask, label=label)
        except (ValueError, RuntimeError, IndexError) as exc:
            raise ExtractionError(f"pyradiomics failed on ROI {roi}: {exc}", patient=patient) from exc
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

    def _missing_image_types(self, features: dict) -> set:
        # pyradiomics prefixes: original_, wavelet-LLH_, lbp-3D-m1_, lbp-2D_ ...
        prefix = {"LBP3D": "lbp-3D", "LBP2D": "lbp-2D"}
        return {t for t in self.parameters["imageType"]
                if not any(k.startswith(prefix.get(t, t.lower())) for k in features)}
