"""The paper's method end to end: split, normalise, select, six logistic models, evaluate, stratify.

Zhang et al. 2025 (Methods "Extraction and selection of features", "Model construction and
validation", "Statistical analysis"). Everything that is *fitted* sees the training rows only:

1. split: the manifest's ``split`` column if given, else a stratified seeded 7:3 random split;
2. min-max normalisation of every feature, fitted on training;
3. per ROI (``GTV`` on CT -> RM_GTV, ``GTV-heat`` -> DM_GTV, ``50Gy-heat`` -> DM_50Gy): univariate
   filter (t-test if Shapiro-Wilk accepts normality in both groups, else Mann-Whitney U,
   p < 0.05), then LASSO logistic regression with 10-fold CV (the lambda rule recorded), then an
   unpenalised logistic model on the LASSO-selected features;
4. RDM: one unpenalised logistic model on the union of the three ROIs' selected features;
5. clinical model: univariate logistic regression per encoded clinical variable, multivariate on
   those with p < 0.1, the independent predictors (p < 0.05) kept (see :data:`CLINICAL_CODING`);
6. combined model: logistic regression on the RDM *linear predictor* (its log-odds, the "RDM
   score") plus the independent clinical predictors.

Every model's score is its predicted probability of resistance (outcome 1); AUCs, cut-offs,
calibration and decision curves use it. The risk cut-off is the Youden cut-off of the combined
model's probability in the training cohort (the paper's 0.498); ``probability >= cut-off`` is
high risk.

Missing data: patients without an outcome or without a feature row are excluded (counted);
features with a missing or infinite value in a training patient, or constant in training, are
dropped before selection (counted); missing clinical values are imputed with the training median
(continuous, ordinal) or the training mode (categorical) and counted. At prediction time nothing is
imputed (see :mod:`prediction`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .errors import DataError
from .fileio import csv_cell_value, csv_safe_frame

MODEL_NAMES = ("clinical", "RM_GTV", "DM_GTV", "DM_50Gy", "RDM", "combined")
DEFAULT_ROI_MODELS = {"RM_GTV": "GTV", "DM_GTV": "GTV-heat", "DM_50Gy": "50Gy-heat"}
RDM_SCORE = "RDM_score"  # the combined model's input: the RDM linear predictor (log-odds)
CV_FOLDS = 10

# How each of the paper's clinical variables enters a model (Table 1 groupings). Variables not
# listed: numeric -> continuous; text -> one dummy per level against the most frequent
# training level.
CLINICAL_CODING = {
    "age": {"kind": "continuous", "label": "Age (years)"},
    "kps": {"kind": "continuous", "label": "KPS"},
    "cea": {"kind": "continuous", "label": "CEA (ng/mL)"},
    "hb": {"kind": "continuous", "label": "Hb (g/L)"},
    "prescribed_dose": {"kind": "continuous", "label": "Prescribed dose (Gy)"},
    "sex": {"kind": "binary", "label": "Sex", "encoded": "sex_female", "levels": ["Male", "Female"]},
    "smoking": {"kind": "binary", "label": "Smoking", "encoded": "smoking_yes", "levels": ["No", "Yes"]},
    "diabetes": {"kind": "binary", "label": "Diabetes", "encoded": "diabetes_yes", "levels": ["No", "Yes"]},
    "t_stage": {"kind": "binary", "label": "T stage", "encoded": "t_stage_T3_4", "levels": ["T1-2", "T3-4"]},
    "n_stage": {"kind": "binary", "label": "N stage", "encoded": "n_stage_N2_3", "levels": ["N0-1", "N2-3"]},
    "m_stage": {"kind": "binary", "label": "M stage", "encoded": "m_stage_M1", "levels": ["M0", "M1"]},
    "tnm_stage": {"kind": "ordinal", "label": "TNM stage", "encoded": "tnm_stage",
                  "levels": ["I-II", "III", "IV"]},  # coded 1, 2, 3
    "histology": {"kind": "categorical", "label": "Histology"},
    "rt_technique": {"kind": "categorical", "label": "RT technique"},
    "treatment_mode": {"kind": "categorical", "label": "Treatment mode"},
}

_YES = {"yes", "y", "true", "1", "1.0", "current", "former", "ever", "smoker", "positive"}
_NO = {"no", "n", "false", "0", "0.0", "never", "non-smoker", "nonsmoker", "negative", "none"}
_MALE = {"m", "male", "man"}
_FEMALE = {"f", "female", "woman"}
_ROMAN = (("IV", 3), ("III", 2), ("II", 1), ("I", 1))


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in ("", "na", "nan", "none", "missing", "unknown", "?")


def _stage_number(text: str, letter: str):
    m = re.match(rf"^\s*[cpy]?{letter}?\s*([0-4])", text, re.IGNORECASE)
    return int(m.group(1)) if m else None


def encode_clinical_value(variable: str, value, coding: dict):
    """Encode one raw clinical value by its coding: returns ``{encoded name: number}``.

    Missing values return ``None``. A value the coding cannot read raises ``ValueError`` whose
    message says which values are accepted (callers add the patient and file).
    """
    if _is_missing(value):
        return None
    kind = coding["kind"]
    text = str(value).strip()
    if kind == "continuous":
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{variable} must be a number, got {text!r}") from None
        if not math.isfinite(number):
            return None
        return {coding["encoded"]: number}
    if kind == "binary":
        low = text.lower()
        if variable == "sex":
            bit = 1 if low in _FEMALE else 0 if low in _MALE else None
            accepted = "M/F or male/female"
        elif variable in ("t_stage", "n_stage", "m_stage"):
            letter = variable[0].upper()
            number = _stage_number(text, letter)
            threshold = {"T": 3, "N": 2, "M": 1}[letter]
            bit = None if number is None else int(number >= threshold)
            accepted = f"{letter}0-{letter}4 such as {letter}2 or {letter}3a"
        else:
            bit = 1 if low in _YES else 0 if low in _NO else None
            accepted = "yes/no or 1/0"
        if bit is None:
            raise ValueError(f"{variable} value {text!r} is not recognised (use {accepted})")
        return {coding["encoded"]: float(bit)}
    if kind == "ordinal":  # TNM stage I-II / III / IV -> 1 / 2 / 3
        upper = re.sub(r"^\s*STAGE\s*", "", text.upper())
        for roman, code in _ROMAN:
            if upper.startswith(roman):
                return {coding["encoded"]: float(code)}
        m = re.match(r"^\s*([1-4])", upper)
        if m:
            return {coding["encoded"]: float({1: 1, 2: 1, 3: 2, 4: 3}[int(m.group(1))])}
        raise ValueError(f"{variable} value {text!r} is not recognised (use I, II, III, IV, e.g. IIIA)")
    if kind == "categorical":
        level = _level_key(text)
        if level not in coding["levels"]:
            raise ValueError(f"{variable} value {text!r} was not seen in training "
                             f"(known: {', '.join(coding['levels'])})")
        return {name: float(level == lev) for name, lev in zip(coding["encoded"], coding["dummy_levels"])}
    raise ValueError(f"unknown coding kind {kind!r} for {variable}")


def _level_key(text) -> str:
    return re.sub(r"\s+", " ", str(text).strip()).lower()


def _safe(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_") or "level"


def fit_clinical_coding(raw: pd.DataFrame, columns) -> tuple[dict, list]:
    """Decide the encoding of each clinical column from the TRAINING rows.

    Returns ``(coding, notes)``: ``coding[variable]`` is a JSON-ready dict with ``kind``, ``label``,
    ``encoded`` (names of the model inputs it yields), the imputation value and, for categorical
    variables, the levels and the reference (most frequent) level.
    """
    coding, notes = {}, []
    for variable in columns:
        if variable not in raw.columns:
            continue
        values = raw[variable]
        present = values[~values.map(_is_missing)]
        if present.empty:
            notes.append(f"clinical variable {variable} has no values in the training cohort: not used")
            continue
        spec = dict(CLINICAL_CODING.get(variable, {}))
        if not spec:
            numeric = pd.to_numeric(present, errors="coerce")
            spec = {"kind": "continuous" if numeric.notna().all() else "categorical", "label": variable}
        spec["variable"] = variable
        if spec["kind"] == "continuous":
            spec["encoded"] = variable
        if spec["kind"] == "categorical":
            keys = present.map(_level_key)
            counts = keys.value_counts()
            # most frequent level is the reference; ties broken alphabetically for determinism
            ordered = sorted(counts.index, key=lambda k: (-counts[k], k))
            spec["levels"] = ordered
            # how each level is shown (its most common spelling in the manifest)
            spec["level_labels"] = {k: str(present[keys == k].astype(str).str.strip().mode().iloc[0])
                                    for k in ordered}
            spec["reference"] = ordered[0]
            spec["dummy_levels"] = ordered[1:]
            spec["encoded"] = [f"{variable}_{_safe(lev)}" for lev in ordered[1:]]
            spec["impute"] = ordered[0]
            if len(ordered) < 2:
                notes.append(f"clinical variable {variable} has one level in training: not used")
                continue
        else:
            encoded = []
            for pid, v in present.items():
                try:
                    enc = encode_clinical_value(variable, v, {**spec, "encoded": spec.get("encoded", variable)})
                except ValueError as exc:
                    raise DataError(str(exc), patient=str(pid),
                                    hint=f"correct the manifest's {variable} column") from None
                if enc is not None:
                    encoded.append(next(iter(enc.values())))
            if not encoded:
                continue
            arr = np.asarray(encoded)
            if np.ptp(arr) == 0:
                notes.append(f"clinical variable {variable} is constant in training: not used")
                continue
            spec["impute"] = float(np.median(arr)) if spec["kind"] != "binary" else float(
                np.round(arr.mean() >= 0.5))
        coding[variable] = spec
    return coding, notes


def encoded_names(coding: dict) -> list:
    """Model input names produced by a clinical coding, in order."""
    out = []
    for spec in coding.values():
        enc = spec["encoded"]
        out.extend(enc if isinstance(enc, list) else [enc])
    return out


def encode_clinical(raw: pd.DataFrame, coding: dict, *, impute: bool = True,
                    unseen_as_reference: bool = False) -> tuple[pd.DataFrame, dict]:
    """Encode raw clinical columns by ``coding``; returns ``(encoded, n_imputed per variable)``.

    ``unseen_as_reference``: a categorical level the coding does not know becomes the reference level
    (all dummies 0) instead of an error (resampling, where a rare level can miss a training sample).
    """
    rows, imputed = {}, {v: 0 for v in coding}
    for pid, row in raw.iterrows():
        out = {}
        for variable, spec in coding.items():
            value = row.get(variable)
            try:
                enc = encode_clinical_value(variable, value, spec)
            except ValueError as exc:
                if not (unseen_as_reference and spec["kind"] == "categorical"):
                    raise DataError(str(exc), patient=str(pid),
                                    hint=f"correct the manifest's {variable} column") from None
                enc = {name: 0.0 for name in spec["encoded"]}
            if enc is None:
                if not impute:
                    continue
                imputed[variable] += 1
                if spec["kind"] == "categorical":  # the reference level: all dummies 0
                    enc = {name: 0.0 for name in spec["encoded"]}
                else:
                    enc = {spec["encoded"]: float(spec["impute"])}
            out.update(enc)
        rows[pid] = out
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=encoded_names(coding))
    return frame.astype(float), imputed


# --------------------------------------------------------------------------------------------
# The trained result


@dataclass
class TrainedModels:
    """Everything a training run produced: the model file's content plus per-patient scores.

    ``to_dict()`` is the JSON-ready content of the model file (no patient ids). ``patients`` is a
    DataFrame indexed by patient id with ``cohort`` ('train'/'validation'), ``outcome`` and one
    probability column per model (kept in memory / written to predictions.csv only).
    """

    models: dict
    clinical_coding: dict
    cutoff: float
    settings_hash: str | None
    extraction_options: dict | None
    fingerprint: dict | None
    cohort: dict
    selection: dict
    clinical_analysis: dict
    evaluation: dict
    comparisons: list
    survival: dict
    cohort_table: list
    settings: dict
    library_versions: dict
    notes: list = field(default_factory=list)
    ground_truth: dict | None = None
    patients: pd.DataFrame | None = None
    harmonisation: dict | None = None
    warnings: list = field(default_factory=list)
    internal_validation: dict | None = None
    robustness: dict | None = None   # the ICC screen (robustness.icc_screen), with --robustness

    def auc_table(self) -> pd.DataFrame:
        """One row per model and cohort: AUC, DeLong 95% CI, accuracy, sensitivity, specificity."""
        rows = []
        for name in MODEL_NAMES:
            for cohort in ("train", "validation"):
                ev = self.evaluation.get(cohort, {}).get(name)
                if not ev:
                    continue
                c = ev["classification"]
                rows.append({"model": name, "cohort": cohort, "auc": ev["auc"], "ci_low": ev["ci_low"],
                             "ci_high": ev["ci_high"], "accuracy": c["accuracy"],
                             "sensitivity": c["sensitivity"], "specificity": c["specificity"]})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        """The model file's content (without schema header and checksum)."""
        from .fileio import jsonable
        extra = {"harmonisation": self.harmonisation} if self.harmonisation else {}
        if self.robustness:
            extra["robustness"] = self.robustness
        return jsonable({
            "models": self.models,
            "model_order": list(MODEL_NAMES),
            "clinical_coding": self.clinical_coding,
            "risk": {"model": "combined", "cutoff": self.cutoff, "rule": "Youden index on the training "
                     "cohort's combined-model probabilities; probability >= cutoff is high risk"},
            "extraction": {"settings_hash": self.settings_hash, "options": self.extraction_options,
                           "fingerprint": self.fingerprint},
            "cohort": self.cohort,
            "cohort_table": self.cohort_table,
            "selection": self.selection,
            "clinical_analysis": self.clinical_analysis,
            "evaluation": self.evaluation,
            "comparisons": self.comparisons,
            "survival": self.survival,
            "settings": self.settings,
            "library_versions": self.library_versions,
            "notes": self.notes,
            "warnings": self.warnings,
            "ground_truth": self.ground_truth,
            "internal_validation": self.internal_validation,
            **extra,
        })


# --------------------------------------------------------------------------------------------
# Pieces


def split_cohort(outcome: pd.Series, *, seed: int = 0, train_fraction: float = 0.7,
                 given: pd.Series | None = None) -> pd.Series:
    """'train'/'validation' per patient: the given split, else a stratified seeded random split.

    The random split is made on the patients sorted by id, so it does not depend on row order.
    """
    if given is not None:
        values = given.astype(str).str.strip().str.lower().replace({"training": "train", "valid": "validation",
                                                                    "test": "validation"})
        bad = values[~values.isin(["train", "validation"])]
        if not bad.empty:
            raise DataError(f"split column has value {given[bad.index[0]]!r}", patient=str(bad.index[0]),
                            hint="use 'train' or 'validation' for every patient, or drop the column "
                                 "for a random 7:3 split")
        return values
    from sklearn.model_selection import train_test_split
    ids = sorted(outcome.index, key=str)
    y = outcome.loc[ids].to_numpy()
    train_ids, _ = train_test_split(ids, train_size=train_fraction, stratify=y, random_state=seed)
    train_set = set(train_ids)
    return pd.Series(["train" if i in train_set else "validation" for i in outcome.index],
                     index=outcome.index, name="cohort")


def _coef_list(fitted, names) -> list:
    coef = fitted.coefficients
    if isinstance(coef, dict):
        return [float(coef[n]) for n in names]
    if isinstance(coef, pd.Series):
        return [float(coef[n]) for n in names]
    return [float(c) for c in np.asarray(coef).ravel()]


#: what ``events_per_variable`` means in the model file
EPV_DEFINITION = ("events per variable: patients of the less frequent outcome class in the training cohort "
                  "divided by the model's number of inputs (candidates: by the number of candidate variables "
                  "the selection considered)")
#: ``--penalised`` choices for the multivariable fits
PENALISED_METHODS = {"none": "unpenalised maximum likelihood (the paper)", "firth": None}


def _model_entry(name, description, inputs, sources, mins, maxs, fit, notes=(), *, y=None, candidates=None):
    coefficients, intercept, fit_notes, diagnostics = fit
    entry = {"name": name, "description": description, "features": list(inputs), "sources": list(sources),
             "min": list(mins), "max": list(maxs), "coefficients": [float(c) for c in coefficients],
             "intercept": float(intercept), "intercept_only": len(inputs) == 0,
             "score": "probability of resistance = 1 / (1 + exp(-(intercept + sum(coefficient * input))))",
             "fit": fit_notes, "notes": list(notes), "fit_method": diagnostics["method"],
             "separation": diagnostics.get("separation")}
    if y is not None:
        minority = int(min(np.sum(y), np.size(y) - np.sum(y)))
        entry["events_per_variable"] = {
            "minority_class_n": minority, "inputs": len(inputs),
            "epv": minority / len(inputs) if len(inputs) else None,
            "candidates": candidates, "epv_candidates": minority / candidates if candidates else None}
    return entry


def _fit(X: pd.DataFrame, y: np.ndarray, penalised: str | None = None):
    """Logistic regression of ``y`` on ``X``; intercept-only when X has no columns.

    Returns ``(coefficients, intercept, notes, diagnostics)``. The maximum-likelihood fit (stats.logistic)
    is always made: its separation diagnostics are recorded. ``penalised="firth"`` then refits by Firth's
    bias-reduced logistic regression and that fit is the model's.
    """
    from .stats.firth import FIRTH_METHOD, firth_logistic
    from .stats.logistic import fit_logistic, separation_diagnostics
    if X.shape[1] == 0:
        rate = float(np.clip(y.mean(), 1e-12, 1 - 1e-12))
        return [], math.log(rate / (1 - rate)), ["intercept only: the training event rate"], \
            {"method": "intercept only", "separation": None}
    fitted = fit_logistic(X, y)
    coefs, b0 = _coef_list(fitted, list(X.columns)), float(fitted.intercept)
    notes = list(getattr(fitted, "notes", []))
    failure = notes[0].split(";")[0] if fitted.penalty is not None else None
    diag = separation_diagnostics(X.to_numpy(dtype=float), y, coefs, b0, ml_failure=failure)
    diag["assessed_on"] = "the maximum-likelihood fit"
    if penalised == "firth":
        fr = firth_logistic(X.to_numpy(dtype=float), y)
        notes = [FIRTH_METHOD] + ([] if fr["converged"] else [f"did not converge in {fr['iterations']} iterations"])
        return [float(c) for c in fr["coefficients"]], float(fr["intercept"]), notes, \
            {"method": "Firth", "separation": diag}
    return coefs, b0, notes, {"method": "maximum likelihood" if failure is None else
                              "maximum likelihood failed: ridge fallback", "separation": diag}


def linear_predictor(entry: dict, inputs: pd.DataFrame) -> np.ndarray:
    """Log-odds of a model entry on inputs already on the model's scale (normalised features)."""
    if not entry["features"]:
        return np.full(len(inputs), entry["intercept"])
    X = inputs[entry["features"]].to_numpy(dtype=float)
    return entry["intercept"] + X @ np.asarray(entry["coefficients"], dtype=float)


def sigmoid(z):
    z = np.asarray(z, dtype=float)
    return np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))))


@dataclass(frozen=True)
class MethodOptions:
    """The method's choices; the defaults are the paper's.

    ``ttest``: "student" (pooled variance; the paper's "t-test", SPSS's first line) or "welch";
    ``mannwhitney_exact``: "paper" (exact with at most 8 per class and no ties, scipy's default) or
    "R" (exact below 50 per class without ties, R's wilcox.test); ``penalised``: "none" (maximum
    likelihood, the paper) or "firth" for the six final logistic fits.
    """

    lasso_rule: str = "1se"
    alpha_univariate: float = 0.05
    ttest: str = "student"
    mannwhitney_exact: str = "paper"
    penalised: str = "none"
    roi_models: tuple = tuple(DEFAULT_ROI_MODELS.items())
    #: the stability screen's :class:`stability.Exclusion` (None: no sidecar); ``keep_unstable``
    #: reports the unstable features but keeps them (the paper's exact feature set)
    stability: object = None
    keep_unstable: bool = False

    def check(self) -> "MethodOptions":
        from .stats.selection import MANNWHITNEY_EXACT_RULES, TTEST_VARIANTS
        for name, value, allowed in (("LASSO rule", self.lasso_rule, ("1se", "min")),
                                     ("t-test variant", self.ttest, tuple(TTEST_VARIANTS)),
                                     ("Mann-Whitney exact rule", self.mannwhitney_exact,
                                      tuple(MANNWHITNEY_EXACT_RULES)),
                                     ("penalised fit", self.penalised, tuple(PENALISED_METHODS))):
            if value not in allowed:
                raise DataError(f"unknown {name} {value!r}", hint=f"use one of {', '.join(allowed)}")
        return self

    def describe(self) -> dict:
        from .stats.firth import FIRTH_METHOD
        from .stats.selection import MANNWHITNEY_EXACT_RULES, TTEST_VARIANTS
        return {"ttest": self.ttest, "ttest_description": TTEST_VARIANTS[self.ttest],
                "mannwhitney_exact": self.mannwhitney_exact,
                "mannwhitney_exact_description": MANNWHITNEY_EXACT_RULES[self.mannwhitney_exact],
                "penalised": self.penalised,
                "fit_description": FIRTH_METHOD if self.penalised == "firth" else PENALISED_METHODS["none"]}


def select_roi_features(Xn_train: pd.DataFrame, y: np.ndarray, *, alpha: float, rule: str, seed: int,
                        ttest: str = "student", mannwhitney_exact: str = "paper", groups=None) -> dict:
    """Univariate filter then LASSO (10-fold CV) on one ROI's normalised training features.
    ``groups``: a patient key per row (a bootstrap sample's copies of a patient share one CV fold)."""
    from .stats.selection import lasso_select, univariate_filter
    out = {"n_features": int(Xn_train.shape[1]), "notes": [], "warnings": []}
    uni = univariate_filter(Xn_train, y, alpha=alpha, equal_var=ttest == "student",
                            mannwhitney_exact=mannwhitney_exact)
    passed = [str(f) for f in uni.loc[uni["selected"].astype(bool), "feature"]]
    out["n_after_filter"] = len(passed)
    out["univariate"] = uni
    if not passed:
        out["notes"].append(f"no feature passed the univariate filter (p < {alpha}): intercept-only model")
        out.update(selected=[], lasso=None)
        return out
    if len(passed) == 1:
        out["notes"].append("one feature passed the univariate filter: LASSO skipped, the feature kept")
        out.update(selected=passed, lasso=None)
        return out
    lasso = lasso_select(Xn_train[passed], y, folds=CV_FOLDS, rule=rule, seed=seed, groups=groups)
    selected = [str(f) for f in lasso["selected"]]
    if lasso["rule_used"] != rule:
        msg = (f"the LASSO 1-SE rule (lambda {lasso['lambda_1se']:.4g}) kept no feature: fell back to "
               f"lambda_min ({lasso['lambda_min']:.4g}), {len(selected)} feature(s)")
        out["notes"].append(msg)
        out["warnings"].append(msg)
    if not selected:
        out["notes"].append(f"LASSO ({lasso['rule_used']} rule) kept no feature: intercept-only model")
    out.update(selected=selected, lasso=lasso)
    return out


def _unique_rows(X: pd.DataFrame, raw: pd.DataFrame):
    """Rows with unique labels (a bootstrap sample repeats patients: ``id#k`` for the k-th copy)."""
    if X.index.is_unique:
        return X, raw
    ids = pd.Series(X.index.map(str))
    labels = ids + "#" + ids.groupby(ids).cumcount().astype(str)
    X, raw = X.copy(), raw.copy()
    X.index = raw.index = pd.Index(labels)
    return X, raw


def fit_pipeline(X: pd.DataFrame, raw: pd.DataFrame, y, clinical_columns, options: MethodOptions,
                 seed: int, *, detail: bool = True) -> dict:
    """The whole method fitted on training rows only: every choice it makes is made here.

    ``X``: raw features of the training rows (``<ROI>__...`` columns), ``raw``: their manifest
    rows (clinical columns), ``y``: their outcomes; a patient may appear more than once (bootstrap).
    Steps: usable features (finite, not constant), min-max normalisation, per ROI univariate filter
    and LASSO with its own 10-fold CV (folds seeded by ``seed``), the ROI models and the RDM, the
    clinical encodings and imputation values, the clinical univariate/multivariate selection and
    model, the combined model. Returns dict(models, coding, independent, usable, selection,
    clinical_analysis, notes, warnings, dropped_nonfinite, dropped_constant). ``detail=False``
    leaves out the per-feature tables (resampling needs only the models).
    """
    from .stats.logistic import univariate_multivariate
    from .stats.selection import MinMaxScaler

    # before a bootstrap sample's copies are relabelled: the LASSO folds and the stability shares go by patient
    patients = np.asarray(X.index.map(str))
    patient_ids = set(patients)
    X, raw = _unique_rows(X, raw)
    y = np.asarray(y, dtype=int)
    _check_events(y, "training cohort")
    roi_models = dict(options.roi_models)
    pen = options.penalised if options.penalised != "none" else None
    notes, warn = [], []
    finite = np.isfinite(X.to_numpy(dtype=float)).all(axis=0)
    spread = (X.max() - X.min()).to_numpy(dtype=float)
    usable = [c for c, ok, s in zip(X.columns, finite, spread) if ok and s > 0]
    dropped_nonfinite = int((~finite).sum())
    dropped_constant = int((finite & ~(spread > 0)).sum())
    if dropped_nonfinite or dropped_constant:
        notes.append(f"{dropped_nonfinite} feature(s) with missing values and {dropped_constant} constant "
                     "feature(s) in the training cohort dropped before selection")
    unstable = []
    if options.stability is not None:   # shares over these training rows: each resample has its own
        unstable = options.stability.excluded(patient_ids, usable)
        if not options.keep_unstable:
            drop = {r["feature"] for r in unstable}
            usable = [c for c in usable if c not in drop]
    scaler = MinMaxScaler().fit(X[usable])
    Xn = scaler.transform(X[usable])
    mins = dict(zip(usable, np.asarray(scaler.min_, dtype=float)))
    maxs = dict(zip(usable, np.asarray(scaler.max_, dtype=float)))

    models, selection, pooled = {}, {}, []
    for model_name, roi in roi_models.items():
        cols = [c for c in usable if str(c).startswith(f"{roi}__")]
        if not cols:
            raise DataError(f"the features table has no usable columns for ROI {roi!r} (model {model_name})",
                            hint=f"extract the {roi} ROI for the cohort, or check its feature values")
        sel = select_roi_features(Xn[cols], y, alpha=options.alpha_univariate, rule=options.lasso_rule,
                                  seed=seed, ttest=options.ttest, mannwhitney_exact=options.mannwhitney_exact,
                                  groups=patients)
        fit = _fit(Xn[sel["selected"]], y, pen)
        models[model_name] = _model_entry(
            model_name, f"logistic regression on the LASSO-selected {roi} features (min-max normalised)",
            sel["selected"], ["feature"] * len(sel["selected"]), [mins[c] for c in sel["selected"]],
            [maxs[c] for c in sel["selected"]], fit, sel["notes"], y=y, candidates=len(cols))
        models[model_name]["roi"] = roi
        pooled += [c for c in sel["selected"] if c not in pooled]
        uni = sel.pop("univariate")
        if detail:
            keep = uni[uni["feature"].isin(sel["selected"])]
            sel["univariate_selected"] = keep.to_dict(orient="records")
        sel["roi"] = roi
        if sel["lasso"] is not None:
            lasso = dict(sel["lasso"])
            lasso.pop("selected", None)
            if not detail:
                lasso.pop("cv", None)
            sel["lasso"] = lasso
        selection[model_name] = sel
        notes += [f"{model_name}: {n}" for n in sel["notes"]]
        warn += [f"{model_name}: {w}" for w in sel.pop("warnings")]

    fit = _fit(Xn[pooled], y, pen)
    models["RDM"] = _model_entry(
        "RDM", "logistic regression on the union of the three ROIs' selected features (radiomics + "
        "dosiomics)", pooled, ["feature"] * len(pooled), [mins[c] for c in pooled], [maxs[c] for c in pooled],
        fit, [] if pooled else ["no feature selected in any ROI: intercept-only model"], y=y,
        candidates=sum(len([c for c in usable if str(c).startswith(f"{r}__")]) for r in roi_models.values()))
    models["RDM"]["roi"] = list(roi_models.values())

    # Clinical model: encodings and imputation values come from the training rows only
    coding, cnotes = fit_clinical_coding(raw[clinical_columns], clinical_columns)
    notes += cnotes
    clin_tr, imputed = encode_clinical(raw[list(coding)], coding)
    clinical_analysis = {"encoded": list(clin_tr.columns), "imputed": imputed, "notes": []}
    independent = []
    if clin_tr.shape[1]:
        try:
            um = univariate_multivariate(clin_tr, y)
            clinical_analysis.update(univariate=um["univariate"], multivariate=um["multivariate"],
                                     candidates=list(um["candidates"]), independent=list(um["independent"]))
            independent = list(um["independent"]) or list(um["candidates"])
            if not um["independent"] and um["candidates"]:
                clinical_analysis["notes"].append("no independent predictor (p < 0.05): the clinical model "
                                                  "uses the multivariate candidates (p < 0.1)")
        except DataError as exc:
            clinical_analysis["notes"].append(f"clinical analysis failed: {exc.problem}")
    if not independent:
        clinical_analysis["notes"].append("no clinical candidate predictor: intercept-only clinical model")
    notes += [f"clinical: {n}" for n in clinical_analysis["notes"]]
    fit = _fit(clin_tr[independent], y, pen)
    models["clinical"] = _model_entry(
        "clinical", "logistic regression on the independent clinical predictors (raw units; encodings "
        "in clinical_coding)", independent, ["clinical"] * len(independent), [None] * len(independent),
        [None] * len(independent), fit, clinical_analysis["notes"], y=y, candidates=clin_tr.shape[1])

    rdm_lp = pd.Series(linear_predictor(models["RDM"], Xn), index=Xn.index)
    comb_inputs = pd.concat([rdm_lp.rename(RDM_SCORE), clin_tr[independent]], axis=1)
    fit = _fit(comb_inputs, y, pen)
    models["combined"] = _model_entry(
        "combined", "logistic regression on the RDM score (the RDM linear predictor, log-odds) and the "
        "independent clinical predictors", comb_inputs.columns, ["model:RDM"] + ["clinical"] * len(independent),
        [None] * comb_inputs.shape[1], [None] * comb_inputs.shape[1], fit, y=y, candidates=comb_inputs.shape[1])
    for name in MODEL_NAMES:
        sep = models[name].get("separation")
        if sep and sep["separation"]:
            action = ("the Firth fit is used" if pen == "firth" else
                      "estimates and their CIs are unreliable; consider --penalised firth")
            warn.append(f"{name}: (quasi-)complete separation in the training cohort: "
                        f"{'; '.join(sep['reasons'])}; {action}")
    return {"models": models, "coding": coding, "independent": independent, "usable": usable,
            "selection": selection, "clinical_analysis": clinical_analysis, "notes": notes, "warnings": warn,
            "dropped_nonfinite": dropped_nonfinite, "dropped_constant": dropped_constant, "unstable": unstable}


def score_pipeline(fitted: dict, X: pd.DataFrame, raw: pd.DataFrame, *, unseen_as_reference: bool = False) -> dict:
    """Every model's probability for the rows of ``X`` (raw features) and ``raw`` (manifest rows).

    Applies what :func:`fit_pipeline` fitted and nothing else: the training min/max of each model's
    features, the clinical encodings and training imputation values (a categorical level unseen in
    training is an error, or, with ``unseen_as_reference``, the reference level: resampling, where a
    rare level can miss a training sample). NaN where a model's feature is missing.
    Returns dict(model name -> numpy array, in row order).
    """
    models = fitted["models"]
    lps = {}
    for name in [n for n in MODEL_NAMES if n not in ("clinical", "combined")]:
        entry = models[name]
        feats = entry["features"]
        values = X[feats].to_numpy(dtype=float) if feats else np.zeros((len(X), 0))
        lo, hi = np.asarray(entry["min"], dtype=float), np.asarray(entry["max"], dtype=float)
        span = hi - lo
        scaled = np.where(np.isfinite(values), (values - lo) / np.where(span == 0, 1.0, span), np.nan)
        lps[name] = linear_predictor(entry, pd.DataFrame(scaled, columns=feats, index=X.index))
    coding = {v: s for v, s in fitted["coding"].items()}
    clin, _ = encode_clinical(raw[list(coding)], coding, unseen_as_reference=unseen_as_reference)
    lps["clinical"] = linear_predictor(models["clinical"], clin)
    inputs = pd.concat([pd.Series(lps["RDM"], index=clin.index, name=RDM_SCORE),
                        clin[fitted["independent"]]], axis=1)
    lps["combined"] = linear_predictor(models["combined"], inputs)
    return {name: sigmoid(np.asarray(lps[name], dtype=float)) for name in MODEL_NAMES}


# --------------------------------------------------------------------------------------------
# Evaluation


def evaluate_scores(y, p, cutoff: float) -> dict:
    """AUC (DeLong CI), classification at ``cutoff``, calibration, decision curve, ROC points."""
    from .stats import calibration, dca, roc
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    out = {"n": int(y.size), "events": int(y.sum())}
    if y.min() == y.max():
        out["notes"] = ["one outcome class only: no AUC"]
        return out
    out.update(roc.delong_auc_ci(y, p))
    out["classification"] = roc.classification_at(y, p, cutoff)
    fpr, tpr, _ = roc.roc_curve(y, p)
    out["roc"] = {"fpr": fpr, "tpr": tpr}
    out["brier"] = calibration.brier_score(y, p)

    def attempt(key, compute, keep=None):
        # a constant score (intercept-only model) has no HL groups and no slope: recorded, not fatal
        try:
            value = compute()
            out[key] = {k: value[k] for k in keep} if keep else value
        except DataError as exc:
            out[key] = None
            out.setdefault("notes", []).append(f"{key.replace('_', ' ')} not computed: {exc.problem}")
    attempt("hosmer_lemeshow", lambda: calibration.hosmer_lemeshow(y, p), ("chi2", "df", "p"))
    attempt("calibration_curve", lambda: calibration.calibration_curve(y, p))
    attempt("calibration_slope", lambda: calibration.calibration_slope(y, p))
    attempt("decision_curve", lambda: dca.decision_curve(y, p))
    return out


def _comparison_pairs():
    pairs = [(name, "combined") for name in MODEL_NAMES if name != "combined"]
    pairs += [("RDM", name) for name in ("RM_GTV", "DM_GTV", "DM_50Gy")]
    return pairs


def compare_models(y, scores: dict, cohort: str) -> list:
    """Paired DeLong tests: every model against the combined model, and RDM against each ROI model."""
    from .stats.roc import delong_test
    out = []
    for a, b in _comparison_pairs():
        if a not in scores or b not in scores:
            continue
        try:
            res = delong_test(y, scores[a], scores[b])
        except DataError as exc:
            res = {"note": exc.problem}
        out.append({"cohort": cohort, "model_a": a, "model_b": b, **res})
    return out


def _nice_times(max_time: float) -> list:
    step = 6.0 if max_time <= 48 else 12.0 if max_time <= 120 else 24.0
    return [float(t) for t in np.arange(0.0, max_time + 1e-9, step)]


def stratify_survival(time, event, high) -> dict:
    """KM per risk group with numbers at risk, log-rank test and Cox HR (high vs low)."""
    from .stats import survival as sv
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=int)
    high = np.asarray(high, dtype=int)
    at = _nice_times(float(time.max()))
    out = {"at_times": at, "groups": {}}
    for label, flag in (("high", 1), ("low", 0)):
        sel = high == flag
        if sel.sum() == 0:
            out["groups"][label] = None
            continue
        km = sv.kaplan_meier(time[sel], event[sel])
        out["groups"][label] = {"n": int(sel.sum()), "events": int(event[sel].sum()), "km": km,
                                "at_risk": sv.numbers_at_risk(time[sel], at)}
    if 0 < high.sum() < high.size:
        out["logrank"] = sv.logrank_test(time, event, high)
        try:
            out["cox"] = sv.cox_hazard_ratio(time, event, high)
        except DataError as exc:
            out["cox"] = None
            out["notes"] = [f"hazard ratio not estimable: {exc.problem}"]
    else:
        out["logrank"] = out["cox"] = None
        out["notes"] = ["all patients in one risk group: no comparison"]
    return out


# --------------------------------------------------------------------------------------------
# Cohort table (Table 1)


def _is_normal(values) -> bool:
    from scipy import stats as st
    v = np.asarray(values, dtype=float)
    if v.size < 3 or np.ptp(v) == 0:
        return False
    return bool(st.shapiro(v).pvalue > 0.05)


def cohort_table(raw: pd.DataFrame, cohort: pd.Series, coding: dict) -> list:
    """Training vs validation per clinical variable, like the paper's Table 1.

    Continuous: mean +/- SD and t-test when Shapiro-Wilk accepts normality in both cohorts, else
    median (IQR) and Mann-Whitney U. Categorical (the model's groupings for binary and ordinal
    variables, the recorded levels otherwise): n (%) and chi-squared, or Fisher's exact test for a
    2x2 table with an expected count below 5.
    """
    from scipy import stats as st
    rows = []
    train = cohort == "train"
    for variable, spec in coding.items():
        values = raw[variable]
        label = spec.get("label", variable)
        if spec["kind"] == "continuous":
            num = pd.to_numeric(values, errors="coerce")
            a, b = num[train].dropna().to_numpy(), num[~train].dropna().to_numpy()
            if a.size < 2 or b.size < 2:
                continue
            normal = _is_normal(a) and _is_normal(b)
            if normal:
                test, p = "t-test", st.ttest_ind(a, b).pvalue
                fmt = lambda v: f"{np.mean(v):.1f} ± {np.std(v, ddof=1):.1f}"  # noqa: E731
            else:
                test, p = "Mann-Whitney U", st.mannwhitneyu(a, b, alternative="two-sided").pvalue
                fmt = lambda v: "{:.1f} ({:.1f}, {:.1f})".format(*np.percentile(v, [50, 25, 75]))  # noqa: E731
            rows.append({"variable": label, "category": "–", "train": fmt(a), "validation": fmt(b),
                         "p": float(p), "test": test, "missing": int(num.isna().sum())})
            continue
        if spec["kind"] in ("binary", "ordinal"):
            levels = spec["levels"]

            def group(v, spec=spec, variable=variable):
                try:
                    enc = encode_clinical_value(variable, v, spec)
                except ValueError:
                    return None
                if enc is None:
                    return None
                code = int(next(iter(enc.values())))
                return spec["levels"][code - 1 if spec["kind"] == "ordinal" else code]
            groups = values.map(group)
        else:
            labels = spec.get("level_labels", {})
            groups = values.map(lambda v: None if _is_missing(v) else _level_key(v))
            groups = groups.map(lambda k: labels.get(k, k) if k is not None else None)
            levels = [labels.get(k, k) for k in spec["levels"]]
        table = np.array([[int(((groups == lev) & train).sum()), int(((groups == lev) & ~train).sum())]
                          for lev in levels])
        keep = table.sum(axis=1) > 0
        table, shown = table[keep], [lev for lev, k in zip(levels, keep) if k]
        p, test = None, None
        if table.shape[0] >= 2 and (table.sum(axis=0) > 0).all():
            expected = st.contingency.expected_freq(table)
            if table.shape == (2, 2) and (expected < 5).any():
                test, p = "Fisher exact", st.fisher_exact(table).pvalue
            else:
                test, p = "chi-squared", st.chi2_contingency(table, correction=False).pvalue
                if (expected < 5).any():
                    test += " (expected count < 5)"
        n_tr, n_va = int(train.sum()), int((~train).sum())
        for i, lev in enumerate(shown):
            rows.append({"variable": label, "category": lev,
                         "train": f"{table[i, 0]} ({100 * table[i, 0] / max(n_tr, 1):.1f})",
                         "validation": f"{table[i, 1]} ({100 * table[i, 1] / max(n_va, 1):.1f})",
                         "p": None if i or p is None else float(p), "test": None if i else test,
                         "missing": int(groups.isna().sum()) if i == 0 else None})
    return rows


# --------------------------------------------------------------------------------------------
# Repeated-split assessment (synthetic cohorts with a known true probability)

#: number of extra random splits of the repeated-split assessment (``train --repeated-splits``)
REPEATED_SPLITS = 20


def repeated_split_assessment(X: pd.DataFrame, raw: pd.DataFrame, y: pd.Series, truth: pd.Series, *,
                              clinical_columns, options: MethodOptions, seeds, train_fraction: float = 0.7,
                              workers: int = 1) -> dict:
    """Validation AUC of the combined model and of the truth over many random splits.

    One 7:3 split leaves a validation cohort of a few dozen patients whose AUC has a standard
    error of ~0.06, too noisy to judge how close the method comes to the true probabilities.
    For every seed: a stratified split (:func:`split_cohort`), then on its training part the whole
    method refitted (:func:`fit_pipeline`: normalisation, filter, LASSO with its own 10-fold CV
    seeded by the split's seed, clinical encodings, imputation values and predictor selection, the
    RDM and combined models), and the AUCs on its validation part. ``X``: raw features of every
    usable patient, ``raw``: their manifest rows, ``truth``: true probability per patient.
    ``workers``: processes (:func:`resampling.run_tasks`; the result does not depend on it).

    Returns ``dict(seeds, n_validation, combined_auc, oracle_auc, difference (oracle - combined),
    summary: {combined_auc, oracle_auc, difference}: {median, q1, q3}, within_0_1 (fraction of
    splits whose difference is below 0.1), failed, method)``.
    """
    from .resampling import repeated_splits

    truth = truth.copy()
    truth.index = truth.index.map(str)
    results = repeated_splits(X, raw, y, truth, clinical_columns=clinical_columns, options=options,
                              seeds=seeds, train_fraction=train_fraction, workers=workers)
    out = {"seeds": [], "n_validation": [], "combined_auc": [], "oracle_auc": [], "difference": [],
           "failed": [r for r in results if "error" in r]}
    for r in results:
        if "error" in r:
            continue
        out["seeds"].append(r["seed"])
        out["n_validation"].append(r["n_validation"])
        out["combined_auc"].append(r["combined_auc"])
        out["oracle_auc"].append(r["oracle_auc"])
        out["difference"].append(r["oracle_auc"] - r["combined_auc"])

    def spread(values):
        if not values:
            return None
        q1, med, q3 = np.percentile(values, [25, 50, 75])
        return {"median": float(med), "q1": float(q1), "q3": float(q3)}
    out["summary"] = {k: spread(out[k]) for k in ("combined_auc", "oracle_auc", "difference")}
    out["within_0_1"] = float(np.mean(np.asarray(out["difference"]) < 0.1)) if out["difference"] else None
    out["method"] = ("per seed: stratified split; the whole method refitted on its training part (usable "
                     "features, min-max normalisation, univariate filter, LASSO with its own 10-fold CV seeded "
                     "by the split's seed, clinical encodings, imputation values and predictor selection, RDM "
                     "and combined models); AUCs in the split's validation cohort")
    return out


# --------------------------------------------------------------------------------------------
# The whole method


def _stability_summary(stability, keep_unstable: bool, unstable: list, train_ids) -> dict:
    """The model file's account of the stability screen: what was excluded (or kept) and why."""
    from .stability import ATOL, RTOL
    if stability is None:
        return {"applied": False, "source": None, "excluded": [], "kept_unstable": [],
                "note": "no feature_stability.json beside the features: the stability screen excluded nothing"}
    screened = len({str(p) for p in train_ids} & stability.screened)
    rule = (f"a feature unstable (moving by more than {RTOL:g} relative + {ATOL:g} absolute when the image is "
            f"perturbed by 1e-6 or stored in the other float type) in more than {stability.max_share:.0%} of "
            "the screened training patients")
    rows = [{k: r[k] for k in ("feature", "share", "unstable_in", "screened", "reason")} for r in unstable]
    if keep_unstable:
        note = (f"--keep-unstable: {len(rows)} numerically unstable feature(s) kept ({rule}); "
                "the paper's feature set")
    else:
        note = f"stability screen: {len(rows)} feature(s) excluded before selection: {rule}"
    return {"applied": not keep_unstable, "source": stability.source, "rule": rule,
            "max_unstable_share": stability.max_share, "training_patients_screened": screened,
            "excluded": [] if keep_unstable else rows, "kept_unstable": rows if keep_unstable else [],
            "note": note}


def _feature_columns(columns) -> list:
    try:
        from .pipeline import feature_columns
        return list(feature_columns(columns))
    except ImportError:  # the single-patient pipeline not in this checkout: same rule
        return [c for c in columns if "__" in str(c) and not str(c).startswith("diag__")]


def section_roi_models(columns) -> dict:
    """The paper's ROI models for the section whose feature names ``columns`` hold: RM_GTV on ``GTV``,
    or on ``GTV_25D2`` for ``--section largest:2``, ``GTV_3D`` for ``volume`` (see pipeline.section_roi_name)."""
    from .pipeline import section_of_columns, section_roi_name
    section = section_of_columns(columns) or "largest"
    return {model: section_roi_name(roi, section) for model, roi in DEFAULT_ROI_MODELS.items()}


def _check_events(y: np.ndarray, where: str):
    n1, n0 = int(y.sum()), int(y.size - y.sum())
    if n1 == 0 or n0 == 0:
        raise DataError(f"the {where} has only one outcome class ({n1} resistant, {n0} sensitive)",
                        hint="the models need both resistant (1) and sensitive (0) patients: check the "
                             "manifest's outcome column")
    if min(n1, n0) < CV_FOLDS:
        raise DataError(f"the {where} has {n1} resistant and {n0} sensitive patients; 10-fold "
                        f"cross-validation of the LASSO needs at least {CV_FOLDS} of each",
                        hint="add patients (the paper trained on 154), or use a larger training "
                             "fraction / a split column that puts more events in training")


def _prepare(features: pd.DataFrame, manifest) -> tuple:
    feats = features.copy()
    if "patient_id" in feats.columns:
        feats = feats.set_index("patient_id")
    feats.index = feats.index.map(str)
    if feats.index.duplicated().any():
        dup = feats.index[feats.index.duplicated()][0]
        raise DataError("the features table has more than one row for a patient", patient=dup,
                        hint="remove the duplicate rows (rerun cohort-extract into a fresh folder)")
    df = manifest.df.copy()
    df.index = df.index.map(str)
    if "outcome" not in df.columns or not getattr(manifest, "has_outcome", True):
        raise DataError("the manifest has no outcome column",
                        hint="add 'outcome' (1 = resistant, 0 = sensitive, or RECIST CR/PR/SD/PD)")
    notes = []
    no_outcome = df.index[df["outcome"].isna()]
    if len(no_outcome):
        notes.append(f"{len(no_outcome)} patient(s) without an outcome excluded")
    df = df.loc[df["outcome"].notna()]
    missing = [p for p in df.index if p not in feats.index]
    if missing:
        notes.append(f"{len(missing)} patient(s) without a feature row excluded (extraction failed?): "
                     + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    ids = [p for p in df.index if p in feats.index]
    cols = _feature_columns(feats.columns)
    if not cols:
        raise DataError("the features table has no feature columns ('<ROI>__<feature>')",
                        hint="pass the features.csv written by doseradiomics cohort-extract")
    X = feats.loc[ids, cols]
    text = [c for c, dt in zip(X.columns, X.dtypes) if not pd.api.types.is_numeric_dtype(dt)]
    if text:  # only columns read as text need converting (thousands of numeric ones do not)
        X = X.copy()
        X[text] = X[text].apply(pd.to_numeric, errors="coerce")
    failed = X.index[X.isna().all(axis=1)]
    if len(failed):
        notes.append(f"{len(failed)} patient(s) whose feature row is empty excluded: " + ", ".join(failed[:10]))
        X = X.drop(index=failed)
    ids = list(X.index)
    hashes = feats.loc[ids, "settings_hash"].dropna().astype(str).unique() if "settings_hash" in feats else []
    if len(hashes) > 1:
        raise DataError(f"the features were extracted with {len(hashes)} different settings "
                        f"({', '.join(hashes[:3])})",
                        hint="re-extract the whole cohort with one configuration")
    return X, df.loc[ids], (hashes[0] if len(hashes) else None), notes


def train_models(features: pd.DataFrame, manifest, seed: int = 0, lasso_rule: str = "1se",
                 alpha_univariate: float = 0.05, split_column: str | None = "split",
                 train_fraction: float = 0.7, roi_models: dict | None = None,
                 extraction_options: dict | None = None, ground_truth: pd.Series | None = None,
                 repeated_splits: int = REPEATED_SPLITS, fingerprint="compute", harmonise: str | None = None,
                 harmonise_covariates=(), harmonise_unknown_centre: str = "refuse", *, ttest: str = "student",
                 mannwhitney_exact: str = "paper", penalised: str = "none", bootstrap: int = 0,
                 bootstrap_seed: int | None = None, loco: bool = True, workers: int = 1,
                 robustness: tuple | None = None, stability=None,
                 keep_unstable: bool = False) -> TrainedModels:
    """Fit the paper's six models on the training cohort and evaluate them in both cohorts.

    ``features``: the cohort's features table (``patient_id`` column or index, ``settings_hash``,
    ``<ROI>__<feature>`` columns). ``manifest``: a :class:`manifest.Manifest` (``.df`` indexed by
    patient id with ``outcome`` and the clinical columns). ``ground_truth``: optional true
    probability per patient id (synthetic cohorts): its validation AUC (the oracle) is recorded,
    and, when ``repeated_splits`` > 0, the :func:`repeated_split_assessment` over that many further
    random splits (seeds ``seed + 1`` ...) in ``ground_truth["repeated_splits"]``.
    ``fingerprint``: the compatibility fingerprint stored in the model file (:mod:`fingerprint`):
    "compute" (default) computes it here for ``extraction_options`` (the defaults if None), which is
    right when the features were extracted with this installation; None leaves it out, and
    ``predict`` then refuses the model.
    ``harmonise="combat"``: ComBat (:mod:`harmonise`) fitted on the training rows, protecting the
    outcome and ``harmonise_covariates``, applied to every patient before normalisation; stored in
    the model file's ``harmonisation`` block.
    ``ttest``, ``mannwhitney_exact``, ``penalised``: see :class:`MethodOptions` (defaults: the paper's).
    ``bootstrap`` > 0: Harrell's optimism correction with that many replicates
    (:func:`resampling.bootstrap_optimism`, seeded by ``bootstrap_seed``, default ``seed``) in
    ``internal_validation["bootstrap"]``; ``loco``: leave-one-centre-out validation when the manifest
    has a ``centre`` column with at least two centres (``internal_validation["leave_one_centre_out"]``);
    ``workers``: processes for the resampling (results do not depend on it).
    ``robustness``: ``(robustness.csv table, min_icc or None, path)``: with ``min_icc``, only features
    whose ICC is at least ``min_icc`` enter the method (before the univariate filter, in every
    resampling too); the model file's ``robustness`` block holds the ICC of every selected feature.
    ``stability``: the :class:`stability.Exclusion` read from the features' ``feature_stability.json``:
    features unstable in more than its share of the training patients are left out before selection
    (in every refit, on its own training rows), unless ``keep_unstable``; both are reported.
    Raises DataError when the data cannot support the analysis.
    """
    from .environment import library_versions

    roi_models = dict(roi_models or section_roi_models(features.columns))
    options = MethodOptions(lasso_rule=lasso_rule, alpha_univariate=alpha_univariate, ttest=ttest,
                            mannwhitney_exact=mannwhitney_exact, penalised=penalised,
                            roi_models=tuple(roi_models.items()), stability=stability,
                            keep_unstable=bool(keep_unstable)).check()
    X, df, settings_hash, notes = _prepare(features, manifest)
    icc_summary = None
    if robustness is not None:
        # an outcome-blind screen, so applied once to the whole table, before anything is fitted
        from .robustness import icc_screen
        kept, icc_summary = icc_screen(X.columns, settings_hash, robustness[0], robustness[1], robustness[2])
        if robustness[1] is not None:
            if not kept:
                raise DataError(f"no feature has ICC >= {robustness[1]}", path=robustness[2],
                                hint="lower --min-icc, or check the robustness file is this cohort's")
            X = X[kept]
            notes.append(f"robustness screen: {icc_summary['n_removed']} of {icc_summary['n_features']} features "
                         f"removed with {icc_summary['icc_form']} below {robustness[1]} (or undefined)")
    y_all = df["outcome"].astype(int)
    _check_events(y_all.to_numpy(), "cohort")

    given = None
    if split_column and split_column in df.columns and df[split_column].notna().all():
        given = df[split_column]
    elif split_column and split_column in df.columns and df[split_column].notna().any():
        raise DataError(f"the manifest's {split_column} column is filled for some patients only",
                        hint="fill it for every patient, or remove it for a random 7:3 split")
    cohort = split_cohort(y_all, seed=seed, train_fraction=train_fraction, given=given)
    train = cohort == "train"
    if not train.any() or train.all():
        raise DataError("the split leaves one cohort empty", hint="check the split column")
    y_tr = y_all[train].to_numpy()
    _check_events(y_tr, "training cohort")
    y_va = y_all[~train].to_numpy()
    if len(np.unique(y_va)) < 2:   # no AUC, sensitivity or specificity: refuse before any fit or file
        only = "resistant" if y_va[0] == 1 else "sensitive"
        raise DataError(f"the validation cohort has only {only} patients ({len(y_va)}): AUC, sensitivity "
                        "and specificity cannot be computed there",
                        hint="give the split column patients of both outcomes in validation, or drop it "
                             "for a stratified random 7:3 split")

    combat = None
    if harmonise == "combat":
        # Before normalisation (ComBat works on the features' own scale), fitted on the training rows,
        # once: the resampling below refits the method on the harmonised features (docs/harmonisation.md).
        from .harmonise import harmonise_cohort
        Xtr_raw = X.loc[train]
        finite = np.isfinite(Xtr_raw.to_numpy(dtype=float)).all(axis=0)
        spread = (Xtr_raw.max() - Xtr_raw.min()).to_numpy(dtype=float)
        combat_columns = [c for c, ok, sp in zip(X.columns, finite, spread) if ok and sp > 0]
        X, combat_fit, protected, hnotes = harmonise_cohort(X, df, train, combat_columns,
                                                            covariates=harmonise_covariates,
                                                            unknown_centre=harmonise_unknown_centre)
        combat = (combat_fit, protected, combat_columns)
        notes += hnotes
    elif harmonise not in (None, "none"):
        raise DataError(f"unknown harmonisation {harmonise!r}", hint="use 'combat' or leave it out")

    # Everything fitted is fitted here, on the training rows only (fit_pipeline)
    clinical_columns = [c for c in getattr(manifest, "clinical_columns", []) if c in df.columns]
    fitted = fit_pipeline(X.loc[train], df.loc[train], y_tr, clinical_columns, options, seed)
    models, selection, coding = fitted["models"], fitted["selection"], fitted["coding"]
    usable = fitted["usable"]
    clinical_analysis = fitted["clinical_analysis"]
    dropped_nonfinite, dropped_constant = fitted["dropped_nonfinite"], fitted["dropped_constant"]
    stability_screen = _stability_summary(stability, keep_unstable, fitted["unstable"], X.index[train])
    if stability_screen["note"]:
        notes.append(stability_screen["note"])
    notes += fitted["notes"]
    warnings_ = list(fitted["warnings"])
    # missing clinical values counted over both cohorts (imputed with the training values)
    clinical_analysis["imputed"] = encode_clinical(df[list(coding)], coding)[1]

    # Scores on everybody (probabilities); the combined model takes the RDM linear predictor.
    probabilities = score_pipeline(fitted, X, df)
    scores = {name: pd.Series(probabilities[name], index=X.index) for name in MODEL_NAMES}
    finite_rows = {name: np.isfinite(probabilities[name]) for name in MODEL_NAMES}

    usable_rows = np.logical_and.reduce([finite_rows[n] for n in MODEL_NAMES])
    bad_val = [p for p, ok in zip(X.index, usable_rows) if not ok]
    if any(train[p] for p in bad_val):  # cannot happen: training columns are finite
        raise DataError("a training patient has no score", patient=bad_val[0])
    if bad_val:
        notes.append(f"{len(bad_val)} validation patient(s) with missing values in the models' features "
                     "excluded from the evaluation: " + ", ".join(bad_val[:10]))

    # Cut-offs (Youden on training) and evaluation in both cohorts
    from .stats.roc import youden_cutoff
    evaluation = {"train": {}, "validation": {}}
    comparisons = []
    cutoffs = {}
    for name in MODEL_NAMES:
        s_tr = scores[name][train].to_numpy()
        cutoffs[name] = float(youden_cutoff(y_tr, s_tr)) if np.ptp(s_tr) > 0 else 0.5
    for cname in ("train", "validation"):
        rows = (cohort == cname).to_numpy() & usable_rows
        y_c = y_all[rows].to_numpy()
        cs = {name: scores[name][rows].to_numpy() for name in MODEL_NAMES}
        for name in MODEL_NAMES:
            ev = evaluate_scores(y_c, cs[name], cutoffs[name])
            ev["cutoff"] = cutoffs[name]
            evaluation[cname][name] = ev
        if y_c.min() != y_c.max():
            comparisons += compare_models(y_c, cs, cname)
    cutoff = cutoffs["combined"]
    high = (scores["combined"] >= cutoff).astype(int)

    # Risk stratification
    survival = {"cutoff": cutoff, "endpoints": {}, "notes": []}
    for endpoint in ("pfs", "os"):
        tcol, ecol = f"{endpoint}_months", f"{endpoint}_event"
        if tcol not in df.columns or ecol not in df.columns or df[tcol].isna().all():
            survival["notes"].append(f"{endpoint.upper()}: no {tcol}/{ecol} columns in the manifest, skipped")
            continue
        survival["endpoints"][endpoint] = {}
        for cname in ("train", "validation"):
            rows = (cohort == cname) & usable_rows & df[tcol].notna() & df[ecol].notna()
            if rows.sum() < 2:
                continue
            survival["endpoints"][endpoint][cname] = stratify_survival(
                df.loc[rows, tcol].astype(float), df.loc[rows, ecol].astype(int), high[rows])
            n_missing = int(((cohort == cname) & usable_rows).sum() - rows.sum())
            if n_missing:
                survival["endpoints"][endpoint][cname].setdefault("notes", []).append(
                    f"{n_missing} patient(s) without {endpoint.upper()} data left out")
    notes += survival["notes"]

    # Oracle (synthetic cohorts)
    gt = None
    if ground_truth is not None:
        from .stats.roc import delong_auc_ci
        truth = ground_truth.copy()
        truth.index = truth.index.map(str)
        val_ids = [p for p, ok in zip(X.index, usable_rows) if ok and cohort[p] == "validation" and p in truth.index]
        if val_ids:
            yv = y_all.loc[val_ids].to_numpy()
            oracle = delong_auc_ci(yv, truth.loc[val_ids].to_numpy(dtype=float))
            comb = evaluation["validation"]["combined"]["auc"]
            gt = {"cohort": "validation", "n": len(val_ids), "oracle_auc": oracle["auc"],
                  "oracle_ci_low": oracle["ci_low"], "oracle_ci_high": oracle["ci_high"],
                  "combined_auc": comb, "difference": comb - oracle["auc"], "ratio": comb / oracle["auc"]}
        if gt is not None and repeated_splits and repeated_splits > 0:
            gt["repeated_splits"] = repeated_split_assessment(
                X, df, y_all, truth, clinical_columns=clinical_columns, options=options,
                seeds=range(seed + 1, seed + 1 + int(repeated_splits)), train_fraction=train_fraction,
                workers=workers)

    # Internal validation beyond the split: bootstrap optimism, leave-one-centre-out
    internal = {}
    if bootstrap and bootstrap > 0:
        from .resampling import bootstrap_optimism, performance
        train_pos = np.flatnonzero(train.to_numpy())
        apparent = {n: performance(y_tr, scores[n].to_numpy()[train_pos]) for n in MODEL_NAMES}
        internal["bootstrap"] = bootstrap_optimism(
            X, df, y_all.to_numpy(), train_pos, apparent, clinical_columns=clinical_columns, options=options,
            replicates=int(bootstrap), seed=seed if bootstrap_seed is None else int(bootstrap_seed),
            workers=workers)
        if internal["bootstrap"]["failed"]:
            warnings_.append(f"bootstrap: {len(internal['bootstrap']['failed'])} of {bootstrap} replicate(s) "
                             f"failed (e.g. {internal['bootstrap']['failed'][0]['error']}) and were left out")
    if loco and "centre" in df.columns:
        centres = df["centre"].astype("string").str.strip()
        if centres.dropna().nunique() >= 2:
            from .resampling import leave_one_centre_out
            internal["leave_one_centre_out"] = leave_one_centre_out(
                X, df, y_all.to_numpy(), centres, clinical_columns=clinical_columns, options=options,
                seed=seed, workers=workers)
            for r in internal["leave_one_centre_out"]["centres"]:
                if "error" in r:
                    notes.append(f"leave-one-centre-out: centre {r['centre']} not assessed: {r['error']}")

    n_tr, n_va = int(train.sum()), int((~train).sum())
    cohort_summary = {
        "n": int(len(y_all)), "events": int(y_all.sum()),
        "train": {"n": n_tr, "events": int(y_tr.sum())},
        "validation": {"n": n_va, "events": int(y_all[~train].sum())},
        "split": "given by the manifest's split column" if given is not None else
                 f"stratified random split, train fraction {train_fraction}, seed {seed}",
        "outcome": "1 = radiochemotherapy resistant (RECIST SD/PD), 0 = sensitive (CR/PR)",
        "n_features_extracted": int(X.shape[1]), "n_features_usable": len(usable),
        "dropped_features": {"missing_values": dropped_nonfinite, "constant": dropped_constant,
                             "unstable": 0 if keep_unstable else len(fitted["unstable"])},
        "stability_screen": stability_screen,
    }
    harmonisation = None
    if combat is not None:
        from .harmonise import harmonisation_entry
        used = {f for n in ("RM_GTV", "DM_GTV", "DM_50Gy", "RDM") for f in models[n]["features"]}
        harmonisation = harmonisation_entry(combat[0], combat[2], combat[1], harmonise_unknown_centre, keep=used)
    patients = pd.DataFrame({"cohort": cohort, "outcome": y_all,
                             **{f"p_{n}": scores[n] for n in MODEL_NAMES},
                             "risk_group": np.where(high == 1, "high", "low")})
    return TrainedModels(
        models=models, clinical_coding=coding, cutoff=cutoff, settings_hash=settings_hash,
        extraction_options=extraction_options, fingerprint=_fingerprint(fingerprint, extraction_options),
        cohort=cohort_summary, selection=selection,
        clinical_analysis=clinical_analysis, evaluation=evaluation, comparisons=comparisons,
        survival=survival, cohort_table=cohort_table(df, cohort, coding),
        settings={"seed": seed, "lasso_rule": lasso_rule, "alpha_univariate": alpha_univariate,
                  "cv_folds": CV_FOLDS, "train_fraction": train_fraction, "roi_models": roi_models,
                  "normalisation": "min-max fitted on the training cohort",
                  "univariate_test": "t-test if Shapiro-Wilk accepts normality (p > 0.05), else Mann-Whitney U",
                  "clinical_selection": "univariate logistic p < 0.1 -> multivariate; independent p < 0.05",
                  **options.describe(), "events_per_variable": EPV_DEFINITION,
                  "bootstrap": int(bootstrap or 0),
                  "bootstrap_seed": (seed if bootstrap_seed is None else int(bootstrap_seed)) if bootstrap else None},
        library_versions=library_versions(), notes=notes, ground_truth=gt, patients=patients,
        warnings=warnings_, internal_validation=internal or None, harmonisation=harmonisation,
        robustness=_robustness_entry(icc_summary, models))


def _robustness_entry(summary, models):
    """The screen's summary for the model file: the ICC of each selected feature, not of all of them."""
    if summary is None:
        return None
    from .robustness import selected_iccs
    entry = {k: v for k, v in summary.items() if k != "icc"}
    entry["selected"] = selected_iccs(summary, {n: models[n] for n in ("RM_GTV", "DM_GTV", "DM_50Gy")})
    return entry


def _fingerprint(fingerprint, extraction_options):
    if isinstance(fingerprint, str) and fingerprint == "compute":
        from . import fingerprint as fp
        from .pipeline import ExtractionOptions
        try:
            options = ExtractionOptions(**extraction_options) if extraction_options else ExtractionOptions()
        except TypeError as exc:
            raise DataError(f"the cohort's extraction options are not understood: {exc}",
                            hint="re-extract the cohort with this version of DoseRadiomics") from None
        return fp.compute(options)
    if fingerprint is not None and not isinstance(fingerprint, dict):
        raise TypeError("fingerprint must be 'compute', a dict from fingerprint.compute or None")
    return fingerprint


# --------------------------------------------------------------------------------------------
# Command line: doseradiomics train


def read_features(path) -> pd.DataFrame:
    """Read a features.csv (patient ids kept as text)."""
    from pathlib import Path
    path = Path(path)
    if not path.is_file():
        raise DataError("features table not found", path=path,
                        hint="run doseradiomics cohort-extract first and pass its features.csv")
    try:
        frame = pd.read_csv(path, dtype={"patient_id": str, "settings_hash": str})
    except UnicodeDecodeError as exc:
        raise DataError(f"the features table is not UTF-8 text (byte {exc.start})", path=path,
                        hint="a features table is a UTF-8 CSV (a BOM and CRLF line ends are fine), as "
                             "cohort-extract writes it; re-save it as 'CSV UTF-8'") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataError(f"cannot read the features table as CSV: {exc}", path=path,
                        hint="give the features.csv that extract or cohort-extract wrote") from None
    if "patient_id" in frame:    # the writers' formula-safe ' undone
        frame["patient_id"] = [csv_cell_value(v) if isinstance(v, str) else v for v in frame["patient_id"]]
    return frame


def read_ground_truth(path) -> pd.Series:
    """The true probability per patient from a synthetic cohort's ground_truth.csv."""
    frame = read_features(path)
    if "patient_id" not in frame.columns:
        raise DataError("ground truth has no patient_id column", path=path)
    known = ("true_p", "true_probability", "p_true", "probability")
    candidates = [c for c in frame.columns if c.lower() in known] or \
                 [c for c in frame.columns if "prob" in c.lower()]
    if not candidates:
        raise DataError("ground truth has no probability column (true_p, or a name containing 'prob')",
                        path=path)
    return pd.to_numeric(frame.set_index("patient_id")[candidates[0]], errors="coerce").dropna()


def _find_extraction_record(features_path) -> tuple:
    """(options, fingerprint) recorded beside a cohort's features.csv by cohort-extract, else None."""
    import json
    from pathlib import Path
    folder = Path(features_path).resolve().parent
    for name in ("extraction_options.json", "cohort.json", "extraction.json"):
        f = folder / name
        if f.is_file():
            try:
                data = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            opts = data.get("options", data.get("extraction_options")) if isinstance(data, dict) else None
            if isinstance(opts, dict):
                fp = data.get("fingerprint")
                return opts, (fp if isinstance(fp, dict) and isinstance(fp.get("features"), dict) else None)
    return None, None


def add_stability_screen_arguments(p, kept: str) -> None:
    """--keep-unstable (``kept``: what it keeps) and --max-unstable-share, for train and compare."""
    p.add_argument("--keep-unstable", action="store_true", help=f"keep {kept}")
    p.add_argument("--max-unstable-share", type=float, default=None, metavar="SHARE",
                   help="leave out a feature unstable in more than this share of the screened training "
                        "patients (default 0.5)")


def find_stability(features, given=None, max_unstable_share=None):
    """The stability sidecar of a features.csv: ``given`` (--stability FILE), else feature_stability.json
    beside ``features`` (None when there is none); for train and compare."""
    from pathlib import Path
    from .stability import MAX_UNSTABLE_SHARE, SIDECAR, read_sidecar
    share = MAX_UNSTABLE_SHARE if max_unstable_share is None else max_unstable_share
    if not 0 <= share <= 1:
        raise DataError(f"--max-unstable-share {share} is not a share", hint="give a number from 0 to 1, e.g. 0.5")
    path = Path(given) if given else Path(features).resolve().parent / SIDECAR
    if not given and not path.is_file():
        return None
    return read_sidecar(path, share)


def format_auc_table(trained: TrainedModels) -> str:
    """The AUC table as fixed-width text (what ``train`` prints)."""
    lines = [f"{'model':10s} {'cohort':10s} {'AUC':>6s} {'95% CI':>15s} {'acc':>6s} {'sens':>6s} {'spec':>6s}"]
    for r in trained.auc_table().itertuples():
        lines.append(f"{r.model:10s} {r.cohort:10s} {r.auc:6.3f} {r.ci_low:6.3f}-{r.ci_high:<6.3f}   "
                     f"{r.accuracy:6.3f} {r.sensitivity:6.3f} {r.specificity:6.3f}")
    return "\n".join(lines)


def format_internal_validation(trained: TrainedModels) -> list:
    """Console lines: events per variable, bootstrap optimism-corrected figures, leave-one-centre-out."""
    lines = []
    epv = [f"{n} {m['events_per_variable']['epv']:.1f}" for n in MODEL_NAMES
           for m in [trained.models[n]] if (m.get("events_per_variable") or {}).get("epv")]
    if epv:
        lines.append("events per variable (minority class / model inputs): " + ", ".join(epv))
    iv = trained.internal_validation or {}
    boot = iv.get("bootstrap")
    if boot:
        lines.append(f"bootstrap optimism correction ({boot['completed']} of {boot['replicates']} replicates, "
                     f"seed {boot['seed']}, training cohort n = {boot['n']}):")
        lines.append(f"  {'model':10s} {'AUC app':>8s} {'corr':>6s} {'.632+':>6s} {'valid':>6s}   {'slope corr':>10s}   "
                     f"{'Brier app':>9s} {'corr':>6s}")
        for name in MODEL_NAMES:
            sm = boot["summary"][name]
            val = trained.evaluation.get("validation", {}).get(name, {}).get("auc", float("nan"))
            lines.append(f"  {name:10s} {sm['auc']['apparent']:8.3f} {sm['auc']['corrected']:6.3f} "
                         f"{sm['auc'].get('estimate_632plus', float('nan')):6.3f} {val:6.3f}   "
                         f"{sm['calibration_slope']['corrected']:10.3f}   {sm['brier']['apparent']:9.3f} "
                         f"{sm['brier']['corrected']:6.3f}")
    loco = iv.get("leave_one_centre_out")
    if loco:
        parts = []
        for r in loco["centres"]:
            if "error" in r:
                parts.append(f"{r['centre']} (n {r['n']}): not assessed")
            else:
                parts.append(f"{r['centre']} (n {r['n']}) {r['models']['combined']['auc']:.3f}")
        lines.append("leave-one-centre-out AUC, combined model: " + "; ".join(parts))
    return lines


def run(args) -> int:
    """``doseradiomics train``."""
    from .fileio import atomic_write_text, check_output_file
    from .manifest import read_manifest
    from .modelfile import save_model
    for out in (args.out, args.predictions):   # before the fitting, not after it
        if out:
            check_output_file(out)
    features = read_features(args.features)
    manifest = read_manifest(args.manifest)
    truth = read_ground_truth(args.ground_truth) if args.ground_truth else None
    screen = None
    if getattr(args, "min_icc", None) is not None and not getattr(args, "robustness", None):
        raise DataError("--min-icc needs --robustness FILE (the robustness.csv of doseradiomics robustness)")
    if getattr(args, "robustness", None):
        from .robustness import read_robustness
        screen = (read_robustness(args.robustness), args.min_icc, args.robustness)
    # The fingerprint of the installation that extracted the features (cohort.json), else this one's.
    options, fingerprint = _find_extraction_record(args.features)
    stability = find_stability(args.features, getattr(args, "stability", None),
                               getattr(args, "max_unstable_share", None))
    trained = train_models(features, manifest, seed=args.seed, lasso_rule=args.lasso_rule,
                           extraction_options=options, ground_truth=truth,
                           repeated_splits=getattr(args, "repeated_splits", REPEATED_SPLITS),
                           fingerprint=fingerprint or "compute",
                           harmonise=getattr(args, "harmonise", None),
                           harmonise_covariates=getattr(args, "harmonise_covariates", None) or (),
                           harmonise_unknown_centre=getattr(args, "harmonise_unknown_centre", "refuse"),
                           ttest=args.ttest, mannwhitney_exact=args.mannwhitney_exact, penalised=args.penalised,
                           bootstrap=args.bootstrap, bootstrap_seed=args.bootstrap_seed,
                           loco=args.loco == "auto", workers=args.workers, robustness=screen,
                           stability=stability, keep_unstable=getattr(args, "keep_unstable", False))
    auc_table = format_auc_table(trained)   # every step checked before the model file is written
    save_model(trained, args.out)
    c = trained.cohort
    print(f"cohort: {c['n']} patients ({c['events']} resistant); training {c['train']['n']} "
          f"({c['train']['events']}), validation {c['validation']['n']} ({c['validation']['events']})")
    for name in MODEL_NAMES:
        m = trained.models[name]
        print(f"{name}: {len(m['features'])} input(s)")
    print(auc_table)
    print(f"risk cut-off (combined model, Youden on training): {trained.cutoff:.3f}")
    for line in format_internal_validation(trained):
        print(line)
    if trained.robustness:
        from .robustness import format_screen
        for line in format_screen(trained.robustness):
            print(line)
    if trained.ground_truth:
        g = trained.ground_truth
        print(f"validation AUC: combined {g['combined_auc']:.3f} vs oracle (true probabilities) "
              f"{g['oracle_auc']:.3f} (ratio {g['ratio']:.3f})")
        rs = g.get("repeated_splits")
        if rs and rs["summary"]["combined_auc"]:
            sm = rs["summary"]
            print(f"over {len(rs['seeds'])} further random splits: validation AUC combined median "
                  f"{sm['combined_auc']['median']:.3f} (IQR {sm['combined_auc']['q1']:.3f}-{sm['combined_auc']['q3']:.3f}), "
                  f"oracle {sm['oracle_auc']['median']:.3f} (IQR {sm['oracle_auc']['q1']:.3f}-"
                  f"{sm['oracle_auc']['q3']:.3f}); oracle - combined median {sm['difference']['median']:.3f} "
                  f"(IQR {sm['difference']['q1']:.3f}-{sm['difference']['q3']:.3f}), below 0.1 in "
                  f"{rs['within_0_1']:.0%} of splits")
    for note in trained.notes:
        print(f"note: {note}")
    for warning in trained.warnings:
        print(f"warning: {warning}")
    if args.predictions:
        atomic_write_text(args.predictions, csv_safe_frame(trained.patients).to_csv(index_label="patient_id"))
        print(f"per-patient probabilities: {args.predictions}")
    print(f"model written to {args.out}")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="fit the paper's six models on a cohort and write a model file",
        description="Split the cohort 7:3 (or by the manifest's split column), select features per ROI "
                    "(univariate filter, LASSO with 10-fold CV), fit the clinical, RM_GTV, DM_GTV, DM_50Gy, "
                    "RDM and combined logistic models on the training cohort, evaluate them in both "
                    "cohorts and write everything to a JSON model file.")
    p.add_argument("--features", required=True, help="features.csv from doseradiomics cohort-extract")
    p.add_argument("--manifest", required=True, help="the cohort manifest (outcome, clinical variables, survival)")
    p.add_argument("--out", required=True, help="model file to write (JSON), e.g. model.json")
    p.add_argument("--seed", type=int, default=0, help="seed of the 7:3 split and the LASSO folds (default 0)")
    p.add_argument("--lasso-rule", choices=("1se", "min"), default="1se",
                   help="LASSO lambda: largest within one standard error of the best CV deviance (1se, "
                        "default) or the best (min)")
    p.add_argument("--ground-truth", help="ground_truth.csv of a synthetic cohort: report the oracle AUC")
    p.add_argument("--predictions", help="also write each patient's probabilities to this CSV")
    p.add_argument("--repeated-splits", type=int, default=REPEATED_SPLITS,
                   help=f"with --ground-truth: also refit on this many further random 7:3 splits and report "
                        f"the median and IQR of the combined and oracle validation AUCs (default "
                        f"{REPEATED_SPLITS}, 0 to skip); each split refits the whole method")
    p.add_argument("--ttest", choices=("student", "welch"), default="student",
                   help="t-test of the univariate filter: Student's pooled variance (default, the paper's "
                        "'t-test') or Welch's (R's default)")
    p.add_argument("--mannwhitney-exact", choices=("paper", "R"), default="paper",
                   help="when the Mann-Whitney p-value is exact: with at most 8 per class and no ties (paper, "
                        "default: scipy's rule) or below 50 per class without ties (R's wilcox.test)")
    p.add_argument("--penalised", choices=("none", "firth"), default="none",
                   help="the six final logistic fits: maximum likelihood (none, default: the paper) or Firth's "
                        "bias-reduced logistic regression (finite estimates under separation)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="Harrell's bootstrap optimism correction of the whole method with N replicates "
                        "(200 or more recommended; default 0: not done)")
    p.add_argument("--bootstrap-seed", type=int, default=None,
                   help="seed of the bootstrap replicates (default: --seed)")
    p.add_argument("--loco", choices=("auto", "off"), default="auto",
                   help="leave-one-centre-out validation when the manifest has a centre column with at least "
                        "two centres (auto, default) or not (off)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes for the bootstrap, the repeated splits and leave-one-centre-out (default 1; "
                        "results do not depend on it)")
    add_stability_screen_arguments(p, "the features the stability screen found numerically unstable (the paper's "
                                      "exact feature set, for reproduction); by default they are left out and named "
                                      "in the report")
    p.add_argument("--stability", metavar="JSON", help="the stability sidecar (default: feature_stability.json "
                   "beside --features)")
    p.add_argument("--harmonise", choices=("none", "combat"), default="none",
                   help="ComBat harmonisation across the manifest's centre column (empirical-Bayes location "
                        "and scale per centre), fitted on the training cohort and stored in the model file")
    p.add_argument("--harmonise-covariates", nargs="*", default=[], metavar="COLUMN",
                   help="clinical columns ComBat protects besides the outcome, e.g. t_stage hb")
    p.add_argument("--harmonise-unknown-centre", choices=("refuse", "unadjusted"), default="refuse",
                   help="a patient of a centre not in training: refuse it (default), or use its features "
                        "unadjusted (with a warning)")
    p.add_argument("--robustness", metavar="CSV", help="robustness.csv of doseradiomics robustness on this "
                   "cohort: the ICC of every selected feature is reported (and, with --min-icc, screened)")
    p.add_argument("--min-icc", type=float, metavar="ICC", help="keep only features whose ICC(3,1) in --robustness "
                   "is at least this (e.g. 0.75) before the univariate filter; undefined ICCs are removed")
    p.set_defaults(func=run)
