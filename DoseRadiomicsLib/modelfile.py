"""The model file: plain, versioned, checksummed JSON (no pickle, no code from data).

Layout (``schema_version`` 1)::

    {
      "schema": "doseradiomics-model", "schema_version": 1, "created": ISO time,
      "models": {NAME: {                       # NAME in clinical, RM_GTV, DM_GTV, DM_50Gy, RDM, combined
          "features": [input names, in coefficient order],
          "sources": ["feature" | "clinical" | "model:RDM", ...],   # how each input is formed
          "min": [...], "max": [...],          # min-max normalisation (null for non-feature inputs)
          "coefficients": [...], "intercept": x, "intercept_only": bool,
          "roi": ..., "description": ..., "notes": [...]}},
      "model_order": [...],
      "clinical_coding": {variable: {kind, encoded, levels, reference, dummy_levels, impute, label}},
      "risk": {"model": "combined", "cutoff": c, "rule": ...},
      "extraction": {"settings_hash": h, "options": {ExtractionOptions fields} | null,
                     "fingerprint": {phantom_version, features: {<ROI>__<feature>: value},
                                     library_versions, seconds} | null},   # see fingerprint.py
      "cohort": {n, events, train: {n, events}, validation: {...}, split, ...},
      "cohort_table": [Table-1 rows], "selection": {ROI model: univariate p, LASSO lambdas, CV curve},
      "clinical_analysis": {univariate, multivariate, candidates, independent, imputed},
      "evaluation": {cohort: {model: {auc, ci, classification, roc, calibration, decision_curve}}},
      "comparisons": [DeLong tests], "survival": {cutoff, endpoints: {pfs|os: {cohort: KM...}}},
      "settings": {...}, "library_versions": {...}, "notes": [...], "ground_truth": {...} | null,
      "harmonisation": {ComBat per-centre location/scale, see harmonise.py}   # only with --harmonise
      "checksum": sha256 of the canonical JSON of everything else
    }

A model's probability is ``1 / (1 + exp(-(intercept + sum(coefficient_i * x_i))))`` where ``x_i`` is
``(value - min) / (max - min)`` for a "feature" input, the encoded clinical value for a "clinical"
input and the RDM linear predictor for "model:RDM".
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from pathlib import Path


from .errors import ModelFileError
from .fileio import atomic_write_text, canonical_json, jsonable

SCHEMA = "doseradiomics-model"
SCHEMA_VERSION = 1
MAX_BYTES = 20 * 1024 * 1024
MODEL_NAMES = ("clinical", "RM_GTV", "DM_GTV", "DM_50Gy", "RDM", "combined")
SOURCES = ("feature", "clinical", "model:RDM")
CODING_KINDS = ("continuous", "binary", "ordinal", "categorical")


def content_checksum(content: dict) -> str:
    """sha256 of the canonical JSON of ``content`` without its ``checksum`` field."""
    body = {k: v for k, v in content.items() if k != "checksum"}
    return "sha256:" + hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()


def save_model(trained_or_dict, path) -> dict:
    """Write a model file (atomically) from a TrainedModels or a model dict; returns the content."""
    content = trained_or_dict.to_dict() if hasattr(trained_or_dict, "to_dict") else dict(trained_or_dict)
    content = jsonable({k: v for k, v in content.items() if k not in ("checksum",)})
    content["schema"] = SCHEMA
    content["schema_version"] = SCHEMA_VERSION
    content.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    _validate(content, path)
    content["checksum"] = content_checksum(content)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(content, indent=1, sort_keys=True, allow_nan=False) + "\n")
    return content


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed in a model file")


def load_model(path) -> dict:
    """Read and strictly validate a model file; ModelFileError names the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError("model file not found", path=path,
                             hint="pass the model.json written by doseradiomics train")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ModelFileError(f"model file is {size / 1e6:.1f} MB, more than the {MAX_BYTES // 2**20} MB limit",
                             path=path, hint="this is not a DoseRadiomics model file")
    try:
        content = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(f"not valid JSON: {exc}", path=path,
                             hint="the file is damaged or is not a DoseRadiomics model file") from None
    except RecursionError:  # a hostile file nesting brackets thousands deep
        raise ModelFileError("not a model file: JSON nested too deeply", path=path,
                             hint="the file is damaged or is not a DoseRadiomics model file") from None
    try:
        return _check_loaded(content, path)
    except RecursionError:
        raise ModelFileError("not a model file: JSON nested too deeply", path=path,
                             hint="the file is damaged or is not a DoseRadiomics model file") from None


def _check_loaded(content, path) -> dict:
    if not isinstance(content, dict):
        raise ModelFileError("the top level is not a JSON object", path=path,
                             hint="this is not a DoseRadiomics model file")
    if content.get("schema") != SCHEMA:
        raise ModelFileError(f"schema is {content.get('schema')!r}, not {SCHEMA!r}", path=path,
                             hint="this is not a DoseRadiomics model file")
    version = content.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"invalid schema_version {version!r}", path=path,
                             hint="the file is damaged or was not written by DoseRadiomics")
    if version > SCHEMA_VERSION:
        raise ModelFileError(f"the model file has schema version {version}; this DoseRadiomics reads "
                             f"version {SCHEMA_VERSION} only", path=path,
                             hint="upgrade DoseRadiomics to read models written by a newer version")
    checksum = content.get("checksum")
    if not isinstance(checksum, str):
        raise ModelFileError("the model file has no checksum", path=path,
                             hint="write model files with doseradiomics train")
    if checksum != content_checksum(content):
        raise ModelFileError("checksum mismatch: the model file was modified after it was written", path=path,
                             hint="do not edit model files by hand; retrain or restore the original")
    _validate(content, path)
    return content


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validate(content: dict, path) -> None:
    def fail(problem):
        raise ModelFileError(problem, path=path, hint="the model file is damaged or was not written by "
                                                       "DoseRadiomics")

    for key, kind in (("models", dict), ("clinical_coding", dict), ("risk", dict), ("extraction", dict),
                      ("cohort", dict), ("library_versions", dict)):
        if not isinstance(content.get(key), kind):
            fail(f"missing or invalid '{key}' (expected a JSON {'object' if kind is dict else 'list'})")
    cutoff = content["risk"].get("cutoff")
    if not _finite(cutoff) or not 0 <= cutoff <= 1:
        fail(f"risk cut-off {cutoff!r} is not a probability")
    sh = content["extraction"].get("settings_hash")
    if sh is not None and not isinstance(sh, str):
        fail("extraction settings_hash is not text")
    opts = content["extraction"].get("options")
    if opts is not None and not isinstance(opts, dict):
        fail("extraction options are not a JSON object")
    fingerprint = content["extraction"].get("fingerprint")
    if fingerprint is not None:
        if not isinstance(fingerprint, dict) or not isinstance(fingerprint.get("features"), dict) \
                or not isinstance(fingerprint.get("library_versions", {}), dict):
            fail("the extraction fingerprint is not an object with 'features' and 'library_versions'")
        if not all(v is None or _finite(v) for v in fingerprint["features"].values()):
            fail("the extraction fingerprint holds a feature value that is not a finite number or null")
        pv = fingerprint.get("phantom_version")
        if not isinstance(pv, int) or isinstance(pv, bool):
            fail(f"the extraction fingerprint's phantom_version {pv!r} is not an integer")

    coding = content["clinical_coding"]
    clinical_inputs = set()
    for variable, spec in coding.items():
        if not isinstance(spec, dict) or spec.get("kind") not in CODING_KINDS:
            fail(f"clinical coding of {variable!r} has no valid kind ({', '.join(CODING_KINDS)})")
        enc = spec.get("encoded")
        if spec["kind"] == "categorical":
            levels, dummies = spec.get("levels"), spec.get("dummy_levels")
            if not (isinstance(enc, list) and isinstance(levels, list) and isinstance(dummies, list)
                    and len(enc) == len(dummies) and all(isinstance(x, str) for x in enc + levels + dummies)
                    and set(dummies) <= set(levels)):
                fail(f"clinical coding of {variable!r}: encoded names, levels and dummy levels inconsistent")
            clinical_inputs.update(enc)
        else:
            if not isinstance(enc, str):
                fail(f"clinical coding of {variable!r}: 'encoded' is not a name")
            if not _finite(spec.get("impute")):
                fail(f"clinical coding of {variable!r}: imputation value is not a finite number")
            clinical_inputs.add(enc)

    models = content["models"]
    for name in MODEL_NAMES:
        if not isinstance(models.get(name), dict):
            fail(f"model {name!r} is missing")
    for name, m in models.items():
        if not isinstance(m, dict):
            fail(f"model {name!r} is not a JSON object")
        feats, sources = m.get("features"), m.get("sources")
        mins, maxs, coefs = m.get("min"), m.get("max"), m.get("coefficients")
        if not all(isinstance(v, list) for v in (feats, sources, mins, maxs, coefs)):
            fail(f"model {name}: features, sources, min, max and coefficients must be lists")
        if not len(feats) == len(sources) == len(mins) == len(maxs) == len(coefs):
            fail(f"model {name}: {len(feats)} features but {len(sources)} sources, {len(mins)} min, "
                 f"{len(maxs)} max and {len(coefs)} coefficients")
        if not all(isinstance(f, str) for f in feats) or len(set(feats)) != len(feats):
            fail(f"model {name}: feature names must be unique text")
        if not all(_finite(c) for c in coefs) or not _finite(m.get("intercept")):
            fail(f"model {name}: coefficients and intercept must be finite numbers")
        for f, s, lo, hi in zip(feats, sources, mins, maxs):
            if s not in SOURCES:
                fail(f"model {name}: input {f!r} has unknown source {s!r}")
            if s == "feature":
                if not (_finite(lo) and _finite(hi) and hi > lo):
                    fail(f"model {name}: feature {f!r} has an invalid normalisation range ({lo!r}, {hi!r})")
            elif s == "clinical" and f not in clinical_inputs:
                fail(f"model {name}: clinical input {f!r} has no coding in clinical_coding")
            elif s == "model:RDM" and name != "combined":
                fail(f"model {name}: only the combined model takes the RDM score")
    if content.get("harmonisation") is not None:
        _validate_harmonisation(content["harmonisation"], fail)


def _validate_harmonisation(h, fail) -> None:
    """The ComBat block (train --harmonise combat): plain numbers, one per feature and centre."""
    if not isinstance(h, dict) or h.get("method") != "combat":
        fail("harmonisation is not a ComBat block")
    feats = h.get("features")
    if not isinstance(feats, list) or not all(isinstance(f, str) for f in feats):
        fail("harmonisation features must be a list of names")
    if h.get("unknown_centre") not in ("refuse", "unadjusted"):
        fail(f"harmonisation unknown-centre policy {h.get('unknown_centre')!r} is not refuse/unadjusted")
    for key in ("location", "sigma"):
        v = h.get(key)
        if not isinstance(v, list) or len(v) != len(feats) or not all(_finite(x) for x in v):
            fail(f"harmonisation {key} must be {len(feats)} finite numbers")
    if not all(x > 0 for x in h["sigma"]):
        fail("harmonisation sigma must be positive")
    centres = h.get("centres")
    if not isinstance(centres, list) or not centres:
        fail("harmonisation has no centres")
    for key in ("gamma_star", "delta_star_sq"):
        block = h.get(key)
        if not isinstance(block, dict) or sorted(block) != sorted(str(c) for c in centres):
            fail(f"harmonisation {key} must have one entry per centre")
        for c, v in block.items():
            if not isinstance(v, list) or len(v) != len(feats) or not all(_finite(x) for x in v):
                fail(f"harmonisation {key} of centre {c!r} must be {len(feats)} finite numbers")
            if key == "delta_star_sq" and not all(x > 0 for x in v):
                fail(f"harmonisation delta_star_sq of centre {c!r} must be positive")
