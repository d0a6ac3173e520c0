"""Kaplan-Meier, numbers at risk, log-rank and Cox HR: against lifelines (independent code) and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.datasets import load_rossi, load_waltons
from lifelines.statistics import logrank_test as ll_logrank
from lifelines.statistics import multivariate_logrank_test as ll_multi

from DoseRadiomicsLib.errors import DataError
from DoseRadiomicsLib.stats import survival


def test_logrank_hand_computed_case():
    # group A: event at 1, event at 3, censored at 5; group B: events at 2, 4, 6.
    # event time | at risk A, B | events | E_A = d*nA/n | V = d(n-d)/(n-1) * nA*nB/n^2
    #      1     |    3, 3      | A      | 3/6 = .5     | 1 * 9/36 = .25
    #      2     |    2, 3      | B      | 2/5 = .4     | 1 * 6/25 = .24
    #      3     |    2, 2      | A      | 2/4 = .5     | 1 * 4/16 = .25
    #      4     |    1, 2      | B      | 1/3          | 1 * 2/9
    #      6     |    0, 1      | B      | 0            | 0 (one patient at risk)
    # O_A = 2, E_A = 1.7333, V = .96222, chi2 = (O-E)^2 / V = .073903
    time = [1, 3, 5, 2, 4, 6]
    event = [1, 1, 0, 1, 1, 1]
    group = ["A", "A", "A", "B", "B", "B"]
    e_a = 0.5 + 0.4 + 0.5 + 1 / 3
    v = 0.25 + 0.24 + 0.25 + 2 / 9
    got = survival.logrank_test(time, event, group)
    assert got["chi2"] == pytest.approx((2 - e_a) ** 2 / v, rel=1e-12)
    assert got["chi2"] == pytest.approx(0.073903, abs=1e-6)
    assert got["df"] == 1
    assert got["expected"][0] == pytest.approx(e_a)


def test_logrank_equals_lifelines_on_bundled_datasets():
    w = load_waltons()
    a, b = w[w.group == "control"], w[w.group != "control"]
    ref = ll_logrank(a["T"], b["T"], a["E"], b["E"])
    got = survival.logrank_test(w["T"], w["E"], w["group"])
    assert got["chi2"] == pytest.approx(ref.test_statistic, rel=1e-9)
    assert got["p"] == pytest.approx(ref.p_value, rel=1e-6)
    r = load_rossi()
    prio = r["prio"].clip(upper=3)  # four groups: 0, 1, 2, 3+ prior convictions
    ref = ll_multi(r["week"], prio, r["arrest"])
    got = survival.logrank_test(r["week"], r["arrest"], prio)
    assert got["df"] == 3
    assert got["chi2"] == pytest.approx(ref.test_statistic, rel=1e-9)
    assert got["p"] == pytest.approx(ref.p_value, rel=1e-9)


def test_kaplan_meier_equals_lifelines():
    r = load_rossi()
    ref = KaplanMeierFitter().fit(r["week"], r["arrest"])
    got = survival.kaplan_meier(r["week"], r["arrest"])
    np.testing.assert_allclose(got["time"], ref.timeline)
    np.testing.assert_allclose(got["survival"], ref.survival_function_.iloc[:, 0], atol=1e-12)
    np.testing.assert_allclose(got["ci_low"], ref.confidence_interval_.iloc[:, 0], atol=1e-10)
    np.testing.assert_allclose(got["ci_high"], ref.confidence_interval_.iloc[:, 1], atol=1e-10)
    np.testing.assert_array_equal(got["at_risk"], ref.event_table["at_risk"])
    np.testing.assert_array_equal(got["events"], ref.event_table["observed"])
    w = load_waltons()
    ctrl = w[w.group == "control"]
    ref = KaplanMeierFitter().fit(ctrl["T"], ctrl["E"])
    got = survival.kaplan_meier(ctrl["T"], ctrl["E"])
    np.testing.assert_allclose(got["survival"], ref.survival_function_.iloc[:, 0], atol=1e-12)


def test_kaplan_meier_small_hand_case():
    # times 1, 2+, 3, 3, 5+ : S(1) = 4/5, S(3) = 4/5 * (1 - 2/3) = 4/15
    got = survival.kaplan_meier([1, 2, 3, 3, 5], [1, 0, 1, 1, 0])
    assert got["time"] == [0, 1, 2, 3, 5]
    np.testing.assert_allclose(got["survival"], [1, 0.8, 0.8, 4 / 15, 4 / 15])
    assert got["at_risk"] == [5, 5, 4, 3, 1] and got["events"] == [0, 1, 0, 2, 0]
    assert got["censored"] == [0, 0, 1, 0, 1]


def test_numbers_at_risk():
    assert survival.numbers_at_risk([1, 2, 2, 5, 7], [0, 2, 3, 7, 8]) == [5, 4, 2, 1, 0]


def test_cox_hazard_ratio_equals_lifelines():
    # without tied times Breslow and Efron (lifelines) coincide exactly
    rng = np.random.default_rng(4)
    n = 200
    g = rng.integers(0, 2, n)
    t_event = rng.exponential(1 / np.exp(0.7 * g))
    t_cens = rng.exponential(2.0, n)
    time, event = np.minimum(t_event, t_cens), (t_event <= t_cens).astype(int)
    import pandas as pd
    df = pd.DataFrame({"time": time, "event": event, "high": g})
    ref = CoxPHFitter().fit(df, "time", "event").summary.loc["high"]
    got = survival.cox_hazard_ratio(time, event, g)
    assert got["hr"] == pytest.approx(ref["exp(coef)"], rel=1e-5)
    assert got["ci_low"] == pytest.approx(ref["exp(coef) lower 95%"], rel=1e-5)
    assert got["ci_high"] == pytest.approx(ref["exp(coef) upper 95%"], rel=1e-5)
    assert got["p"] == pytest.approx(ref["p"], rel=1e-4)
    # rossi has tied weeks: Breslow differs from Efron only slightly
    r = load_rossi()
    ref = CoxPHFitter().fit(r[["week", "arrest", "fin"]], "week", "arrest").summary.loc["fin"]
    got = survival.cox_hazard_ratio(r["week"], r["arrest"], r["fin"])
    assert got["hr"] == pytest.approx(ref["exp(coef)"], rel=2e-3)
    assert got["p"] == pytest.approx(ref["p"], rel=2e-2)


def test_survival_bad_input():
    with pytest.raises(DataError, match="two groups"):
        survival.logrank_test([1, 2, 3], [1, 0, 1], [0, 0, 0])
    with pytest.raises(DataError, match="no events"):
        survival.cox_hazard_ratio([1, 2, 3, 4], [1, 1, 0, 0], [0, 0, 1, 1])
    with pytest.raises(DataError, match="negative"):
        survival.kaplan_meier([-1, 2], [1, 0])
    with pytest.raises(DataError, match="0/1"):
        survival.kaplan_meier([1, 2], [1, 2])


def test_cox_monotone_likelihood_is_a_clear_error_without_overflow_warnings():
    """All high-risk events before any low-risk one: no finite hazard ratio (lifelines diverges too)."""
    import warnings
    time = [1, 2, 3, 4, 10, 11, 12, 13]
    event = [1, 1, 1, 1, 1, 0, 1, 0]
    group = [1, 1, 1, 1, 0, 0, 0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow RuntimeWarning would fail the test
        with pytest.raises(DataError, match="not finite") as err:
            survival.cox_hazard_ratio(time, event, group)
    assert "log-rank" in err.value.hint
    # one early low-risk event restores a finite maximum: a number, and no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = survival.cox_hazard_ratio([1, 2, 3, 4, 0.5, 11, 12, 13], event, group)
    assert np.isfinite(got["hr"]) and got["hr"] > 1 and np.isfinite(got["ci_high"])
