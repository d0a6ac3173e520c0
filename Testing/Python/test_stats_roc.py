"""ROC, AUC, DeLong CI and paired test, Youden cut-off: against brute force, sklearn and published values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics

from DoseRadiomicsLib.errors import DataError
from DoseRadiomicsLib.stats import roc


def _psi(a, b):
    return 1.0 if a > b else (0.5 if a == b else 0.0)


def _brute_components(y, s):
    """DeLong 1988 structural components by explicit double loops (independent of the mid-rank trick)."""
    pos = [s[i] for i in range(len(y)) if y[i] == 1]
    neg = [s[i] for i in range(len(y)) if y[i] == 0]
    v10 = [sum(_psi(x, z) for z in neg) / len(neg) for x in pos]
    v01 = [sum(_psi(x, z) for x in pos) / len(pos) for z in neg]
    return np.array(v10), np.array(v01)


def _ties_data(seed=0, n=60):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    a = np.round(rng.normal(size=n) + 0.8 * y, 1)  # rounding creates ties
    b = np.round(0.6 * a + rng.normal(size=n) * 0.8, 1)
    return y, a, b


def test_delong_ci_matches_brute_force_placement_values():
    y, a, _ = _ties_data()
    v10, v01 = _brute_components(y, a)
    m, n = len(v10), len(v01)
    auc = v10.mean()
    s10 = sum((v - auc) ** 2 for v in v10) / (m - 1)
    s01 = sum((v - auc) ** 2 for v in v01) / (n - 1)
    se = math.sqrt(s10 / m + s01 / n)
    got = roc.delong_auc_ci(y, a)
    assert got["auc"] == pytest.approx(auc, abs=1e-12)
    assert got["se"] == pytest.approx(se, rel=1e-10)
    assert got["ci_low"] == pytest.approx(auc - 1.959963984540054 * se, rel=1e-9)
    assert got["ci_high"] == pytest.approx(auc + 1.959963984540054 * se, rel=1e-9)
    ci90 = roc.delong_auc_ci(y, a, alpha=0.10)
    assert ci90["ci_high"] - ci90["ci_low"] == pytest.approx(2 * 1.6448536269514722 * se, rel=1e-9)


def test_delong_paired_test_matches_brute_force_covariance():
    y, a, b = _ties_data(seed=3)
    a10, a01 = _brute_components(y, a)
    b10, b01 = _brute_components(y, b)
    m, n = len(a10), len(a01)
    A, B = a10.mean(), b10.mean()

    def cov(u, v, mu, mv):
        return sum((ui - mu) * (vi - mv) for ui, vi in zip(u, v)) / (len(u) - 1)

    var = (cov(a10, a10, A, A) + cov(b10, b10, B, B) - 2 * cov(a10, b10, A, B)) / m + \
          (cov(a01, a01, A, A) + cov(b01, b01, B, B) - 2 * cov(a01, b01, A, B)) / n
    z = (A - B) / math.sqrt(var)
    got = roc.delong_test(y, a, b)
    assert got["auc_a"] == pytest.approx(A) and got["auc_b"] == pytest.approx(B)
    assert got["diff"] == pytest.approx(A - B)
    assert got["se"] == pytest.approx(math.sqrt(var), rel=1e-10)
    assert got["z"] == pytest.approx(z, rel=1e-10)
    assert got["p"] == pytest.approx(2 * (1 - stats.norm.cdf(abs(z))), rel=1e-9)
    same = roc.delong_test(y, a, a)
    assert same["z"] == 0 and same["p"] == 1.0


def test_published_hanley_mcneil_ct_ratings():
    # Hanley JA, McNeil BJ. Radiology 1982;143:29-36, Table 1: 109 CT images rated 1 (definitely
    # normal) to 5 (definitely abnormal); normal 33/6/6/11/2, abnormal 3/2/2/11/33; area 0.893.
    # The same data are the example of Stata's [R] roctab manual entry, whose DeLong output is
    # "ROC area 0.8932, Std. Err. 0.0307, Asymptotic Normal 95% CI 0.83295 0.95339".
    ratings = np.arange(1, 6)
    normal = np.repeat(ratings, [33, 6, 6, 11, 2])
    abnormal = np.repeat(ratings, [3, 2, 2, 11, 33])
    y = np.r_[np.zeros(normal.size), np.ones(abnormal.size)]
    score = np.r_[normal, abnormal]
    assert round(roc.auc(y, score), 3) == 0.893
    got = roc.delong_auc_ci(y, score)
    assert round(got["auc"], 4) == 0.8932
    assert round(got["se"], 4) == 0.0307
    assert round(got["ci_low"], 5) == 0.83295
    assert round(got["ci_high"], 5) == 0.95339


def test_auc_and_curve_equal_sklearn_with_ties():
    rng = np.random.default_rng(7)
    for _ in range(5):
        y = rng.integers(0, 2, 200)
        s = rng.integers(0, 12, 200) + 2 * y  # many ties
        assert roc.auc(y, s) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
        fpr, tpr, thr = roc.roc_curve(y, s)
        f2, t2, th2 = metrics.roc_curve(y, s, drop_intermediate=False)
        np.testing.assert_allclose(fpr, f2)
        np.testing.assert_allclose(tpr, t2)
        assert thr[0] == np.inf and np.all(np.diff(thr[1:]) < 0)
        np.testing.assert_allclose(thr[1:], th2[1:])


def test_youden_cutoff_hand_cases():
    # negatives score 1, 2, 5; positives 3, 4, 6, 7.  J = sens + spec - 1 for "score >= c":
    # c=7: 1/4+1-1 = .25; c=6: .5; c=5: .5-1/3 = .167; c=4: .75-1/3 = .417; c=3: 1-1/3 = .667 (max);
    # c=2: 1-2/3 = .333; c=1: 0. The cut-off is pROC's: midway between 3 and the next lower score, 2.
    y = [0, 0, 0, 1, 1, 1, 1]
    s = [1, 2, 5, 3, 4, 6, 7]
    assert roc.youden_cutoff(y, s) == 2.5
    assert roc.classification_at(y, s, 2.5) == roc.classification_at(y, s, 3.0)
    c = roc.classification_at(y, s, 2.5)
    assert (c["tp"], c["fp"], c["tn"], c["fn"]) == (4, 1, 2, 0)
    assert c["sensitivity"] == 1.0 and c["specificity"] == pytest.approx(2 / 3)
    assert c["accuracy"] == pytest.approx(6 / 7) and c["ppv"] == pytest.approx(4 / 5) and c["npv"] == 1.0
    # tie: negatives 0.1, 0.4, 0.8; positives 0.35, 0.7, 0.9. J = 1/3 at c = 0.9, 0.7 and 0.35
    # (0 elsewhere); the documented tie-break takes the highest, 0.9, and returns the midpoint to 0.8.
    assert roc.youden_cutoff([0, 0, 0, 1, 1, 1], [0.1, 0.4, 0.8, 0.35, 0.7, 0.9]) == pytest.approx(0.85)
    # everyone positive is best (J = 0 everywhere): below the lowest score, by half the gap above it
    assert roc.youden_cutoff([1, 0], [0.2, 0.6]) == pytest.approx(0.0, abs=1e-15)
    nobody = roc.classification_at(y, s, 100)
    assert nobody["tp"] == nobody["fp"] == 0 and math.isnan(nobody["ppv"])


def test_bad_input_raises_data_error_saying_what_to_do():
    with pytest.raises(DataError, match="both"):
        roc.auc([1, 1, 1], [0.2, 0.3, 0.4])
    with pytest.raises(DataError, match="different numbers of patients"):
        roc.auc([0, 1, 1], [0.2, 0.3])
    with pytest.raises(DataError, match="missing"):
        roc.delong_auc_ci([0, 1, 1], [0.2, np.nan, 0.4])
    with pytest.raises(DataError, match="0/1"):
        roc.auc([0, 2, 1], [0.2, 0.3, 0.4])
