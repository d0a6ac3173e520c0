"""ICC(3,1) and ICC(2,1) against Shrout & Fleiss (1979) and against pingouin."""

import numpy as np
import pytest

from DoseRadiomicsLib.errors import DataError
from DoseRadiomicsLib.stats.icc import icc, mean_squares

# Shrout PE, Fleiss JL. Psychol Bull 1979;86:420-428, Table 2: 6 targets rated by 4 judges.
SF_TABLE2 = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8],
                      [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)


def test_mean_squares_are_shrout_and_fleiss_table_3():
    # their Table 3 (analysis of variance): BMS 11.24, JMS 32.49, EMS 1.02
    ms = mean_squares(SF_TABLE2)
    assert ms["msr"][0] == pytest.approx(11.24, abs=0.005)
    assert ms["msc"][0] == pytest.approx(32.49, abs=0.005)
    assert ms["mse"][0] == pytest.approx(1.02, abs=0.005)


def test_icc_values_are_shrout_and_fleiss_published_ones():
    # their Table 4: ICC(2,1) = .29, ICC(3,1) = .71
    assert icc(SF_TABLE2, "3,1")["icc"][0] == pytest.approx(0.71, abs=0.005)
    assert icc(SF_TABLE2, "2,1")["icc"][0] == pytest.approx(0.29, abs=0.005)


def test_vectorised_equals_one_feature_at_a_time_and_pingouin():
    pg = pytest.importorskip("pingouin")
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(14)
    n, k, F = 12, 5, 6
    truth = rng.normal(0, 1, (n, 1, F)) * rng.uniform(0.2, 3, F)
    Y = truth + rng.normal(0, 1, (n, k, F)) + rng.normal(0, 0.5, (1, k, F))
    Y[..., 0] = Y[..., 0] * 1e6 + 3e9      # scale and offset do not matter
    Y[..., 1] = Y[..., 1] * 1e-7
    both = {form: icc(Y, form) for form in ("3,1", "2,1")}
    for f in range(F):
        long = pd.DataFrame([(i, j, Y[i, j, f]) for i in range(n) for j in range(k)], columns=["t", "r", "v"])
        ref = pg.intraclass_corr(long, targets="t", raters="r", ratings="v").set_index("Type")
        for form, name in (("3,1", "ICC(C,1)"), ("2,1", "ICC(A,1)")):
            one = icc(Y[..., f], form)
            assert one["icc"][0] == pytest.approx(both[form]["icc"][f], rel=1e-9)
            assert both[form]["icc"][f] == pytest.approx(ref.loc[name, "ICC"], abs=1e-9)
            # pingouin rounds its interval to 2 decimals
            assert both[form]["ci_low"][f] == pytest.approx(ref.loc[name, "CI95"][0], abs=0.006)
            assert both[form]["ci_high"][f] == pytest.approx(ref.loc[name, "CI95"][1], abs=0.006)


def test_shrout_fleiss_intervals_against_pingouin():
    pg = pytest.importorskip("pingouin")
    pd = pytest.importorskip("pandas")
    long = pd.DataFrame([(i, j, SF_TABLE2[i, j]) for i in range(6) for j in range(4)], columns=["t", "r", "v"])
    ref = pg.intraclass_corr(long, targets="t", raters="r", ratings="v").set_index("Type")
    r3 = icc(SF_TABLE2, "3,1")
    assert (r3["ci_low"][0], r3["ci_high"][0]) == pytest.approx(tuple(ref.loc["ICC(C,1)", "CI95"]), abs=0.006)
    r2 = icc(SF_TABLE2, "2,1")
    assert (r2["ci_low"][0], r2["ci_high"][0]) == pytest.approx(tuple(ref.loc["ICC(A,1)", "CI95"]), abs=0.006)


def test_degenerate_features():
    Y = np.zeros((4, 3, 4))
    Y[..., 1] = np.arange(4)[:, None]            # differs between patients only: perfect
    Y[..., 2] = np.arange(4)[:, None] + np.array([0.0, 1.0, -1.0])[None, :] * 1e-3
    Y[..., 3] = np.arange(4)[:, None]
    Y[0, 0, 3] = np.nan                          # a failed value
    r = icc(Y)
    assert np.isnan(r["icc"][0]) and np.isnan(r["ci_low"][0])     # constant everywhere: undefined
    assert r["icc"][1] == 1.0 and r["ci_low"][1] == 1.0
    assert r["icc"][2] == 1.0                        # a shift common to every patient is consistent ...
    assert np.isnan(r["icc"][3])
    assert 0.99 < icc(Y, "2,1")["icc"][2] < 1.0      # ... but not in absolute agreement


def test_too_few_targets_or_raters_is_a_clear_error():
    with pytest.raises(DataError, match="at least 2 targets and 2 raters"):
        icc(np.ones((1, 4)))
    with pytest.raises(DataError, match="unknown ICC form"):
        icc(SF_TABLE2, "1,1")
