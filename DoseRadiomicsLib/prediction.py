"""Apply a model file to one new patient: each model's probability and the risk group.

Before anything is predicted, :func:`check_compatibility` recomputes the model's reference
features (its compatibility fingerprint, :mod:`fingerprint`) and refuses a model that this
installation's libraries would not reproduce; ``predict`` (both routes) and the Slicer module do.

:func:`predict_from_features` is what the Slicer module and the ``predict`` command call. Nothing is
imputed at prediction time: a model whose inputs are missing is not computed, its missing inputs
are listed in ``missing``, and when the combined model cannot be computed (typically because a
clinical predictor such as Hb or T stage was not given) there is no risk group
(``risk_group`` is None). The feature models (RM_GTV, DM_GTV, DM_50Gy, RDM) need only the features.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path


from .errors import InputError, ModelFileError
from .modelfile import MODEL_NAMES, load_model
from .training import RDM_SCORE, encode_clinical_value

FEATURE_MODELS = ("RM_GTV", "DM_GTV", "DM_50Gy", "RDM")
# a normalised value this far outside the training range [0, 1] earns a warning
RANGE_MARGIN = 0.5
#: Largest |log-odds| a model may give (P within 4e-18 of 0 or 1): beyond it, or not finite, the
#: model or the features are broken, and the probability would print as 0.000/1.000 or nan.
MAX_ABS_LOGIT = 40.0


def _checked_logit(name: str, z: float) -> float:
    """``z`` if it is a plausible log-odds; a NaN or extreme one is an error, never a risk group."""
    if not math.isfinite(z) or abs(z) > MAX_ABS_LOGIT:
        raise ModelFileError(f"model {name} gives a log-odds of {z:.6g} for this patient (a probability that is "
                             f"not a number or indistinguishable from 0 or 1, beyond +-{MAX_ABS_LOGIT:g})",
                             hint="the model file's coefficients or the patient's features are implausible: "
                                  "check both; no probability or risk group is given")
    return z


def _logistic(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _number(value):
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _encode_clinical(model: dict, clinical: Mapping | None) -> tuple[dict, list]:
    """Encoded clinical inputs available from ``clinical`` and the variables that are missing."""
    coding = model["clinical_coding"]
    needed = {f for name in ("clinical", "combined") for f, s in
              zip(model["models"][name]["features"], model["models"][name]["sources"]) if s == "clinical"}
    given = {str(k).strip().lower(): v for k, v in (clinical or {}).items()}
    encoded, missing = {}, []
    for variable, spec in coding.items():
        names = spec["encoded"] if isinstance(spec["encoded"], list) else [spec["encoded"]]
        if not needed.intersection(names):
            continue
        try:
            enc = encode_clinical_value(variable, given.get(variable), spec)
        except ValueError as exc:
            raise InputError(f"clinical value: {exc}",
                             hint=f"give {variable} as in the training manifest") from None
        if enc is None:
            missing.append(variable)
        else:
            encoded.update(enc)
    return encoded, missing


def predict_from_features(model: dict, features: Mapping[str, float], clinical: Mapping | None = None,
                          centre=None) -> dict:
    """Probabilities of resistance from one patient's features (``<ROI>__<feature>`` -> value).

    ``model`` is a dict from :func:`modelfile.load_model`; ``clinical`` maps the manifest's
    clinical column names (``hb``, ``t_stage`` ...) to raw values as in the training manifest.
    Returns ``dict(probabilities={model: p} for the models that could be computed,
    risk_group="high"|"low"|None, cutoff, combined_probability (or None), rdm_score (RDM log-odds
    or None), missing=[input names / clinical variables not given], warnings=[...])``.
    The risk group is "high" when the combined probability is >= the cut-off. A model trained with
    ComBat harmonisation needs the patient's ``centre`` (see :func:`harmonise.harmonise_features`).
    """
    from .harmonise import harmonise_features
    check_section(model, features)
    models = model["models"]
    features, warnings = harmonise_features(model.get("harmonisation"), features, centre)
    probabilities, linear, missing = {}, {}, []
    outside = []
    for name in FEATURE_MODELS:
        m = models[name]
        z = m["intercept"]
        absent = []
        for f, lo, hi, c in zip(m["features"], m["min"], m["max"], m["coefficients"]):
            x = _number(features.get(f))
            if x is None:
                absent.append(f)
                continue
            xn = (x - lo) / (hi - lo)
            if not -RANGE_MARGIN <= xn <= 1 + RANGE_MARGIN:
                outside.append(f)
            z += c * xn
        if absent:
            missing += [f for f in absent if f not in missing]
            continue
        linear[name] = _checked_logit(name, z)
        probabilities[name] = _logistic(z)
    if outside:
        shown = sorted(set(outside))
        warnings.append(f"{len(shown)} feature(s) far outside the training range (normalised value below "
                        f"{-RANGE_MARGIN} or above {1 + RANGE_MARGIN}), the prediction extrapolates: "
                        + ", ".join(shown[:5]) + (" ..." if len(shown) > 5 else ""))

    encoded, missing_clinical = _encode_clinical(model, clinical)
    missing += missing_clinical
    inputs = dict(encoded)
    if "RDM" in linear:
        inputs[RDM_SCORE] = linear["RDM"]
    for name in ("clinical", "combined"):
        m = models[name]
        if not all(f in inputs for f in m["features"]):
            continue
        z = m["intercept"] + sum(c * inputs[f] for f, c in zip(m["features"], m["coefficients"]))
        linear[name] = _checked_logit(name, z)
        probabilities[name] = _logistic(z)
    cutoff = model["risk"]["cutoff"]
    combined = probabilities.get("combined")
    if combined is None:
        warnings.append("the combined model could not be computed (missing: "
                        + ", ".join(missing) + "): no risk group")
    return {"probabilities": {n: probabilities[n] for n in MODEL_NAMES if n in probabilities},
            "risk_group": None if combined is None else ("high" if combined >= cutoff else "low"),
            "cutoff": cutoff, "combined_probability": combined, "rdm_score": linear.get("RDM"),
            "missing": missing, "warnings": warnings}


def _feature_inputs(model: dict) -> list:
    return [f for m in (model.get("models") or {}).values() if isinstance(m, dict)
            for f, s in zip(m.get("features") or [], m.get("sources") or []) if s == "feature"]


def model_section(model: dict) -> str:
    """The section (``largest``, ``largest:K``, ``volume``) the model's features were extracted on:
    recorded in its extraction options, else told by its inputs' names."""
    from .pipeline import section_of_columns
    recorded = ((model.get("extraction") or {}).get("options") or {}).get("section")
    return recorded or section_of_columns(_feature_inputs(model)) or "largest"


def check_section(model: dict, features: Mapping, *, model_path=None) -> None:
    """Refuse features of another section than the model's (their ROI names say which), ModelFileError."""
    from .pipeline import section_of_columns
    given = section_of_columns(list(features))
    wanted = section_of_columns(_feature_inputs(model)) or model_section(model)
    if given is not None and given != wanted:
        raise ModelFileError(f"the model was trained on features of section {wanted}; these features are of "
                             f"section {given}", path=model_path,
                             hint=f"extract the patient with --section {wanted} (predict from images does it "
                                  "automatically), or use a model trained on that section")


def check_settings_hash(model: dict, features_hash, *, model_path=None, where: str = "the features") -> None:
    """Refuse features extracted with other settings than the model's (ModelFileError)."""
    expected = model["extraction"].get("settings_hash")
    if expected is None or features_hash is None:
        return
    if str(features_hash) != str(expected):
        raise ModelFileError(
            f"settings hash mismatch: the model was trained on features of section {model_section(model)} with "
            f"settings hash {expected}, {where} have {features_hash}", path=model_path,
            hint="extract the patient with the extraction settings the model was trained with "
                 "(predict from images uses them automatically), or retrain the model")


def check_compatibility(model: dict, *, model_path=None) -> dict:
    """Refuse the model unless this installation computes its reference features (ModelFileError).

    The model's fingerprint (:mod:`fingerprint`) recomputed here, once per process per model.
    """
    from .fingerprint import check_model
    return check_model(model, model_path=model_path)


def parse_clinical(items) -> dict:
    """``["hb=120", "t_stage=T3"]`` -> ``{"hb": "120", "t_stage": "T3"}``."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"clinical value {item!r} is not key=value", hint="write e.g. --clinical hb=118")
        key, value = item.split("=", 1)
        out[key.strip().lower()] = value.strip()
    return out


def _features_from_csv(path, patient):
    path = Path(path)
    if not path.is_file():
        raise InputError("features file not found", path=path)
    from .training import read_features
    frame = read_features(path)   # the reader train uses: empty, binary, UTF-16, broken CSVs are DataErrors
    if patient is not None:
        if "patient_id" not in frame.columns or patient not in set(frame["patient_id"]):
            raise InputError(f"no row for patient {patient!r}", path=path, hint="check --patient")
        frame = frame[frame["patient_id"] == patient]
    elif len(frame) != 1:
        raise InputError(f"the features file has {len(frame)} rows", path=path,
                         hint="choose one with --patient ID")
    row = frame.iloc[0]
    pid = str(row["patient_id"]) if "patient_id" in frame.columns else None
    settings_hash = row["settings_hash"] if "settings_hash" in frame.columns and isinstance(
        row["settings_hash"], str) else None
    return pid, row.to_dict(), settings_hash


def predict_from_images(model: dict, ct, dose, gtv, *, gtv_name=None, dose_unit=None, patient_id="patient",
                        model_path=None, progress=None) -> tuple[dict, dict]:
    """Extract the patient's features with the model's recorded settings; returns (features, record)."""
    from .pipeline import ExtractionOptions, PatientInputs, extract_patient, options_settings_hash
    recorded = model["extraction"].get("options")
    try:
        options = ExtractionOptions(**recorded) if recorded else ExtractionOptions()
    except TypeError as exc:
        raise ModelFileError(f"the model's extraction options are not understood: {exc}", path=model_path,
                             hint="upgrade DoseRadiomics to the version that trained the model") from None
    check_settings_hash(model, options_settings_hash(options), model_path=model_path,
                        where="this installation's extraction settings")
    check_compatibility(model, model_path=model_path)
    result = extract_patient(PatientInputs(patient_id=patient_id, ct=str(ct), dose=str(dose), gtv=str(gtv),
                                           gtv_name=gtv_name, dose_unit=dose_unit), options, progress=progress)
    check_settings_hash(model, result.record.get("settings_hash"), model_path=model_path,
                        where="the extracted features")
    return dict(result.features), result.record


def _say_compatible(checked: dict) -> None:
    print(f"compatibility: this installation computes the model's {checked['compared']} reference "
          f"features (built-in phantom) as the training one did")


def run(args) -> int:
    """``doseradiomics predict``."""
    from .fileio import atomic_write_text, check_output_file
    if args.out:
        check_output_file(args.out)   # before an extraction from images, not after it
    model = load_model(args.model)
    clinical = parse_clinical(args.clinical)
    if args.features:
        pid, features, fhash = _features_from_csv(args.features, args.patient)
        if fhash is None and model["extraction"].get("settings_hash"):
            print("warning: the features file has no settings_hash column: cannot check the extraction "
                  "settings match the model's")
        check_settings_hash(model, fhash, model_path=args.model, where=f"the features in {args.features}")
        _say_compatible(check_compatibility(model, model_path=args.model))
    else:
        if not (args.ct and args.dose and args.gtv):
            raise InputError("give either --features, or --ct, --dose and --gtv",
                             hint="see doseradiomics predict --help")
        pid = args.patient or Path(args.ct).stem
        features, _ = predict_from_images(model, args.ct, args.dose, args.gtv, gtv_name=args.gtv_name,
                                          dose_unit=args.dose_unit, patient_id=pid, model_path=args.model,
                                          progress=lambda msg: print(msg))
        _say_compatible(check_compatibility(model, model_path=args.model))   # done already: cached
    out = predict_from_features(model, features, clinical, centre=args.centre)
    out = {"patient_id": pid, "model": str(args.model), **out}
    for name, p in out["probabilities"].items():
        print(f"{name:10s} P(resistant) = {p:.3f}")
    if out["risk_group"]:
        print(f"risk group: {out['risk_group']} (combined {out['combined_probability']:.3f} vs cut-off "
              f"{out['cutoff']:.3f})")
    for w in out["warnings"]:
        print(f"warning: {w}")
    if args.out:
        atomic_write_text(args.out, json.dumps(out, indent=1, allow_nan=False) + "\n")
        print(f"prediction written to {args.out}")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="apply a trained model file to one patient",
        description="Each model's probability of radiochemotherapy resistance and the risk group, from a "
                    "features row or from the patient's CT, dose and GTV (extracted with the model's "
                    "settings). The combined model and the risk group need the clinical predictors the "
                    "model uses (e.g. --clinical hb=118 t_stage=T3).")
    p.add_argument("--model", required=True, help="model.json from doseradiomics train")
    p.add_argument("--features", help="features.csv (from extract or cohort-extract)")
    p.add_argument("--patient", help="patient id: the row of --features, or the name of an image-based patient")
    p.add_argument("--ct", help="planning CT (DICOM folder or image file)")
    p.add_argument("--dose", help="RT dose (RTDOSE or image file)")
    p.add_argument("--gtv", help="GTV (RTSTRUCT or label image)")
    p.add_argument("--gtv-name", help="ROI name of the GTV in the RTSTRUCT")
    p.add_argument("--dose-unit", help="unit of the dose image when not DICOM (Gy or cGy)")
    p.add_argument("--clinical", nargs="*", default=[], metavar="KEY=VALUE",
                   help="clinical values as in the manifest, e.g. hb=118 t_stage=T3")
    p.add_argument("--centre", help="the patient's centre, for a model trained with --harmonise combat")
    p.add_argument("--out", help="write the prediction to this JSON file")
    p.set_defaults(func=run)
