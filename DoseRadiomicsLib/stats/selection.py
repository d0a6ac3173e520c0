"""Feature selection as in the paper: min-max normalisation, univariate filter, LASSO.

The paper (Zhang et al. 2025) min-max normalises every radiomics/dosiomics feature, keeps those
whose t-test (normal in both classes) or Mann-Whitney U test (otherwise) gives P < 0.05, then
selects features by L1-penalised (LASSO) logistic regression with 10-fold cross-validation
(R glmnet). ``lasso_select`` reproduces glmnet's procedure with scikit-learn.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats as _st

from ..errors import DataError, ModelFileError
from ._checks import as_binary, as_frame, same_length

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


def _is_normal(values: np.ndarray, level: float) -> bool:
    """Shapiro-Wilk accepts normality (p >= level). Fewer than 3 values or no spread: not normal."""
    if values.size < 3 or np.ptp(values) == 0:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns for n > 5000 that p may be inaccurate
        return bool(_st.shapiro(values).pvalue >= level)


def univariate_filter(X: pd.DataFrame, y, alpha: float = 0.05, normality_alpha: float = 0.05,
                      equal_var: bool = True) -> pd.DataFrame:
    """Test every feature for a difference between outcome classes, as the paper's first filter.

    Per feature: when Shapiro-Wilk accepts normality (p >= ``normality_alpha``) in BOTH classes,
    a two-sided independent-samples t-test, Student's pooled-variance version by default
    (``equal_var=True``: the paper says "t-test", and scipy's and SPSS's first line default to
    it; pass ``equal_var=False`` for Welch); otherwise a two-sided Mann-Whitney U test
    (scipy's default: exact for small samples without ties, else normal approximation with
    continuity correction). A class with fewer than 3 patients or constant values is treated
    as not normal. A feature constant in both classes gets p = 1.

    Returns a DataFrame in the input column order with columns feature, test ("t-test" or
    "Mann-Whitney U"), p, normal, selected (p < alpha).
    """
    X = as_frame(X)
    y = as_binary(y)
    same_length(features=X.to_numpy()[:, 0], outcome=y)
    values = X.to_numpy()
    a_all, b_all = values[y == 0], values[y == 1]
    rows = []
    for j, name in enumerate(X.columns):
        a, b = a_all[:, j], b_all[:, j]
        normal = _is_normal(a, normality_alpha) and _is_normal(b, normality_alpha)
        if np.ptp(values[:, j]) == 0:
            test, p = "Mann-Whitney U", 1.0
        elif normal:
            test, p = "t-test", float(_st.ttest_ind(a, b, equal_var=equal_var).pvalue)
        else:
            test, p = "Mann-Whitney U", float(_st.mannwhitneyu(a, b, alternative="two-sided").pvalue)
        rows.append({"feature": name, "test": test, "p": p, "normal": normal, "selected": bool(p < alpha)})
    return pd.DataFrame(rows, columns=["feature", "test", "p", "normal", "selected"])


def _binomial_deviance(y: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """Mean binomial deviance -2 mean(y log p + (1-y) log(1-p)) per column of ``prob``."""
    prob = np.clip(prob, 1e-5, 1 - 1e-5)  # glmnet caps predictions the same way
    yy = y[:, None]
    return -2 * np.mean(yy * np.log(prob) + (1 - yy) * np.log(1 - prob), axis=0)


def _standardise(X: np.ndarray):
    """Centre and scale columns to unit population SD (glmnet's standardize=TRUE)."""
    mean = X.mean(axis=0)
    sd = X.std(axis=0)
    return (X - mean) / np.where(sd > 0, sd, 1.0), mean, sd


def _lambda_max(Z: np.ndarray, y: np.ndarray) -> float:
    """Smallest lambda at which every coefficient is 0 (glmnet): max_j |z_j'(y - ybar)| / n."""
    return float(np.max(np.abs(Z.T @ (y - y.mean()))) / y.size)


def _l1_penalty_args(cls) -> dict:
    """Keyword arguments asking for a pure L1 penalty: scikit-learn >= 1.8 deprecates ``penalty``."""
    import inspect

    default = inspect.signature(cls).parameters["penalty"].default
    return {"l1_ratio": 1.0} if default == "deprecated" else {"penalty": "l1"}


#: liblinear's constant column; the intercept's L1 penalty is lambda / this value
_INTERCEPT_SCALING = 100.0
#: glmnet stops the path once the model explains this fraction of the null deviance (its
#: ``fdev``/devmax rule): beyond it the data are (nearly) separated and the fits meaningless
_DEVIANCE_RATIO_STOP = 0.999


def _lasso_path(X: np.ndarray, y: np.ndarray, lambdas: np.ndarray, seed: int, tol: float):
    """L1 logistic fits along ``lambdas`` (descending); coefficients on X's scale.

    Returns ``(coefs, intercepts, n_fitted)``. Once a fit explains ``_DEVIANCE_RATIO_STOP`` of
    the null deviance the remaining (smaller) lambdas are not fitted (glmnet's rule); they
    repeat the last fit and ``n_fitted`` says how many were fitted.

    glmnet minimises ``-(1/n) loglik + lambda * ||beta||_1``; scikit-learn minimises
    ``C * sum(logloss) + ||beta||_1``; dividing the latter by ``C n`` shows they coincide for
    ``C = 1 / (n * lambda)``. Features are standardised first (glmnet's default) and the
    coefficients transformed back to the input scale. The solver is liblinear (newGLMNET, the
    same coordinate-descent family as glmnet; several times faster than saga here). liblinear
    treats the intercept as the weight of a constant column of value ``_INTERCEPT_SCALING``, so
    the intercept is penalised by only lambda/100 (glmnet: not at all), a negligible difference.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    Z, mean, sd = _standardise(X)
    keep = sd > 0
    n = y.size
    coefs = np.zeros((lambdas.size, X.shape[1]))
    intercepts = np.zeros(lambdas.size)
    model = LogisticRegression(solver="liblinear", tol=tol, max_iter=1000, random_state=seed,
                               intercept_scaling=_INTERCEPT_SCALING, **_l1_penalty_args(LogisticRegression))
    ybar = y.mean()
    null_deviance = float(_binomial_deviance(y, np.full((n, 1), ybar))[0])
    intercepts[:] = np.log(ybar / (1 - ybar))
    if not keep.any():
        return coefs, intercepts, lambdas.size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i, lam in enumerate(lambdas):
            model.set_params(C=1.0 / (n * lam))
            model.fit(Z[:, keep], y)
            beta = np.zeros(X.shape[1])
            beta[keep] = model.coef_[0] / sd[keep]
            coefs[i] = beta
            intercepts[i] = model.intercept_[0] - float(mean @ beta)
            fitted = _predict(X, coefs[i:i + 1], intercepts[i:i + 1])
            if 1 - _binomial_deviance(y, fitted)[0] / null_deviance >= _DEVIANCE_RATIO_STOP:
                coefs[i + 1:] = coefs[i]
                intercepts[i + 1:] = intercepts[i]
                return coefs, intercepts, i + 1
    return coefs, intercepts, lambdas.size


def _predict(X: np.ndarray, coefs: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    eta = X @ coefs.T + intercepts[None, :]
    return 0.5 * (1 + np.tanh(0.5 * eta))  # the logistic function without overflow


def lasso_select(X: pd.DataFrame, y, folds: int = 10, rule: str = "1se", seed: int = 0,
                 n_lambdas: int = 100, tol: float = 1e-5) -> dict:
    """LASSO (L1 logistic) feature selection with stratified k-fold cross-validation, glmnet style.

    Lambda path: ``n_lambdas`` values on a log grid from lambda_max (all coefficients 0) down to
    lambda_max * 1e-3; like glmnet, the path stops early once the full-data fit explains 99.9%
    of the null deviance (near-separation, typical with more features than patients), so
    ``cv.lambdas`` can be shorter than ``n_lambdas``. Cross-validation: ``StratifiedKFold(folds, shuffle=True,
    random_state=seed)``; each training part is fitted along the full-data path and scored by
    the mean binomial deviance of its held-out part; ``mean_deviance`` is the fold-size-weighted
    mean of fold deviances and ``se_deviance`` its standard error (as cv.glmnet). lambda_min is
    the largest lambda with the smallest mean deviance; lambda_1se the largest lambda whose mean
    deviance is within one SE of that minimum. ``rule`` ("1se" or "min") chooses which lambda
    the final full-data fit uses. If the 1-SE fit keeps no feature the lambda_min fit is used and
    ``rule_used`` says "min". If even that keeps none, ``selected`` is empty.

    The L1 fit is scikit-learn's LogisticRegression(penalty="l1", solver="liblinear") with
    ``C = 1 / (n * lambda)`` (see ``_lasso_path``), on standardised features; coefficients are
    reported on the input scale. ``tol`` is liblinear's stopping tolerance. (The folds are fitted
    one after another: liblinear seeds a process-wide generator, so threads would not be
    reproducible.)

    Returns dict(selected, coefficients (selected feature -> coefficient, input order),
    intercept, lambda_min, lambda_1se, lambda_chosen, rule, rule_used,
    cv=dict(lambdas, mean_deviance, se_deviance, n_nonzero)).
    """
    from sklearn.model_selection import StratifiedKFold

    if rule not in ("1se", "min"):
        raise ValueError('rule must be "1se" or "min"')
    if int(folds) != folds or folds < 2:
        raise ValueError("folds must be an integer of at least 2")
    folds = int(folds)
    X = as_frame(X)
    y = as_binary(y)
    same_length(features=X.to_numpy()[:, 0], outcome=y)
    n1 = int(y.sum())
    n0 = y.size - n1
    if min(n0, n1) < folds:
        raise DataError(f"{folds}-fold cross-validation needs at least {folds} patients in each outcome "
                        f"class, got {n1} with outcome 1 and {n0} with outcome 0",
                        hint=f"use fewer folds (at most {min(n0, n1)}) or a larger cohort")
    values = X.to_numpy()
    Z, _, _ = _standardise(values)
    lam_max = _lambda_max(Z, y.astype(float))
    if lam_max <= 0:
        raise DataError("no feature varies between patients, LASSO has nothing to select",
                        hint="check the feature table: every column is constant")
    lambdas = lam_max * np.logspace(0, -3, int(n_lambdas))

    # the full-data path first: like glmnet, it fixes the lambdas (stopping at near-separation)
    coefs, intercepts, n_fitted = _lasso_path(values, y, lambdas, seed, tol)
    lambdas, coefs, intercepts = lambdas[:n_fitted], coefs[:n_fitted], intercepts[:n_fitted]

    dev = np.zeros((folds, lambdas.size))
    weights = np.zeros(folds)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (train, test) in enumerate(splitter.split(values, y)):
        c, b0, _ = _lasso_path(values[train], y[train], lambdas, seed, tol)
        dev[k] = _binomial_deviance(y[test], _predict(values[test], c, b0))
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
            "cv": {"lambdas": lambdas.tolist(), "mean_deviance": mean_dev.tolist(),
                   "se_deviance": se_dev.tolist(), "n_nonzero": n_nonzero.astype(int).tolist()}}
