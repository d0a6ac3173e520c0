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


def encode_clinical(raw: pd.DataFrame, coding: dict, *, impute: bool = True) -> tuple[pd.DataFrame, dict]:
    """Encode raw clinical columns by ``coding``; returns ``(encoded, n_imputed per variable)``."""
    rows, imputed = {}, {v: 0 for v in coding}
    for pid, row in raw.iterrows():
        out = {}
        for variable, spec in coding.items():
            value = row.get(variable)
            try:
                enc = encode_clinical_value(variable, value, spec)
            except ValueError as exc:
                raise DataError(str(exc), patient=str(pid),
                                hint=f"correct the manifest's {variable} column") from None
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
        return jsonable({
            "models": self.models,
            "model_order": list(MODEL_NAMES),
            "clinical_coding": self.clinical_coding,
            "risk": {"model": "combined", "cutoff": self.cutoff, "rule": "Youden index on the training "
                     "cohort's combined-model probabilities; probability >= cutoff is high risk"},
            "extraction": {"settings_hash": self.settings_hash, "options": self.extraction_options},
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
            "ground_truth": self.ground_truth,
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


def _model_entry(name, description, inputs, sources, mins, maxs, fit, notes=()):
    coefficients, intercept, fit_notes = fit
    return {"name": name, "description": description, "features": list(inputs), "sources": list(sources),
            "min": list(mins), "max": list(maxs), "coefficients": [float(c) for c in coefficients],
            "intercept": float(intercept), "intercept_only": len(inputs) == 0,
            "score": "probability of resistance = 1 / (1 + exp(-(intercept + sum(coefficient * input))))",
            "fit": fit_notes, "notes": list(notes)}


def _fit(X: pd.DataFrame, y: np.ndarray):
    """Unpenalised logistic regression (stats.logistic); intercept-only when X has no columns."""
    from .stats.logistic import fit_logistic
    if X.shape[1] == 0:
        rate = float(np.clip(y.mean(), 1e-12, 1 - 1e-12))
        return [], math.log(rate / (1 - rate)), ["intercept only: the training event rate"]
    fitted = fit_logistic(X, y)
    return _coef_list(fitted, list(X.columns)), float(fitted.intercept), list(getattr(fitted, "notes", []))


def linear_predictor(entry: dict, inputs: pd.DataFrame) -> np.ndarray:
    """Log-odds of a model entry on inputs already on the model's scale (normalised features)."""
    if not entry["features"]:
        return np.full(len(inputs), entry["intercept"])
    X = inputs[entry["features"]].to_numpy(dtype=float)
    return entry["intercept"] + X @ np.asarray(entry["coefficients"], dtype=float)


def sigmoid(z):
    z = np.asarray(z, dtype=float)
    return np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))))


def select_roi_features(Xn_train: pd.DataFrame, y: np.ndarray, *, alpha: float, rule: str, seed: int) -> dict:
    """Univariate filter then LASSO (10-fold CV) on one ROI's normalised training features."""
    from .stats.selection import lasso_select, univariate_filter
    out = {"n_features": int(Xn_train.shape[1]), "notes": []}
    uni = univariate_filter(Xn_train, y, alpha=alpha)
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
    lasso = lasso_select(Xn_train[passed], y, folds=CV_FOLDS, rule=rule, seed=seed)
    selected = [str(f) for f in lasso["selected"]]
    if not selected:
        out["notes"].append(f"LASSO ({rule} rule) kept no feature: intercept-only model")
    out.update(selected=selected, lasso=lasso)
    return out


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


def _lambda_index(lasso: dict | None):
    """Position of the chosen lambda on the main fit's path (its ratio to lambda_max), or None."""
    if not lasso:
        return None
    return int(lasso["cv"]["lambdas"].index(lasso["lambda_chosen"]))


def repeated_split_assessment(X: pd.DataFrame, y: pd.Series, clinical: pd.DataFrame, independent: list,
                              truth: pd.Series, roi_models: dict, lambda_index: dict, *, seeds,
                              alpha: float = 0.05, train_fraction: float = 0.7) -> dict:
    """Validation AUC of the combined model and of the truth over many random splits.

    One 7:3 split leaves a validation cohort of a few dozen patients whose AUC has a standard
    error of ~0.06, too noisy to judge how close the method comes to the true probabilities.
    For every seed: a stratified split (:func:`split_cohort`), then on its training part the
    univariate filter and a LASSO per ROI, the RDM and the combined model exactly as in
    :func:`train_models`, with three shortcuts that keep it fast and are stated in the result:
    the LASSO penalty is the main fit's cross-validated choice, kept as the same fraction of each
    split's own lambda_max (one path, no new cross-validation); the clinical inputs are the main
    fit's independent predictors, encoded and imputed as there; features are not min-max
    normalised (every step is invariant to that rescaling, so the models' predictions do not
    change). ``X``: raw features of every patient (columns ``<ROI>__...``), ``clinical``: the
    encoded clinical table, ``truth``: true probability per patient, ``lambda_index``: model name
    -> position of the chosen lambda on the 100-value path (None: no LASSO in the main fit).

    Returns ``dict(seeds, n_validation, combined_auc, oracle_auc, difference (oracle - combined),
    summary: {combined_auc, oracle_auc, difference}: {median, q1, q3}, within_0_1 (fraction of
    splits whose difference is below 0.1), method)``.
    """
    from .stats.elastic_net import lambda_grid, lambda_max, logistic_elastic_net_path, single_threaded_blas
    from .stats.roc import auc
    from .stats.selection import lasso_select, univariate_filter

    truth = truth.copy()
    truth.index = truth.index.map(str)
    out = {"seeds": [], "n_validation": [], "combined_auc": [], "oracle_auc": [], "difference": []}
    for seed in seeds:
        cohort = split_cohort(y, seed=seed, train_fraction=train_fraction)
        train = (cohort == "train").to_numpy()
        y_tr = y.to_numpy()[train]
        pooled = []
        for model_name, roi in roi_models.items():
            cols = [c for c in X.columns if str(c).startswith(f"{roi}__")]
            Xtr = X.loc[train, cols]
            values = Xtr.to_numpy(dtype=float)
            ok = np.isfinite(values).all(axis=0) & (np.ptp(np.where(np.isfinite(values), values, 0), axis=0) > 0)
            Xtr = Xtr.loc[:, ok]
            uni = univariate_filter(Xtr, y_tr, alpha=alpha)
            passed = [str(f) for f in uni.loc[uni["selected"].astype(bool), "feature"]]
            if len(passed) < 2:
                selected = passed
            elif lambda_index.get(model_name) is None:
                selected = lasso_select(Xtr[passed], y_tr, folds=CV_FOLDS, seed=seed)["selected"]
            else:
                values = Xtr[passed].to_numpy()
                lambdas = lambda_grid(lambda_max(values, y_tr), 100)[:lambda_index[model_name] + 1]
                with single_threaded_blas():
                    path = logistic_elastic_net_path(values, y_tr.astype(float), lambdas)
                beta = path["coefs"][-1]
                selected = [passed[j] for j in np.flatnonzero(beta)]
            pooled += [c for c in selected if c not in pooled]
        rdm = _fit(X.loc[train, pooled], y_tr)
        entry = {"features": pooled, "coefficients": rdm[0], "intercept": rdm[1]}
        lp = pd.Series(linear_predictor(entry, X), index=X.index)
        inputs = pd.concat([lp.rename(RDM_SCORE), clinical[independent]], axis=1)
        comb = _fit(inputs.loc[train], y_tr)
        entry = {"features": list(inputs.columns), "coefficients": comb[0], "intercept": comb[1]}
        score = pd.Series(linear_predictor(entry, inputs), index=X.index)
        val = [p for p, is_train, s in zip(X.index, train, score) if not is_train and np.isfinite(s)
               and p in truth.index]
        yv = y.loc[val].to_numpy()
        if yv.min() == yv.max():
            continue
        combined, oracle = auc(yv, score.loc[val].to_numpy()), auc(yv, truth.loc[val].to_numpy(dtype=float))
        out["seeds"].append(int(seed))
        out["n_validation"].append(len(val))
        out["combined_auc"].append(combined)
        out["oracle_auc"].append(oracle)
        out["difference"].append(oracle - combined)

    def spread(values):
        if not values:
            return None
        q1, med, q3 = np.percentile(values, [25, 50, 75])
        return {"median": float(med), "q1": float(q1), "q3": float(q3)}
    out["summary"] = {k: spread(out[k]) for k in ("combined_auc", "oracle_auc", "difference")}
    out["within_0_1"] = float(np.mean(np.asarray(out["difference"]) < 0.1)) if out["difference"] else None
    out["method"] = ("per seed: stratified 7:3 split; per ROI univariate filter and LASSO at the main fit's "
                     "cross-validated penalty (same fraction of lambda_max, no new cross-validation); RDM and "
                     "combined logistic models on the main fit's independent clinical predictors; AUCs in the "
                     "split's validation cohort")
    return out


# --------------------------------------------------------------------------------------------
# The whole method


def _feature_columns(columns) -> list:
    try:
        from .pipeline import feature_columns
        return list(feature_columns(columns))
    except ImportError:  # the single-patient pipeline not in this checkout: same rule
        return [c for c in columns if "__" in str(c) and not str(c).startswith("diag__")]


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
                 repeated_splits: int = REPEATED_SPLITS) -> TrainedModels:
    """Fit the paper's six models on the training cohort and evaluate them in both cohorts.

    ``features``: the cohort's features table (``patient_id`` column or index, ``settings_hash``,
    ``<ROI>__<feature>`` columns). ``manifest``: a :class:`manifest.Manifest` (``.df`` indexed by
    patient id with ``outcome`` and the clinical columns). ``ground_truth``: optional true
    probability per patient id (synthetic cohorts): its validation AUC (the oracle) is recorded,
    and, when ``repeated_splits`` > 0, the :func:`repeated_split_assessment` over that many further
    random splits (seeds ``seed + 1`` ...) in ``ground_truth["repeated_splits"]``.
    Raises DataError when the data cannot support the analysis.
    """
    from .environment import library_versions
    from .stats.logistic import univariate_multivariate
    from .stats.selection import MinMaxScaler

    if lasso_rule not in ("1se", "min"):
        raise DataError(f"unknown LASSO rule {lasso_rule!r}", hint="use '1se' or 'min'")
    roi_models = dict(roi_models or DEFAULT_ROI_MODELS)
    X, df, settings_hash, notes = _prepare(features, manifest)
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

    # Features usable for selection: finite in every training patient and not constant there.
    Xtr_raw = X.loc[train]
    finite = np.isfinite(Xtr_raw.to_numpy(dtype=float)).all(axis=0)
    spread = (Xtr_raw.max() - Xtr_raw.min()).to_numpy(dtype=float)
    usable = [c for c, ok, s in zip(X.columns, finite, spread) if ok and s > 0]
    dropped_nonfinite = int((~finite).sum())
    dropped_constant = int((finite & ~(spread > 0)).sum())
    if dropped_nonfinite or dropped_constant:
        notes.append(f"{dropped_nonfinite} feature(s) with missing values and {dropped_constant} constant "
                     "feature(s) in the training cohort dropped before selection")
    scaler = MinMaxScaler().fit(Xtr_raw[usable])
    Xn = scaler.transform(X[usable].where(np.isfinite(X[usable]), np.nan))
    Xn.index = X.index
    mins = dict(zip(usable, np.asarray(scaler.min_, dtype=float)))
    maxs = dict(zip(usable, np.asarray(scaler.max_, dtype=float)))

    # Per-ROI selection and models
    models, selection = {}, {}
    pooled = []
    for model_name, roi in roi_models.items():
        cols = [c for c in usable if str(c).startswith(f"{roi}__")]
        if not cols:
            raise DataError(f"the features table has no usable columns for ROI {roi!r} (model {model_name})",
                            hint=f"extract the {roi} ROI for the cohort, or check its feature values")
        sel = select_roi_features(Xn.loc[train, cols], y_tr, alpha=alpha_univariate, rule=lasso_rule, seed=seed)
        fit = _fit(Xn.loc[train, sel["selected"]], y_tr)
        models[model_name] = _model_entry(
            model_name, f"logistic regression on the LASSO-selected {roi} features (min-max normalised)",
            sel["selected"], ["feature"] * len(sel["selected"]), [mins[c] for c in sel["selected"]],
            [maxs[c] for c in sel["selected"]], fit, sel["notes"])
        models[model_name]["roi"] = roi
        pooled += [c for c in sel["selected"] if c not in pooled]
        uni = sel.pop("univariate")
        keep = uni[uni["feature"].isin(sel["selected"])]
        sel["univariate_selected"] = keep.to_dict(orient="records")
        sel["roi"] = roi
        if sel["lasso"] is not None:
            lasso = dict(sel["lasso"])
            lasso.pop("selected", None)
            sel["lasso"] = lasso
        selection[model_name] = sel
        notes += [f"{model_name}: {n}" for n in sel["notes"]]

    fit = _fit(Xn.loc[train, pooled], y_tr)
    models["RDM"] = _model_entry(
        "RDM", "logistic regression on the union of the three ROIs' selected features (radiomics + "
        "dosiomics)", pooled, ["feature"] * len(pooled), [mins[c] for c in pooled], [maxs[c] for c in pooled],
        fit, [] if pooled else ["no feature selected in any ROI: intercept-only model"])
    models["RDM"]["roi"] = list(roi_models.values())

    # Clinical model
    clinical_columns = [c for c in getattr(manifest, "clinical_columns", []) if c in df.columns]
    coding, cnotes = fit_clinical_coding(df.loc[train, clinical_columns], clinical_columns)
    notes += cnotes
    clin, imputed = encode_clinical(df[list(coding)], coding)
    clin_tr = clin.loc[train]
    # imputation values come from the training rows only (fit_clinical_coding)
    clinical_analysis = {"encoded": list(clin.columns), "imputed": imputed, "notes": []}
    independent = []
    if clin.shape[1]:
        try:
            um = univariate_multivariate(clin_tr, y_tr)
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
    fit = _fit(clin_tr[independent], y_tr)
    models["clinical"] = _model_entry(
        "clinical", "logistic regression on the independent clinical predictors (raw units; encodings "
        "in clinical_coding)", independent, ["clinical"] * len(independent), [None] * len(independent),
        [None] * len(independent), fit, clinical_analysis["notes"])

    # Scores on everybody (probabilities); the combined model takes the RDM linear predictor.
    finite_rows = {}
    scores, lps = {}, {}
    for name in ("RM_GTV", "DM_GTV", "DM_50Gy", "RDM"):
        lps[name] = pd.Series(linear_predictor(models[name], Xn), index=Xn.index)
    comb_inputs = pd.concat([lps["RDM"].rename(RDM_SCORE), clin[independent]], axis=1)
    fit = _fit(comb_inputs.loc[train], y_tr)
    models["combined"] = _model_entry(
        "combined", "logistic regression on the RDM score (the RDM linear predictor, log-odds) and the "
        "independent clinical predictors", comb_inputs.columns, ["model:RDM"] + ["clinical"] * len(independent),
        [None] * comb_inputs.shape[1], [None] * comb_inputs.shape[1], fit)
    lps["clinical"] = pd.Series(linear_predictor(models["clinical"], clin), index=clin.index)
    lps["combined"] = pd.Series(linear_predictor(models["combined"], comb_inputs), index=clin.index)
    for name in MODEL_NAMES:
        scores[name] = pd.Series(sigmoid(lps[name].to_numpy()), index=lps[name].index)
        finite_rows[name] = np.isfinite(scores[name].to_numpy())

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
                X[usable], y_all, clin, independent, truth, roi_models,
                {m: _lambda_index(selection[m]["lasso"]) for m in roi_models},
                seeds=range(seed + 1, seed + 1 + int(repeated_splits)), alpha=alpha_univariate,
                train_fraction=train_fraction)

    n_tr, n_va = int(train.sum()), int((~train).sum())
    cohort_summary = {
        "n": int(len(y_all)), "events": int(y_all.sum()),
        "train": {"n": n_tr, "events": int(y_tr.sum())},
        "validation": {"n": n_va, "events": int(y_all[~train].sum())},
        "split": "given by the manifest's split column" if given is not None else
                 f"stratified random split, train fraction {train_fraction}, seed {seed}",
        "outcome": "1 = radiochemotherapy resistant (RECIST SD/PD), 0 = sensitive (CR/PR)",
        "n_features_extracted": int(X.shape[1]), "n_features_usable": len(usable),
        "dropped_features": {"missing_values": dropped_nonfinite, "constant": dropped_constant},
    }
    patients = pd.DataFrame({"cohort": cohort, "outcome": y_all,
                             **{f"p_{n}": scores[n] for n in MODEL_NAMES},
                             "risk_group": np.where(high == 1, "high", "low")})
    return TrainedModels(
        models=models, clinical_coding=coding, cutoff=cutoff, settings_hash=settings_hash,
        extraction_options=extraction_options, cohort=cohort_summary, selection=selection,
        clinical_analysis=clinical_analysis, evaluation=evaluation, comparisons=comparisons,
        survival=survival, cohort_table=cohort_table(df, cohort, coding),
        settings={"seed": seed, "lasso_rule": lasso_rule, "alpha_univariate": alpha_univariate,
                  "cv_folds": CV_FOLDS, "train_fraction": train_fraction, "roi_models": roi_models,
                  "normalisation": "min-max fitted on the training cohort",
                  "univariate_test": "t-test if Shapiro-Wilk accepts normality (p > 0.05), else Mann-Whitney U",
                  "clinical_selection": "univariate logistic p < 0.1 -> multivariate; independent p < 0.05"},
        library_versions=library_versions(), notes=notes, ground_truth=gt, patients=patients)


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
        return pd.read_csv(path, dtype={"patient_id": str, "settings_hash": str})
    except UnicodeDecodeError as exc:
        raise DataError(f"the features table is not UTF-8 text (byte {exc.start})", path=path,
                        hint="a features table is a UTF-8 CSV (a BOM and CRLF line ends are fine), as "
                             "cohort-extract writes it; re-save it as 'CSV UTF-8'") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataError(f"cannot read the features table as CSV: {exc}", path=path,
                        hint="give the features.csv that extract or cohort-extract wrote") from None


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


def _find_extraction_options(features_path):
    """Extraction options recorded beside a cohort's features.csv, if cohort-extract wrote them."""
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
                return opts
    return None


def format_auc_table(trained: TrainedModels) -> str:
    """The AUC table as fixed-width text (what ``train`` prints)."""
    lines = [f"{'model':10s} {'cohort':10s} {'AUC':>6s} {'95% CI':>15s} {'acc':>6s} {'sens':>6s} {'spec':>6s}"]
    for r in trained.auc_table().itertuples():
        lines.append(f"{r.model:10s} {r.cohort:10s} {r.auc:6.3f} {r.ci_low:6.3f}-{r.ci_high:<6.3f}   "
                     f"{r.accuracy:6.3f} {r.sensitivity:6.3f} {r.specificity:6.3f}")
    return "\n".join(lines)


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
    trained = train_models(features, manifest, seed=args.seed, lasso_rule=args.lasso_rule,
                           extraction_options=_find_extraction_options(args.features), ground_truth=truth,
                           repeated_splits=getattr(args, "repeated_splits", REPEATED_SPLITS))
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
    if args.predictions:
        atomic_write_text(args.predictions, trained.patients.to_csv(index_label="patient_id"))
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
                        f"{REPEATED_SPLITS}, 0 to skip)")
    p.set_defaults(func=run)
