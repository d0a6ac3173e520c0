"""Firth's bias-reduced logistic regression and the separation diagnostics (issue 13, fix 2)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize
from scipy.special import expit

from DoseRadiomicsLib.stats.firth import firth_logistic
from DoseRadiomicsLib.stats.logistic import fit_logistic, separation_diagnostics


def _table(a, b, c, d):
    """x = 1: a events, b non-events; x = 0: c events, d non-events."""
    x = np.r_[np.ones(a + b), np.zeros(c + d)]
    y = np.r_[np.ones(a), np.zeros(b), np.ones(c), np.zeros(d)]
    return x, y


@pytest.mark.parametrize("cells", [(10, 0, 0, 10), (7, 5, 2, 7), (3, 0, 4, 9)])
def test_one_binary_covariate_is_the_log_odds_ratio_with_half_added_to_every_cell(cells):
    """Published property (Firth 1993; Heinze & Schemper 2002): with one binary covariate the Firth
    estimate is the empirical log odds ratio after adding 1/2 to each cell (Haldane), finite even when a
    cell is empty (complete separation, where maximum likelihood diverges)."""
    a, b, c, d = cells
    fit = firth_logistic(*_table(a, b, c, d)[:1], _table(a, b, c, d)[1])
    assert fit["converged"]
    assert fit["coefficients"][0] == pytest.approx(math.log((a + .5) * (d + .5) / ((b + .5) * (c + .5))), abs=1e-9)
    assert fit["intercept"] == pytest.approx(math.log((c + .5) / (d + .5)), abs=1e-9)


def _penalised_loglik(theta, X, y):
    Z = np.column_stack([np.ones(len(y)), X])
    eta = Z @ theta
    w = expit(eta) * (1 - expit(eta))
    return np.sum(y * eta - np.logaddexp(0, eta)) + 0.5 * np.linalg.slogdet((Z * w[:, None]).T @ Z)[1]


def test_separated_multivariable_data_match_a_direct_maximisation_of_the_penalised_likelihood():
    """Quasi-complete separation with three covariates: maximum likelihood has no finite maximum;
    Firth's estimate is the maximiser of l(b) + 1/2 log det I(b), found here by scipy's general
    optimiser from another start on the raw (unstandardised) scale."""
    rng = np.random.default_rng(4)
    n = 60
    X = np.column_stack([rng.normal(size=n), rng.normal(5, 3, n), rng.integers(0, 2, n)])
    y = (X[:, 0] > 0).astype(float)             # x0 separates y completely
    y[np.abs(X[:, 0]) < 1e-9] = 1
    fit = firth_logistic(X, y)
    assert fit["converged"]
    theta = np.r_[fit["intercept"], fit["coefficients"]]
    direct = optimize.minimize(lambda t: -_penalised_loglik(t, X, y), np.r_[0.5, np.ones(3)], method="BFGS",
                               options={"gtol": 1e-9, "maxiter": 10000})
    np.testing.assert_allclose(theta, direct.x, atol=2e-4)
    assert _penalised_loglik(theta, X, y) >= -direct.fun - 1e-9
    assert np.all(np.isfinite(fit["se"])) and np.abs(theta).max() < 50
    # the maximum-likelihood fit of the same data is flagged as separated
    ml = fit_logistic(pd.DataFrame(X, columns=["a", "b", "c"]), y)
    coefs = [ml.coefficients[k] for k in "abc"]
    failure = ml.notes[0].split(";")[0] if ml.penalty is not None else None
    diag = separation_diagnostics(X, y, coefs, ml.intercept, ml_failure=failure)
    assert diag["separation"] and diag["diverging"]
    # ... and Firth's estimate of the separating coefficient is finite and smaller
    assert abs(fit["coefficients"][0]) < abs(coefs[0])


def test_ordinary_data_show_no_separation_and_firth_is_close_to_maximum_likelihood():
    import statsmodels.api as sm
    rng = np.random.default_rng(1)
    n = 400
    X = rng.normal(size=(n, 2))
    y = (rng.random(n) < expit(0.3 + X @ [1.0, -0.5])).astype(float)
    ml = sm.Logit(y, sm.add_constant(X)).fit(disp=0)
    fit = firth_logistic(X, y)
    # Firth's correction is O(1/n): small against the standard errors here
    assert np.all(np.abs(np.r_[fit["intercept"], fit["coefficients"]] - ml.params) < 0.2 * ml.bse)
    np.testing.assert_allclose(fit["se"], ml.bse, rtol=0.05)
    diag = separation_diagnostics(X, y, ml.params[1:], ml.params[0])
    assert not diag["separation"] and diag["n_extreme"] == 0 and diag["reasons"] == []


def test_fitted_probabilities_at_zero_or_one_are_counted():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    d = separation_diagnostics(X, y, [40.0], -60.0)   # eta = -60, -20, 20, 60
    assert d["n_extreme"] == 4 and d["separation"]
    assert "4 training patient(s) with a fitted probability within 1e-08 of 0 or 1" in d["reasons"][0]
