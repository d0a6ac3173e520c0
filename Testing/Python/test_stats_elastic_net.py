"""The glmnet-style coordinate-descent solver: optimality conditions, scikit-learn, duplicates, path rules."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from DoseRadiomicsLib.stats.elastic_net import (lambda_grid, lambda_max, logistic_elastic_net_path)


def _problem(seed=0, n=120, p=15, correlated=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    if correlated:  # radiomics-like: a few latent factors shared by many features
        X = rng.normal(size=(n, 3)) @ rng.normal(size=(3, p)) + 0.3 * X
    eta = 1.2 * X[:, 0] - X[:, 1] + 0.8 * X[:, 2]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    return X * rng.uniform(0.1, 50, p) + rng.uniform(-5, 5, p), y  # arbitrary units and offsets


def _kkt_errors(X, y, beta, b0, lam, alpha=1.0):
    """Largest violations of the objective's optimality conditions, relative to lambda."""
    sd = X.std(axis=0)
    Z = (X - X.mean(axis=0)) / sd
    b_std = beta * sd
    prob = 1 / (1 + np.exp(-(b0 + X @ beta)))
    g = Z.T @ (y - prob) / y.size
    nz = b_std != 0
    stationary = np.abs(g[nz] - lam * alpha * np.sign(b_std[nz]) - lam * (1 - alpha) * b_std[nz])
    return (stationary.max() / lam if nz.any() else 0.0,
            max(0.0, np.abs(g[~nz]).max() / (lam * alpha) - 1) if (~nz).any() else 0.0,
            abs(np.mean(y - prob)) / lam)


def _objective(X, y, beta, b0, lam):
    eta = b0 + X @ beta
    return np.mean(np.logaddexp(0, eta) - y * eta) + lam * np.abs(beta * X.std(axis=0)).sum()


@pytest.mark.parametrize("correlated", [False, True])
def test_path_satisfies_the_optimality_conditions(correlated):
    X, y = _problem(1, n=150, p=60, correlated=correlated)
    lams = lambda_grid(lambda_max(X, y), 60)
    path = logistic_elastic_net_path(X, y, lams, tol=1e-7)
    assert path["converged"]
    assert np.all(path["coefs"][0] == 0)  # lambda_max removes every feature
    assert (path["coefs"][1] != 0).sum() >= 1  # and the first one enters right after
    for k in range(path["n_fitted"]):
        errors = _kkt_errors(X, y, path["coefs"][k], path["intercepts"][k], lams[k])
        assert max(errors) <= 1e-6, (k, errors)
    assert np.all(np.diff(path["dev_ratio"]) >= -1e-12)  # a smaller penalty never fits worse


def test_elastic_net_satisfies_its_optimality_conditions():
    X, y = _problem(2, correlated=True)
    lams = lambda_grid(lambda_max(X, y, alpha=0.5), 30, 1e-2)
    path = logistic_elastic_net_path(X, y, lams, alpha=0.5, tol=1e-7)
    for k in (5, 15, path["n_fitted"] - 1):
        assert max(_kkt_errors(X, y, path["coefs"][k], path["intercepts"][k], lams[k], alpha=0.5)) <= 1e-6


def _lasso_reference(**kwargs):
    """scikit-learn's L1 logistic regression: asked for by ``penalty="l1"`` up to 1.7 (where
    ``l1_ratio`` alone is ignored and the fit is L2: Slicer 5.8's pip picks 1.7), by
    ``l1_ratio=1`` from 1.8 (``penalty`` deprecated)."""
    if LogisticRegression().get_params().get("penalty") == "l2":
        return LogisticRegression(penalty="l1", **kwargs)
    return LogisticRegression(l1_ratio=1.0, **kwargs)


def test_matches_scikit_learn_saga_with_its_unpenalised_intercept():
    """scikit-learn minimises C sum(logloss) + ||b||_1; divided by C n it is this objective for
    C = 1 / (n lambda) (features standardised the same way; saga leaves the intercept unpenalised)."""
    X, y = _problem(3)
    n = y.size
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    lam_max = lambda_max(X, y)
    lams = lambda_grid(lam_max, 20, 0.05)
    path = logistic_elastic_net_path(X, y, lams, tol=1e-9)
    for k in (3, 10, 19):
        ref = _lasso_reference(C=1 / (n * lams[k]), solver="saga", tol=1e-12, max_iter=100000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (ConvergenceWarning, FutureWarning, UserWarning))
            ref.fit(Z, y)
        ours_std = path["coefs"][k] * X.std(axis=0)
        np.testing.assert_allclose(ours_std, ref.coef_[0], atol=1e-5)
        assert (ours_std != 0).tolist() == (np.abs(ref.coef_[0]) > 1e-8).tolist()
        ours_b0 = path["intercepts"][k] + X.mean(axis=0) @ path["coefs"][k]  # intercept on Z's scale
        assert ours_b0 == pytest.approx(ref.intercept_[0], abs=1e-5)
        ref_beta = ref.coef_[0] / X.std(axis=0)
        ref_b0 = ref.intercept_[0] - X.mean(axis=0) @ ref_beta
        assert _objective(X, y, path["coefs"][k], path["intercepts"][k], lams[k]) <= \
            _objective(X, y, ref_beta, ref_b0, lams[k]) + 1e-10


def test_liblinear_differs_only_by_its_penalised_intercept():
    """liblinear penalises the intercept (as a constant column of value intercept_scaling); with a
    large scaling that penalty vanishes and it agrees with the unpenalised-intercept fit."""
    X, y = _problem(4)
    y[:30] = 1  # an unbalanced outcome, where a penalised intercept matters most
    n = y.size
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    lam = lambda_max(X, y) * 0.2
    path = logistic_elastic_net_path(X, y, np.array([lambda_max(X, y), lam]), tol=1e-10)
    ours_std = path["coefs"][1] * X.std(axis=0)
    ref = _lasso_reference(C=1 / (n * lam), solver="liblinear", tol=1e-12, max_iter=100000,
                             intercept_scaling=1e4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (ConvergenceWarning, FutureWarning, UserWarning))
        ref.fit(Z, y)
    np.testing.assert_allclose(ours_std, ref.coef_[0], atol=1e-4)


def test_duplicated_features_take_the_weight_on_the_first_copy():
    X, y = _problem(5)
    lams = lambda_grid(lambda_max(X, y), 25, 0.05)
    base = logistic_elastic_net_path(X, y, lams, tol=1e-9)
    p = X.shape[1]
    # column 0 repeated (rescaled) and negated: the same fit, the copies at 0
    Xd = np.column_stack([X, 3 * X[:, 0] + 1, -X[:, 0]])
    dup = logistic_elastic_net_path(Xd, y, lams, tol=1e-9)
    np.testing.assert_allclose(dup["coefs"][:, p:], 0)
    np.testing.assert_allclose(dup["coefs"][:, :p], base["coefs"], atol=1e-7)
    np.testing.assert_allclose(dup["intercepts"], base["intercepts"], atol=1e-7)
    # exact linear combinations (as pyradiomics' Range = Maximum - Minimum) make the active
    # set's system singular: the solver still reaches the optimum
    Xc = np.column_stack([X, X[:, 1] - X[:, 2], X[:, 0] + X[:, 1] + X[:, 2]])
    comb = logistic_elastic_net_path(Xc, y, lams, tol=1e-9)
    assert comb["converged"]
    for k in range(len(lams)):
        assert max(_kkt_errors(Xc, y, comb["coefs"][k], comb["intercepts"][k], lams[k])) <= 1e-6
        # the combinations can only help: never a worse objective than without them
        assert _objective(Xc, y, comb["coefs"][k], comb["intercepts"][k], lams[k]) <= \
            _objective(X, y, base["coefs"][k], base["intercepts"][k], lams[k]) + 1e-10


def test_path_stops_as_glmnet_near_separation():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(40, 200))  # far more features than patients: (quasi-)separable
    y = (X[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(float)
    lams = lambda_grid(lambda_max(X, y), 100, 1e-5)
    path = logistic_elastic_net_path(X, y, lams)
    k = path["n_fitted"]
    assert 5 <= k < 100
    ratio = path["dev_ratio"]
    assert ratio[-1] >= 0.999 or ratio[-1] - ratio[-2] < 1e-5
    assert np.all(ratio[:-1] < 0.999)
    np.testing.assert_array_equal(path["coefs"][k:], np.repeat(path["coefs"][k - 1:k], 100 - k, axis=0))


def test_constant_features_and_bad_arguments():
    X, y = _problem(7, p=5)
    X[:, 2] = 4.0
    path = logistic_elastic_net_path(X, y, lambda_grid(lambda_max(X, y), 10, 0.1))
    assert np.all(path["coefs"][:, 2] == 0)
    with pytest.raises(ValueError, match="decreasing"):
        logistic_elastic_net_path(X, y, [0.1, 0.2])
    with pytest.raises(ValueError, match="alpha"):
        logistic_elastic_net_path(X, y, [0.1], alpha=0)


def test_duplicate_screen_keeps_the_first_of_exactly_the_identical_standardised_columns():
    # pyradiomics-like tables: copies, rescaled and negated copies, copies that differ below the
    # 9-digit rounding, near-copies that do not, many features: the screen compares only columns
    # whose projections tie, so check it against every column's rounded values grouped by hand
    from DoseRadiomicsLib.stats.elastic_net import _first_of_duplicates, _standardise
    rng = np.random.default_rng(7)
    base = rng.normal(size=(60, 300))
    cols = [base]
    for j in rng.choice(300, 40, replace=False):
        cols.append(np.column_stack([2.5 * base[:, j] - 3, -base[:, j], base[:, j] + 1e-13,
                                     base[:, j] + 1e-6 * rng.normal(size=60)]))
    cols.append(np.round(base[:, :20], 1))  # coarse values: ties within columns, not between them
    X = np.column_stack(cols)[:, rng.permutation(sum(c.shape[1] for c in cols))]
    Z, _, sd = _standardise(X)
    keep = _first_of_duplicates(Z)
    seen, expected = set(), np.zeros(Z.shape[1], dtype=bool)
    for j in range(Z.shape[1]):
        z = Z[:, j]
        s = np.sign(z[np.argmax(np.abs(z) > 1e-9)])
        key = tuple(np.round(z * (s if s else 1.0), 9).tolist())
        expected[j] = key not in seen
        seen.add(key)
    assert 0 < (~expected).sum() < Z.shape[1]
    np.testing.assert_array_equal(keep, expected)
