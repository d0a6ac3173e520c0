"""Feature selection as in the paper: min-max normalisation, univariate filter, LASSO.

The paper (Zhang et al. 2025) min-max normalises every radiomics/dosiomics feature, keeps those
whose t-test (normal in both classes) or Mann-Whitney U test (otherwise) gives P < 0.05, then
selects features by L1-penalised (LASSO) logistic regression with 10-fold cross-validation
(R glmnet). ``lasso_select`` reproduces glmnet's procedure (solver in :mod:`.elastic_net`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as _st

from ..errors import DataError, ModelFileError
from ._checks import as_binary, as_frame, same_length
from .elastic_net import (binomial_deviance, lambda_grid, lambda_max, logistic, logistic_elastic_net_path,
                          single_threaded_blas)
from .normality import normal_columns

__all__ = ["MinMaxScaler", "univariate_filter", "lasso_select"]


class MinMaxScaler:
    """Min-max normalisation of feature columns to [0, 1] using the training cohort's range.

    ``fit`` learns ``min_`` and ``max_`` (pandas Series indexed by feature name); ``transform``
    maps ``(x - min) / (max - min)`` column by column, matching columns BY NAME and returning
    them in the fitted order. Values of new patients outside the training range are not
    clipped (they fall below 0 or above 1), so a validation cohort keeps its information.
    A column constant in the training cohort (max == min) carries no information and is mapped
    to 0 for every patient.
    """

    def __init__(self):
        self.min_: pd.Series | None = None
        self.max_: pd.Series | None = None

    @property
    def features(self) -> list[str]:
        self._require_fitted()
        return list(self.min_.index)

    def _require_fitted(self):
        if self.min_ is None:
            raise RuntimeError("MinMaxScaler is not fitted: call fit() first")

    def fit(self, X: pd.DataFrame) -> "MinMaxScaler":
        """Learn each column's minimum and maximum from the training cohort."""
        X = as_frame(X)
        self.min_ = X.min(axis=0).astype(float)
        self.max_ = X.max(axis=0).astype(float)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Scale the fitted columns of ``X`` (extra columns are ignored, missing ones are an error)."""
        self._require_fitted()
        if not isinstance(X, pd.DataFrame):
            raise DataError("features must be a table (pandas DataFrame) with named columns",
                            hint="wrap the array in pandas.DataFrame(..., columns=names)")
        missing = [c for c in self.min_.index if c not in X.columns]
        if missing:
            raise DataError(f"{len(missing)} feature column(s) used in training are missing, e.g. {missing[:3]}",
                            hint="extract features with the same settings and ROIs as the training cohort")
        X = as_frame(X[list(self.min_.index)])
        span = (self.max_ - self.min_).to_numpy()
        constant = span == 0
        scaled = (X.to_numpy() - self.min_.to_numpy()) / np.where(constant, 1.0, span)
        scaled[:, constant] = 0.0
        return pd.DataFrame(scaled, index=X.index, columns=X.columns)

    def fit_transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """``fit(X)`` then ``transform(X)``."""
        return self.fit(X).transform(X)

    def to_dict(self) -> dict:
        """Plain JSON-ready description: ``{"kind": "minmax", "features": [...], "min": [...], "max": [...]}``."""
        self._require_fitted()
        return {"kind": "minmax", "features": list(self.min_.index),
                "min": [float(v) for v in self.min_], "max": [float(v) for v in self.max_]}

    @classmethod
    def from_dict(cls, d: dict) -> "MinMaxScaler":
        """Rebuild a scaler from :meth:`to_dict` output; ModelFileError if it is malformed."""
        try:
            if d.get("kind", "minmax") != "minmax":
                raise ValueError(f"kind is {d.get('kind')!r}, expected 'minmax'")
            feats = [str(f) for f in d["features"]]
            lo = np.asarray(d["min"], dtype=float)
            hi = np.asarray(d["max"], dtype=float)
            if not (len(feats) == lo.size == hi.size) or len(set(feats)) != len(feats):
                raise ValueError("features, min and max must have the same length and unique names")
            if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi >= lo)):
                raise ValueError("min and max must be finite with max >= min")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelFileError(f"invalid min-max normalisation block: {exc}",
                                 hint="the model file is damaged or was not written by DoseRadiomics") from None
        s = cls()
        s.min_ = pd.Series(lo, index=feats, dtype=float)
        s.max_ = pd.Series(hi, index=feats, dtype=float)
        return s


#: ``mannwhitney_exact`` rules: when the Mann-Whitney p-value is exact (else the normal
#: approximation with continuity correction); either way never with ties
MANNWHITNEY_EXACT_RULES = {
    "paper": "exact when a class has at most 8 patients and the feature has no ties (scipy's default)",
    "R": "exact when both classes have fewer than 50 patients and the feature has no ties (R wilcox.test)",
}
#: ``ttest`` variants of the univariate filter's t-test
TTEST_VARIANTS = {"student": "Student's pooled-variance t-test", "welch": "Welch's unequal-variance t-test"}


def _mann_whitney_p(a: np.ndarray, b: np.ndarray, exact_rule: str = "paper") -> np.ndarray:
    """Two-sided Mann-Whitney U p-value of every row pair of ``a`` and ``b`` (samples x values).

    ``exact_rule`` (see :data:`MANNWHITNEY_EXACT_RULES`): "paper" is scipy's default method
    ("auto") chosen per feature as a call per feature would: exact when a class has at most 8
    patients and the feature has no ties; "R" is R's wilcox.test: exact when both classes have
    fewer than 50 patients and there are no ties. Otherwise the normal approximation with
    continuity correction (scipy decides "ties" over the whole array when given many features at
    once, hence the grouping here).
    """
    if exact_rule not in MANNWHITNEY_EXACT_RULES:
        raise ValueError(f"exact_rule must be one of {sorted(MANNWHITNEY_EXACT_RULES)}")
    p = np.empty(a.shape[0])
    if a.shape[0] == 0:
        return p
    small = (min(a.shape[1], b.shape[1]) <= 8 if exact_rule == "paper"
             else max(a.shape[1], b.shape[1]) < 50)
    if not small:
        exact = np.zeros(a.shape[0], dtype=bool)
    else:
        both = np.sort(np.concatenate([a, b], axis=1), axis=1)
        exact = ~(np.diff(both, axis=1) == 0).any(axis=1)
    for method in (False, True):
        rows = exact == method
        if rows.any():
            p[rows] = _st.mannwhitneyu(a[rows], b[rows], axis=1, alternative="two-sided",
                                       method="exact" if method else "asymptotic").pvalue
    return p


def univariate_filter(X: pd.DataFrame, y, alpha: float = 0.05, normality_alpha: float = 0.05,
                      equal_var: bool = True, mannwhitney_exact: str = "paper") -> pd.DataFrame:
    """Test every feature for a difference between outcome classes, as the paper's first filter.

    Per feature: when Shapiro-Wilk accepts normality (p >= ``normality_alpha``) in BOTH classes,
    a two-sided independent-samples t-test, Student's pooled-variance version by default
    (``equal_var=True``: the paper says "t-test", and scipy's and SPSS's first line default to
    it; pass ``equal_var=False`` for Welch, R's default); otherwise a two-sided Mann-Whitney U test
    (exact or normal approximation with continuity correction by ``mannwhitney_exact``, see
    :data:`MANNWHITNEY_EXACT_RULES`; default "paper", scipy's). A class with fewer than 3 patients
    or constant values is treated as not normal. A feature constant in both classes gets p = 1.

    Returns a DataFrame in the input column order with columns feature, test ("t-test" or
    "Mann-Whitney U"), p, normal, selected (p < alpha).
    """
    X = as_frame(X)
    y = as_binary(y)
    same_length(features=X.to_numpy()[:, 0], outcome=y)
    values = X.to_numpy()
    # one row per feature, contiguous, so that scipy's axis=1 sums run exactly as per feature
    a_all = np.ascontiguousarray(values[y == 0].T)
    b_all = np.ascontiguousarray(values[y == 1].T)
    normal = normal_columns(a_all, normality_alpha) & normal_columns(b_all, normality_alpha)
    constant = np.ptp(values, axis=0) == 0
    p = np.ones(values.shape[1])
    use_t = normal & ~constant
    if use_t.any():
        p[use_t] = _st.ttest_ind(a_all[use_t], b_all[use_t], axis=1, equal_var=equal_var).pvalue
    use_u = ~use_t & ~constant
    p[use_u] = _mann_whitney_p(a_all[use_u], b_all[use_u], mannwhitney_exact)
    return pd.DataFrame({"feature": list(X.columns), "test": np.where(use_t, "t-test", "Mann-Whitney U"),
                         "p": p, "normal": normal, "selected": p < alpha},
                        columns=["feature", "test", "p", "normal", "selected"])


def _lasso_path(X: np.ndarray, y: np.ndarray, lambdas: np.ndarray, tol: float):
    """L1 logistic fits along ``lambdas`` (descending) by glmnet's coordinate descent.

    Returns ``(coefs, intercepts, n_fitted)`` on X's scale; after the path stops (glmnet's
    deviance rules) the remaining lambdas repeat the last fit. See :mod:`.elastic_net`.
    """
    path = logistic_elastic_net_path(X, y, lambdas, alpha=1.0, tol=tol)
    return path["coefs"], path["intercepts"], path["n_fitted"], path["converged"]


def _predict(X: np.ndarray, coefs: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    return logistic(X @ coefs.T + intercepts[None, :])


#: what ``lasso_select`` records as its solver
LASSO_SOLVER = ("coordinate descent for the L1-penalised binomial log-likelihood as in R glmnet "
                "(IRLS, cyclic coordinate descent with active set, exact active-set steps, warm starts, "
                "strong rules, KKT checks); unpenalised intercept; standardised features")


def _patient_folds(y: np.ndarray, groups, folds: int, seed: int) -> list:
    """(train rows, test rows) per fold: stratified folds of the patients, every copy of a patient
    in its patient's fold (glmnet's ``foldid`` by patient). ``groups``: a patient key per row, or
    None (every row its own patient). With unique patients in row order the folds are exactly
    ``StratifiedKFold(folds, shuffle=True, random_state=seed)`` of the rows."""
    from sklearn.model_selection import StratifiedKFold

    keys = np.arange(y.size) if groups is None else np.asarray(groups)
    _, first, row_patient = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # patients in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    row_patient = rank[row_patient.ravel()]
    y_patient = y[first[order]]
    if np.any(y_patient[row_patient] != y):
        raise ValueError("a patient's copies have different outcomes")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = []
    for _, test_patients in splitter.split(np.zeros(y_patient.size), y_patient):
        in_test = np.isin(row_patient, test_patients)
        out.append((np.flatnonzero(~in_test), np.flatnonzero(in_test)))
    return out


def lasso_select(X: pd.DataFrame, y, folds: int = 10, rule: str = "1se", seed: int = 0,
                 n_lambdas: int = 100, tol: float = 1e-5, groups=None) -> dict:
    """LASSO (L1 logistic) feature selection with stratified k-fold cross-validation, glmnet style.

    Objective (glmnet's): ``-(1/n) loglik + lambda * ||beta||_1`` over the coefficients of the
    standardised features (population SD, glmnet's ``standardize=TRUE``) and an unpenalised
    intercept, minimised by :func:`.elastic_net.logistic_elastic_net_path` (coordinate descent as
    in glmnet; ``tol`` is the relative accuracy of its optimality conditions, so every fit
    satisfies |gradient_j - lambda sign(beta_j)| <= tol * lambda). Coefficients are reported on
    the input scale.

    Lambda path: ``n_lambdas`` values on a log grid from lambda_max (all coefficients 0) down to
    lambda_max * 1e-3; like glmnet, the path stops early once the full-data fit explains 99.9%
    of the null deviance (near-separation, typical with more features than patients) or the
    explained fraction stops growing (by < 1e-5 per step), after at least 5 lambdas, so
    ``cv.lambdas`` can be shorter than ``n_lambdas``. Cross-validation:
    ``StratifiedKFold(folds, shuffle=True, random_state=seed)`` over the patients: ``groups`` (a
    patient key per row; None = one row per patient) keeps every copy of a patient drawn more than
    once (a bootstrap sample) in one fold, as glmnet's ``foldid`` by patient would, so no patient is
    both fitted and scored in a fold (with unique patients the folds are those of the rows); each training part is fitted along
    the full-data path (standardised on its own patients, as cv.glmnet does; where a fold's path
    stops early its last fit stands for the smaller lambdas) and scored by the mean binomial
    deviance of its held-out part (predictions capped to [1e-5, 1 - 1e-5] as cv.glmnet does);
    ``mean_deviance`` is the fold-size-weighted mean of fold deviances and ``se_deviance`` its
    standard error (as cv.glmnet). lambda_min is the largest lambda with the smallest mean
    deviance; lambda_1se the largest lambda whose mean deviance is within one SE of that
    minimum. ``rule`` ("1se" or "min") chooses which lambda the final full-data fit uses. If the
    1-SE fit keeps no feature the lambda_min fit is used and ``rule_used`` says "min". If even
    that keeps none, ``selected`` is empty. The result is deterministic for a given ``seed``
    (BLAS runs single-threaded here: its multi-threaded sums vary in the last bits).

    Returns dict(selected, coefficients (selected feature -> coefficient, input order),
    intercept, lambda_min, lambda_1se, lambda_chosen, rule, rule_used, solver, converged,
    cv=dict(lambdas, mean_deviance, se_deviance, n_nonzero)).
    """
    if rule not in ("1se", "min"):
        raise ValueError('rule must be "1se" or "min"')
    if int(folds) != folds or folds < 2:
        raise ValueError("folds must be an integer of at least 2")
    folds = int(folds)
    X = as_frame(X)
    y = as_binary(y)
    same_length(features=X.to_numpy()[:, 0], outcome=y)
    if groups is not None:
        same_length(features=X.to_numpy()[:, 0], groups=np.asarray(groups))
    _, first = np.unique(np.arange(y.size) if groups is None else np.asarray(groups), return_index=True)
    n1 = int(y[first].sum())  # patients, not rows
    n0 = first.size - n1
    if min(n0, n1) < folds:
        raise DataError(f"{folds}-fold cross-validation needs at least {folds} patients in each outcome "
                        f"class, got {n1} with outcome 1 and {n0} with outcome 0",
                        hint=f"use fewer folds (at most {min(n0, n1)}) or a larger cohort")
    values = X.to_numpy()
    yf = y.astype(float)
    lam_max = lambda_max(values, yf)
    if lam_max <= 0:
        raise DataError("no feature varies between patients, LASSO has nothing to select",
                        hint="check the feature table: every column is constant")
    lambdas = lambda_grid(lam_max, int(n_lambdas), 1e-3)

    with single_threaded_blas():
        # the full-data path first: like glmnet, it fixes the lambdas (stopping at near-separation)
        coefs, intercepts, n_fitted, converged = _lasso_path(values, yf, lambdas, tol)
        lambdas, coefs, intercepts = lambdas[:n_fitted], coefs[:n_fitted], intercepts[:n_fitted]

        dev = np.zeros((folds, lambdas.size))
        weights = np.zeros(folds)
        for k, (train, test) in enumerate(_patient_folds(y, groups, folds, seed)):
            c, b0, _, ok = _lasso_path(values[train], yf[train], lambdas, tol)
            converged = converged and ok
            dev[k] = binomial_deviance(yf[test], _predict(values[test], c, b0))
            weights[k] = test.size
    mean_dev = weights @ dev / weights.sum()
    se_dev = np.sqrt((weights @ (dev - mean_dev) ** 2) / weights.sum() / (folds - 1))

    i_min = int(np.nonzero(mean_dev <= mean_dev.min())[0][0])  # lambdas descend: first = largest
    i_1se = int(np.nonzero(mean_dev <= mean_dev[i_min] + se_dev[i_min])[0][0])

    n_nonzero = (coefs != 0).sum(axis=1)
    i_chosen = i_1se if rule == "1se" else i_min
    rule_used = rule
    if n_nonzero[i_chosen] == 0 and rule == "1se":
        i_chosen, rule_used = i_min, "min"
    beta = coefs[i_chosen]
    names = list(X.columns)
    selected = [names[j] for j in np.nonzero(beta)[0]]
    return {"selected": selected,
            "coefficients": {names[j]: float(beta[j]) for j in np.nonzero(beta)[0]},
            "intercept": float(intercepts[i_chosen]),
            "lambda_min": float(lambdas[i_min]), "lambda_1se": float(lambdas[i_1se]),
            "lambda_chosen": float(lambdas[i_chosen]), "rule": rule, "rule_used": rule_used,
            "solver": LASSO_SOLVER, "converged": bool(converged),
            "cv": {"lambdas": lambdas.tolist(), "mean_deviance": mean_dev.tolist(),
                   "se_deviance": se_dev.tolist(), "n_nonzero": n_nonzero.astype(int).tolist()}}
