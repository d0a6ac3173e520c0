"""Min-max scaling, univariate filter and LASSO selection."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.preprocessing import MinMaxScaler as SkMinMax

from DoseRadiomicsLib.errors import DataError, ModelFileError
from DoseRadiomicsLib.stats.normality import normal_columns, shapiro_wilk_columns
from DoseRadiomicsLib.stats.selection import MinMaxScaler, lasso_select, univariate_filter


def test_minmax_scaler_matches_sklearn_and_round_trips():
    rng = np.random.default_rng(0)
    train = pd.DataFrame(rng.normal(size=(30, 3)) * [1, 10, 100], columns=["a", "b", "c"])
    train["const"] = 7.0
    s = MinMaxScaler().fit(train)
    ref = SkMinMax().fit(train[["a", "b", "c"]])
    new = pd.DataFrame(rng.normal(size=(5, 4)) * [1, 10, 100, 1], columns=["a", "b", "c", "const"])
    out = s.transform(new)
    np.testing.assert_allclose(out[["a", "b", "c"]], ref.transform(new[["a", "b", "c"]]), atol=1e-12)
    assert (out["const"] == 0).all()  # documented: constant training columns map to 0
    assert s.fit_transform(train)[["a", "b", "c"]].min().tolist() == [0, 0, 0]
    # columns are matched by name, output keeps the fitted order, extra columns are ignored
    shuffled = new[["const", "c", "a", "b"]].assign(extra=1.0)
    pd.testing.assert_frame_equal(s.transform(shuffled), out)
    again = MinMaxScaler.from_dict(json.loads(json.dumps(s.to_dict())))
    pd.testing.assert_frame_equal(again.transform(new), out)
    with pytest.raises(DataError, match="missing"):
        s.transform(new[["a", "b"]])
    with pytest.raises(ModelFileError):
        MinMaxScaler.from_dict({"features": ["a"], "min": [1.0], "max": [0.0]})


def test_univariate_filter_chooses_test_by_normality_and_matches_scipy():
    rng = np.random.default_rng(1)
    n = 80
    y = np.r_[np.zeros(n // 2), np.ones(n // 2)].astype(int)
    normal = rng.normal(size=n) + 0.8 * y
    skewed = rng.lognormal(sigma=1.5, size=n) * np.exp(1.5 * y)
    noise = rng.normal(size=n)
    X = pd.DataFrame({"normal_f": normal, "skewed_f": skewed, "noise_f": noise})
    # preconditions of the data, checked independently with scipy
    assert stats.shapiro(normal[y == 0]).pvalue >= 0.05 and stats.shapiro(normal[y == 1]).pvalue >= 0.05
    assert stats.shapiro(skewed[y == 1]).pvalue < 0.05
    got = univariate_filter(X, y)
    assert got["feature"].tolist() == ["normal_f", "skewed_f", "noise_f"]
    row = got.set_index("feature")
    assert row.loc["normal_f", "test"] == "t-test" and row.loc["normal_f", "normal"]
    assert row.loc["normal_f", "p"] == pytest.approx(stats.ttest_ind(normal[y == 0], normal[y == 1]).pvalue,
                                                     rel=1e-12)
    assert row.loc["skewed_f", "test"] == "Mann-Whitney U" and not row.loc["skewed_f", "normal"]
    assert row.loc["skewed_f", "p"] == pytest.approx(
        stats.mannwhitneyu(skewed[y == 0], skewed[y == 1], alternative="two-sided").pvalue, rel=1e-12)
    assert (got["selected"] == (got["p"] < 0.05)).all()
    assert row.loc["normal_f", "selected"] and row.loc["skewed_f", "selected"]
    welch = univariate_filter(X, y, equal_var=False).set_index("feature")
    assert welch.loc["normal_f", "p"] == pytest.approx(
        stats.ttest_ind(normal[y == 0], normal[y == 1], equal_var=False).pvalue, rel=1e-12)


def _univariate_per_feature(X, y, alpha=0.05, level=0.05, equal_var=True):
    """The filter written per feature with scipy, as the paper describes it (the reference)."""
    def normal(v):
        return v.size >= 3 and np.ptp(v) > 0 and stats.shapiro(v).pvalue >= level
    rows = []
    for name in X.columns:
        v = X[name].to_numpy()
        a, b = v[y == 0], v[y == 1]
        is_normal = normal(a) and normal(b)
        if np.ptp(v) == 0:
            test, p = "Mann-Whitney U", 1.0
        elif is_normal:
            test, p = "t-test", stats.ttest_ind(a, b, equal_var=equal_var).pvalue
        else:
            test, p = "Mann-Whitney U", stats.mannwhitneyu(a, b, alternative="two-sided").pvalue
        rows.append((name, test, float(p), bool(is_normal), bool(p < alpha)))
    return pd.DataFrame(rows, columns=["feature", "test", "p", "normal", "selected"])


@pytest.mark.parametrize("n0, n1", [(70, 84), (7, 12), (5, 4), (2, 30)])
def test_univariate_filter_equals_the_per_feature_scipy_computation(n0, n1):
    """Vectorised filter == one scipy call per feature: same tests, identical p-values, same selection.

    Covers normal, skewed, tied (rounded) and constant features, exact Mann-Whitney for classes
    of <= 8 patients (with and without ties), classes too small for Shapiro-Wilk, and Welch.
    """
    rng = np.random.default_rng(n0 * 100 + n1)
    y = np.r_[np.zeros(n0), np.ones(n1)].astype(int)
    n = y.size
    cols = {}
    for k in range(60):
        shift = 0.4 * (k % 3) * y
        cols[f"normal{k}"] = rng.normal(size=n) + shift
        cols[f"skewed{k}"] = rng.lognormal(sigma=1.0, size=n) * np.exp(shift)
        cols[f"tied{k}"] = np.round(rng.normal(size=n) + shift, 0)
    cols["constant"] = np.full(n, 3.0)
    cols["constant_in_class0"] = np.where(y == 0, 1.0, rng.normal(size=n))
    X = pd.DataFrame(cols)
    for equal_var in (True, False):
        got = univariate_filter(X, y, equal_var=equal_var)
        ref = _univariate_per_feature(X, y, equal_var=equal_var)
        pd.testing.assert_frame_equal(got[["feature", "test", "normal", "selected"]],
                                      ref[["feature", "test", "normal", "selected"]])
        np.testing.assert_allclose(got["p"], ref["p"], rtol=1e-13, atol=0)
    assert set(got["test"]) == {"t-test", "Mann-Whitney U"} or min(n0, n1) < 3


def test_shapiro_wilk_columns_equals_scipy():
    """Royston's algorithm on many columns at once: W and p as scipy.stats.shapiro, per column."""
    rng = np.random.default_rng(7)
    for n in (3, 4, 5, 6, 8, 11, 12, 20, 47, 154, 700):
        X = np.vstack([rng.normal(size=(40, n)), rng.lognormal(size=(40, n)), rng.uniform(size=(40, n)),
                       np.round(rng.normal(size=(40, n)), 1) * 50 + 1000])
        w, p = shapiro_wilk_columns(X)
        ref = np.array([stats.shapiro(x) for x in X])
        np.testing.assert_allclose(w, ref[:, 0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(p, ref[:, 1], rtol=0, atol=1e-9)
        assert (normal_columns(X, 0.05) == (ref[:, 1] >= 0.05)).all()
    # no spread or too few values: not normal (scipy cannot test them)
    assert not normal_columns(np.ones((2, 10)), 0.05).any()
    assert not normal_columns(rng.normal(size=(2, 2)), 0.05).any()


def _logistic_problem(seed=1, n=150, p=50):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    eta = 1.5 * X[:, 0] - 1.5 * X[:, 1] + 1.5 * X[:, 2]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    # min-max scaled like the paper's features, so the coefficients are on a [0, 1] scale
    X = (X - X.min(axis=0)) / (X.max(axis=0) - X.min(axis=0))
    return pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(p)]), y


def test_lasso_select_recovers_informative_features_deterministically():
    X, y = _logistic_problem()
    r = lasso_select(X, y, folds=10, rule="1se", seed=0, n_lambdas=60)
    assert set(r["selected"]) >= {"f00", "f01", "f02"}
    assert len(r["selected"]) <= 6
    assert r["coefficients"]["f00"] > 0 and r["coefficients"]["f01"] < 0 and r["coefficients"]["f02"] > 0
    cv = r["cv"]
    lam = np.array(cv["lambdas"])
    assert len(lam) <= 60 and lam[-1] == pytest.approx(lam[0] * 1e-3) and np.all(np.diff(lam) < 0)
    i_min, i_1se = cv["lambdas"].index(r["lambda_min"]), cv["lambdas"].index(r["lambda_1se"])
    assert r["lambda_1se"] >= r["lambda_min"]
    assert cv["n_nonzero"][i_1se] <= cv["n_nonzero"][i_min]
    assert cv["mean_deviance"][i_min] == min(cv["mean_deviance"])
    assert cv["mean_deviance"][i_1se] <= cv["mean_deviance"][i_min] + cv["se_deviance"][i_min]
    assert cv["n_nonzero"][0] == 0  # lambda_max removes every feature

    # glmnet's objective -(1/n) loglik + lambda ||beta_std||_1 at the chosen lambda: the
    # optimality (KKT) conditions on standardised features, checked from the returned model
    Xv = X.to_numpy()
    sd = Xv.std(axis=0)
    Z = (Xv - Xv.mean(axis=0)) / sd
    beta = np.array([r["coefficients"].get(c, 0.0) for c in X.columns])
    prob = 1 / (1 + np.exp(-(r["intercept"] + Xv @ beta)))
    grad = Z.T @ (y - prob) / y.size
    lam_c = r["lambda_chosen"]
    nz = beta != 0
    np.testing.assert_allclose(grad[nz], lam_c * np.sign(beta[nz]), rtol=1e-4)
    assert np.all(np.abs(grad[~nz]) <= lam_c * (1 + 1e-4))
    assert abs(np.mean(y - prob)) <= lam_c * 1e-4  # the intercept is not penalised
    assert r["converged"] and "coordinate descent" in r["solver"]

    # same seed, same folds: the min rule run reproduces the CV curve exactly
    m = lasso_select(X, y, folds=10, rule="min", seed=0, n_lambdas=60)
    assert m["cv"] == cv and m["lambda_min"] == r["lambda_min"]
    assert m["rule_used"] == "min" and len(m["selected"]) == cv["n_nonzero"][i_min]
    assert len(r["selected"]) <= len(m["selected"])


def test_lasso_falls_back_to_lambda_min_when_1se_keeps_nothing():
    rng = np.random.default_rng(5)
    n = 60
    X = pd.DataFrame(rng.normal(size=(n, 6)), columns=list("abcdef"))
    y = (rng.random(n) < 1 / (1 + np.exp(-0.5 * X["a"].to_numpy()))).astype(int)
    r = lasso_select(X, y, folds=5, n_lambdas=20, seed=2)
    i_1se = r["cv"]["lambdas"].index(r["lambda_1se"])
    assert r["cv"]["n_nonzero"][i_1se] == 0  # the situation under test
    assert r["rule"] == "1se" and r["rule_used"] == "min"
    assert r["lambda_chosen"] == r["lambda_min"]


def test_lasso_needs_enough_patients_per_class_for_the_folds():
    X, y = _logistic_problem(n=40, p=5)
    y = np.zeros(40, dtype=int)
    y[:6] = 1
    with pytest.raises(DataError, match="fewer folds"):
        lasso_select(X, y, folds=10)


def test_welch_option_and_the_r_exact_mann_whitney_rule_against_hand_computations():
    """--ttest welch: Welch's t with Satterthwaite df by hand; --mannwhitney-exact R: with 9 and 10
    patients (above the paper's 8, below R's 50) and no ties, the exact p from enumerating all
    C(19, 9) rank assignments (R: 2 * min(P(W <= w), P(W >= w)), capped at 1)."""
    from itertools import combinations

    from scipy import stats as st

    from DoseRadiomicsLib.stats.selection import univariate_filter

    rng = np.random.default_rng(8)
    a, b = rng.normal(0, 1, 30), rng.normal(0.6, 3, 25)       # normal, unequal variances
    X = pd.DataFrame({"f": np.r_[a, b]})
    y = np.r_[np.zeros(30), np.ones(25)]
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    welch = univariate_filter(X, y, equal_var=False)
    assert welch["test"][0] == "t-test"
    assert welch["p"][0] == pytest.approx(2 * st.t.sf(abs(t), df), rel=1e-10)
    assert univariate_filter(X, y)["p"][0] != pytest.approx(welch["p"][0], rel=1e-3)   # Student differs

    u0, u1 = rng.exponential(1, 9), rng.exponential(1, 10) + 0.8    # not normal: Mann-Whitney
    values = np.r_[u0, u1]
    ranks = st.rankdata(values)
    w_obs = ranks[:9].sum()
    sums = np.array([sum(ranks[list(c)]) for c in combinations(range(19), 9)])
    exact = min(1.0, 2 * min(np.mean(sums <= w_obs), np.mean(sums >= w_obs)))
    Xu, yu = pd.DataFrame({"g": values}), np.r_[np.zeros(9), np.ones(10)]
    r_rule = univariate_filter(Xu, yu, mannwhitney_exact="R", normality_alpha=1.0)
    paper = univariate_filter(Xu, yu, normality_alpha=1.0)
    assert r_rule["test"][0] == paper["test"][0] == "Mann-Whitney U"
    assert r_rule["p"][0] == pytest.approx(exact, rel=1e-9)
    assert paper["p"][0] == pytest.approx(st.mannwhitneyu(u0, u1, method="asymptotic").pvalue, rel=1e-12)
    assert paper["p"][0] != pytest.approx(exact, rel=1e-3)


def test_lasso_cv_folds_go_by_patient_so_a_bootstrap_copy_is_never_fitted_and_scored_in_one_fold():
    """glmnet's foldid by patient: copies of a patient drawn twice share a fold; the patients' folds
    are scikit-learn's StratifiedKFold of the distinct patients, and with distinct patients the rows'."""
    from sklearn.model_selection import StratifiedKFold

    from DoseRadiomicsLib.stats.selection import _patient_folds

    X, y = _logistic_problem(n=80, p=8)
    ids = np.array([f"P{i:03d}" for i in range(80)])
    draw = np.random.default_rng(4).integers(0, 80, 80)
    Xb, yb, gb = X.iloc[draw].reset_index(drop=True), y[draw], ids[draw]
    folds = _patient_folds(yb, gb, 10, 3)
    assert sorted(np.concatenate([t for _, t in folds]).tolist()) == list(range(80))
    first = [int(np.flatnonzero(gb == g)[0]) for g in dict.fromkeys(gb)]  # patients, first appearance
    ref = StratifiedKFold(10, shuffle=True, random_state=3).split(np.zeros(len(first)), yb[first])
    for (train, test), (_, ref_test) in zip(folds, ref):
        assert not set(gb[train]) & set(gb[test])  # the leak the old row folds had
        assert set(gb[test]) == set(gb[first][ref_test])
    rows = StratifiedKFold(10, shuffle=True, random_state=3).split(np.zeros(80), y)
    for (train, test), (ref_train, ref_test) in zip(_patient_folds(y, ids, 10, 3), rows):
        assert train.tolist() == ref_train.tolist() and test.tolist() == ref_test.tolist()
    # distinct patients: the same selection with or without patient keys (the main fit is unchanged)
    assert lasso_select(X, y, folds=5, n_lambdas=20, seed=1, groups=ids) == \
        lasso_select(X, y, folds=5, n_lambdas=20, seed=1)
    grouped = lasso_select(Xb, yb, folds=5, n_lambdas=20, seed=1, groups=gb)
    assert grouped["cv"] != lasso_select(Xb, yb, folds=5, n_lambdas=20, seed=1)["cv"]
