"""Logistic models, odds-ratio tables and the univariate -> multivariate clinical procedure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from DoseRadiomicsLib.errors import DataError, ModelFileError
from DoseRadiomicsLib.stats.logistic import (LogisticModel, fit_logistic, odds_ratio_table,
                                             univariate_multivariate)


def _clinical(seed=0, n=300):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"Hb": rng.normal(125, 15, n), "T_stage": rng.integers(1, 5, n).astype(float),
                      "age": rng.normal(60, 8, n), "smoker": rng.integers(0, 2, n).astype(float)})
    eta = -0.05 * (X["Hb"] - 125) + 0.7 * (X["T_stage"] - 2.5)  # Hb and T stage matter, the rest not
    y = (rng.random(n) < 1 / (1 + np.exp(-eta.to_numpy()))).astype(int)
    return X, y


def _newton_logit(X, y):
    """Independent maximum likelihood: Newton-Raphson with the observed information for SEs."""
    A = np.column_stack([np.ones(len(y)), X])
    b = np.zeros(A.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-A @ b))
        info = A.T @ (A * (p * (1 - p))[:, None])
        b = b + np.linalg.solve(info, A.T @ (y - p))
    p = 1 / (1 + np.exp(-A @ b))
    cov = np.linalg.inv(A.T @ (A * (p * (1 - p))[:, None]))
    return b, np.sqrt(np.diag(cov))


def test_odds_ratio_table_matches_independent_newton_raphson():
    X, y = _clinical()
    b, se = _newton_logit(X.to_numpy(), y)
    t = odds_ratio_table(X, y)
    assert t["variable"].tolist() == list(X.columns)
    np.testing.assert_allclose(t["coef"], b[1:], rtol=1e-7)
    np.testing.assert_allclose(t["odds_ratio"], np.exp(b[1:]), rtol=1e-7)
    np.testing.assert_allclose(t["ci_low"], np.exp(b[1:] - 1.959963984540054 * se[1:]), rtol=1e-6)
    np.testing.assert_allclose(t["ci_high"], np.exp(b[1:] + 1.959963984540054 * se[1:]), rtol=1e-6)
    np.testing.assert_allclose(t["p"], 2 * stats.norm.sf(np.abs(b[1:] / se[1:])), rtol=1e-5)
    m = fit_logistic(X, y)
    assert m.penalty is None and m.intercept == pytest.approx(b[0], rel=1e-7)
    np.testing.assert_allclose(m.predict_proba(X), 1 / (1 + np.exp(-(b[0] + X.to_numpy() @ b[1:]))), rtol=1e-7)


def test_univariate_multivariate_picks_the_true_predictors():
    X, y = _clinical()
    r = univariate_multivariate(X, y)
    assert r["univariate"]["variable"].tolist() == list(X.columns)
    # each univariate row is the one-variable model
    b, _ = _newton_logit(X[["age"]].to_numpy(), y)
    assert r["univariate"].set_index("variable").loc["age", "coef"] == pytest.approx(b[1], rel=1e-6)
    assert set(r["candidates"]) >= {"Hb", "T_stage"}
    assert r["candidates"] == [v for v, p in zip(r["univariate"]["variable"], r["univariate"]["p"]) if p < 0.1]
    assert r["multivariate"]["variable"].tolist() == r["candidates"]
    assert r["independent"] == ["Hb", "T_stage"]
    hb = r["multivariate"].set_index("variable").loc["Hb"]
    assert hb["odds_ratio"] < 1 and hb["ci_high"] < 1  # higher Hb protects, as in the paper


def test_fit_logistic_survives_perfect_separation():
    X, y = _clinical(n=80)
    X["marker"] = y * 2.0 - 1.0  # predicts the outcome exactly
    m = fit_logistic(X, y)
    assert m.penalty is not None and "separation" in " ".join(m.notes)
    assert all(np.isfinite(list(m.coefficients.values())))
    p = m.predict_proba(X)
    assert p[y == 1].min() > p[y == 0].max()
    t = odds_ratio_table(X, y)
    assert t["p"].isna().all() and t["note"].str.contains("separation").all()
    r = univariate_multivariate(X, y)
    assert "marker" not in r["candidates"]


def test_requested_ridge_penalty_is_the_documented_optimum():
    X, y = _clinical(n=120)
    alpha = 0.05
    m = fit_logistic(X, y, penalty=alpha)
    # gradient of -(1/n) loglik + alpha/2 ||beta_std||^2 vanishes at the optimum
    Xv = X.to_numpy()
    sd = Xv.std(axis=0)
    beta = np.array([m.coefficients[c] for c in X.columns])
    p = m.predict_proba(X)
    grad_std = ((Xv - Xv.mean(axis=0)) / sd).T @ (p - y) / len(y) + alpha * beta * sd
    np.testing.assert_allclose(grad_std, 0, atol=1e-8)
    assert abs(np.mean(p - y)) < 1e-10


def test_model_round_trips_and_uses_columns_by_name():
    X, y = _clinical(n=150)
    m = fit_logistic(X, y)
    again = LogisticModel.from_dict(json.loads(json.dumps(m.to_dict())))
    shuffled = X[["smoker", "age", "T_stage", "Hb"]].assign(other=3.0)
    np.testing.assert_allclose(again.predict_proba(shuffled), m.predict_proba(X), rtol=1e-12)
    np.testing.assert_allclose(m.linear_predictor(X), np.log(m.predict_proba(X) / (1 - m.predict_proba(X))),
                               rtol=1e-9)
    with pytest.raises(DataError, match="missing"):
        m.predict_proba(X[["Hb", "age"]])
    with pytest.raises(ModelFileError):
        LogisticModel.from_dict({"names": ["a"], "coefficients": {"b": 1.0}, "intercept": 0.0})
    with pytest.raises(DataError, match="non-numeric"):
        fit_logistic(X.assign(sex="F"), y)
