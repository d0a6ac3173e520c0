"""Logistic regression models, odds-ratio tables and the paper's clinical-model procedure.

The paper builds every model by binary logistic regression (SPSS) and selects the clinical
predictors by univariate analysis (P < 0.1 enters) followed by multivariate analysis (P < 0.05
are independent predictors). Models here are plain numbers (names, coefficients, intercept)
that serialise to JSON; nothing is pickled.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as _st

from ..errors import DataError, ModelFileError
from ._checks import as_binary, as_frame, same_length

__all__ = ["LogisticModel", "fit_logistic", "odds_ratio_table", "univariate_multivariate",
           "separation_diagnostics"]

#: ridge penalty used when maximum likelihood fails (see ``fit_logistic``)
FALLBACK_RIDGE = 1e-4
#: a coefficient beyond this many log-odds per standard deviation of its variable is taken as
#: (quasi-)separation: the likelihood has no finite maximum and the estimate is meaningless
_SEPARATION_LOGODDS_PER_SD = 20.0
#: a fitted probability this close to 0 or 1 marks a patient the model separates (R glm's
#: "fitted probabilities numerically 0 or 1 occurred" uses 10 * machine epsilon; this is wider)
SEPARATION_P = 1e-8


@dataclass
class LogisticModel:
    """A fitted logistic model: ``logit P(outcome = 1) = intercept + sum coef[name] * x[name]``.

    ``names`` fixes the variable order, ``coefficients`` maps name -> coefficient (same order),
    ``penalty`` is the ridge penalty used (None for maximum likelihood), ``notes`` says how the
    fit went (e.g. a fallback to ridge because of perfect separation).
    """

    names: list
    coefficients: dict
    intercept: float
    penalty: float | None = None
    notes: list = field(default_factory=list)

    def _matrix(self, X) -> np.ndarray:
        if isinstance(X, pd.Series):
            X = X.to_frame().T
        if not isinstance(X, pd.DataFrame):
            raise DataError("predictions need a table (pandas DataFrame) with named columns",
                            hint=f"pass a DataFrame with columns {self.names[:5]}")
        missing = [n for n in self.names if n not in X.columns]
        if missing:
            raise DataError(f"the model needs {len(missing)} column(s) that are missing, e.g. {missing[:3]}",
                            hint="compute these variables for the patients (same names as in training)")
        return as_frame(X[list(self.names)], "model inputs").to_numpy()

    def linear_predictor(self, X) -> np.ndarray:
        """The log-odds ``intercept + X @ coefficients``, one value per row; columns used by name."""
        beta = np.array([self.coefficients[n] for n in self.names], dtype=float)
        return self.intercept + self._matrix(X) @ beta

    def predict_proba(self, X) -> np.ndarray:
        """Predicted probability of outcome 1, one value per row (a 1-D array, not sklearn's 2 columns)."""
        lp = self.linear_predictor(X)
        return 0.5 * (1 + np.tanh(0.5 * lp))  # the logistic function without overflow warnings

    def to_dict(self) -> dict:
        """Plain JSON-ready description of the model."""
        return {"kind": "logistic", "names": list(self.names),
                "coefficients": {n: float(self.coefficients[n]) for n in self.names},
                "intercept": float(self.intercept),
                "penalty": None if self.penalty is None else float(self.penalty),
                "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: dict) -> "LogisticModel":
        """Rebuild a model from :meth:`to_dict` output; ModelFileError when it is malformed."""
        try:
            if d.get("kind", "logistic") != "logistic":
                raise ValueError(f"kind is {d.get('kind')!r}, expected 'logistic'")
            names = [str(n) for n in d["names"]]
            coefs = {str(k): float(v) for k, v in d["coefficients"].items()}
            if sorted(coefs) != sorted(names) or len(set(names)) != len(names):
                raise ValueError("names and coefficients do not list the same variables")
            intercept = float(d["intercept"])
            if not all(math.isfinite(v) for v in [intercept, *coefs.values()]):
                raise ValueError("coefficients must be finite numbers")
            penalty = d.get("penalty")
            penalty = None if penalty is None else float(penalty)
            notes = [str(x) for x in d.get("notes", [])]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelFileError(f"invalid logistic model block: {exc}",
                                 hint="the model file is damaged or was not written by DoseRadiomics") from None
        return cls(names=names, coefficients={n: coefs[n] for n in names}, intercept=intercept,
                   penalty=penalty, notes=notes)


def _inputs(X, y):
    X = as_frame(X)
    y = as_binary(y)
    same_length(features=X.to_numpy()[:, 0], outcome=y)
    return X, y


def _ml_fit(X: pd.DataFrame, y: np.ndarray):
    """Unpenalised maximum likelihood (statsmodels Logit). Returns (result, None) or (None, reason)."""
    import statsmodels.api as sm

    design = sm.add_constant(X, has_constant="add")
    sd = X.to_numpy().std(axis=0)
    if np.any(sd == 0):
        return None, f"variable(s) {list(X.columns[sd == 0])} are constant"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = sm.Logit(y, design).fit(method="newton", maxiter=100, disp=0)
        except Exception as exc:  # singular Hessian, older statsmodels' PerfectSeparationError
            return None, f"maximum likelihood failed ({type(exc).__name__}: {exc})"
    names = {type(w.message).__name__ for w in caught}
    if "PerfectSeparationWarning" in names:
        return None, "perfect separation: a variable predicts the outcome exactly"
    if not res.mle_retvals.get("converged", False):
        return None, "maximum likelihood did not converge"
    params, bse = np.asarray(res.params), np.asarray(res.bse)
    if not (np.all(np.isfinite(params)) and np.all(np.isfinite(bse))):
        return None, "the information matrix is singular (collinear variables?)"
    if np.any(np.abs(params[1:] * sd) > _SEPARATION_LOGODDS_PER_SD):
        return None, "quasi-complete separation: a coefficient diverges"
    return res, None


def _ridge_fit(X: np.ndarray, y: np.ndarray, alpha: float):
    """Minimise -(1/n) loglik + alpha/2 * ||beta_std||^2 by Newton's method.

    The penalty acts on coefficients of standardised variables (so it does not depend on units)
    and never on the intercept; the problem is strictly convex, so Newton converges.
    Returns (coefficients on X's scale, intercept).
    """
    n, p = X.shape
    mean, sd = X.mean(axis=0), X.std(axis=0)
    Z = np.column_stack([np.ones(n), (X - mean) / np.where(sd > 0, sd, 1.0)])
    pen = np.full(p + 1, alpha)
    pen[0] = 0.0

    def objective(b):
        eta = Z @ b
        return float(np.mean(np.logaddexp(0, eta) - y * eta) + 0.5 * np.sum(pen * b * b))

    b = np.zeros(p + 1)
    f = objective(b)
    for _ in range(200):
        prob = 0.5 * (1 + np.tanh(0.5 * (Z @ b)))
        grad = Z.T @ (prob - y) / n + pen * b
        hess = (Z * (prob * (1 - prob))[:, None]).T @ Z / n + np.diag(pen) + 1e-12 * np.eye(p + 1)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-10:  # backtracking keeps every step a descent
            f_new = objective(b - t * step)
            if f_new <= f:
                break
            t /= 2
        b, f_old, f = b - t * step, f, f_new
        if abs(f_old - f) < 1e-14 and np.max(np.abs(grad)) < 1e-10:
            break
    beta = np.where(sd > 0, b[1:] / np.where(sd > 0, sd, 1.0), 0.0)
    return beta, float(b[0] - mean @ beta)


def fit_logistic(X: pd.DataFrame, y, penalty: float | None = None) -> LogisticModel:
    """Fit a logistic model of the binary outcome ``y`` on the columns of ``X``.

    ``penalty=None``: unpenalised maximum likelihood (statsmodels Logit, Newton). If that is
    impossible (perfect or quasi-complete separation, a constant or collinear variable,
    non-convergence) the model is refitted with a tiny ridge penalty ``FALLBACK_RIDGE`` on the
    standardised coefficients and the reason is recorded in ``model.notes``; this never raises
    for such data. A number for ``penalty`` asks for that ridge penalty directly (see
    ``_ridge_fit`` for its scaling).
    """
    X, y = _inputs(X, y)
    names = list(X.columns)
    notes = []
    if penalty is None:
        res, reason = _ml_fit(X, y)
        if res is not None:
            params = np.asarray(res.params)
            return LogisticModel(names=names, coefficients=dict(zip(names, map(float, params[1:]))),
                                 intercept=float(params[0]), penalty=None,
                                 notes=["unpenalised maximum likelihood"])
        penalty = FALLBACK_RIDGE
        notes.append(f"{reason}; refitted with ridge penalty {penalty:g} on standardised coefficients")
    else:
        penalty = float(penalty)
        if not penalty > 0:
            raise ValueError("penalty must be a positive number or None")
        notes.append(f"ridge penalty {penalty:g} on standardised coefficients (requested)")
    beta, b0 = _ridge_fit(X.to_numpy(), y.astype(float), penalty)
    return LogisticModel(names=names, coefficients=dict(zip(names, map(float, beta))), intercept=b0,
                         penalty=penalty, notes=notes)


_OR_COLUMNS = ["variable", "coef", "odds_ratio", "ci_low", "ci_high", "p", "note"]


def odds_ratio_table(X: pd.DataFrame, y, alpha: float = 0.05) -> pd.DataFrame:
    """Coefficients, odds ratios with Wald confidence intervals and Wald p-values of a logistic model.

    One row per column of ``X`` (the intercept is not listed): variable, coef, odds_ratio =
    exp(coef), ci_low / ci_high = exp(coef -/+ z * se), p, note. When maximum likelihood is
    impossible (e.g. perfect separation) the coefficients come from the ridge fallback of
    :func:`fit_logistic`, CI and p are NaN and ``note`` says why.
    """
    X, y = _inputs(X, y)
    res, reason = _ml_fit(X, y)
    names = list(X.columns)
    if res is None:
        model = fit_logistic(X, y)
        coef = np.array([model.coefficients[n] for n in names])
        nan = np.full(len(names), np.nan)
        return pd.DataFrame({"variable": names, "coef": coef, "odds_ratio": np.exp(coef), "ci_low": nan,
                             "ci_high": nan, "p": nan, "note": [reason] * len(names)}, columns=_OR_COLUMNS)
    z = _st.norm.ppf(1 - alpha / 2)
    coef = np.asarray(res.params)[1:]
    se = np.asarray(res.bse)[1:]
    return pd.DataFrame({"variable": names, "coef": coef, "odds_ratio": np.exp(coef),
                         "ci_low": np.exp(coef - z * se), "ci_high": np.exp(coef + z * se),
                         "p": 2 * _st.norm.sf(np.abs(coef / se)), "note": [""] * len(names)},
                        columns=_OR_COLUMNS)


def univariate_multivariate(X: pd.DataFrame, y, p_enter: float = 0.1, p_keep: float = 0.05) -> dict:
    """The paper's selection of clinical predictors.

    1. Univariate: one logistic model per variable (``odds_ratio_table`` of that column alone).
    2. Variables with univariate p < ``p_enter`` are the ``candidates``; they enter one
       multivariate logistic model together.
    3. Candidates with multivariate p < ``p_keep`` are the ``independent`` predictors.

    Returns ``dict(univariate, multivariate, candidates, independent)``; the tables have the
    columns of :func:`odds_ratio_table` (``multivariate`` is empty when no variable enters).
    Variables whose p is NaN (separation) never enter.
    """
    X, y = _inputs(X, y)
    univariate = pd.concat([odds_ratio_table(X[[c]], y) for c in X.columns], ignore_index=True)
    candidates = [v for v, p in zip(univariate["variable"], univariate["p"]) if p < p_enter]
    if candidates:
        multivariate = odds_ratio_table(X[candidates], y)
        independent = [v for v, p in zip(multivariate["variable"], multivariate["p"]) if p < p_keep]
    else:
        multivariate = pd.DataFrame(columns=_OR_COLUMNS)
        independent = []
    return {"univariate": univariate, "multivariate": multivariate, "candidates": candidates,
            "independent": independent}


def separation_diagnostics(X, y, coefficients, intercept, ml_failure: str | None = None) -> dict:
    """Signs of (quasi-)complete separation in a fitted logistic model.

    ``X`` (n, k), ``y`` 0/1, the fit's coefficients and intercept, and ``ml_failure``: why
    maximum likelihood failed, if it did (see :func:`fit_logistic`'s notes). Returns
    dict(separation (bool), n_extreme (patients with a fitted probability within
    :data:`SEPARATION_P` of 0 or 1), max_abs_coef_per_sd (largest |coefficient x SD of its
    variable|, log-odds per SD), max_odds_ratio_per_sd, diverging (that value beyond
    ``_SEPARATION_LOGODDS_PER_SD`` or maximum likelihood failing), reasons (what was seen)).
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    beta = np.asarray(coefficients, dtype=float).ravel()
    eta = float(intercept) + (X @ beta if beta.size else 0.0)
    prob = 0.5 * (1 + np.tanh(0.5 * np.asarray(eta, dtype=float) * np.ones(y.size)))
    extreme = int(np.sum((prob < SEPARATION_P) | (prob > 1 - SEPARATION_P)))
    per_sd = float(np.max(np.abs(beta * X.std(axis=0)))) if beta.size else 0.0
    diverging = per_sd > _SEPARATION_LOGODDS_PER_SD or bool(ml_failure)
    reasons = []
    if extreme:
        reasons.append(f"{extreme} training patient(s) with a fitted probability within {SEPARATION_P:g} of 0 or 1")
    if per_sd > _SEPARATION_LOGODDS_PER_SD:
        reasons.append(f"a coefficient of {per_sd:.3g} log-odds per SD of its variable")
    if ml_failure:
        reasons.append(f"maximum likelihood: {ml_failure}")
    return {"separation": bool(extreme or diverging), "n_extreme": extreme,
            "max_abs_coef_per_sd": per_sd, "max_odds_ratio_per_sd": float(np.exp(min(per_sd, 700.0))),
            "diverging": bool(diverging), "reasons": reasons}
