"""Calibration (Brier, Hosmer-Lemeshow, curve, slope) and decision curves on hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from DoseRadiomicsLib.errors import DataError
from DoseRadiomicsLib.stats import calibration, dca


def test_brier_score():
    # (0.2-0)^2 + (0.6-1)^2 + (0.9-1)^2 = 0.04 + 0.16 + 0.01 = 0.21, / 3 = 0.07
    assert calibration.brier_score([0, 1, 1], [0.2, 0.6, 0.9]) == pytest.approx(0.07)


def test_hosmer_lemeshow_hand_computation():
    p = [0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 0.9]
    y = [0, 0, 1, 0, 1, 0, 1, 1, 1]
    # 3 risk groups (tertiles): {.1,.1,.2}, {.3,.4,.5}, {.6,.8,.9}
    # group 1: O1=1 E1=0.4 O0=2 E0=2.6 -> .36/.4 + .36/2.6 = 0.9 + 0.138462
    # group 2: O1=1 E1=1.2 O0=2 E0=1.8 -> .04/1.2 + .04/1.8 = 0.033333 + 0.022222
    # group 3: O1=3 E1=2.3 O0=0 E0=0.7 -> .49/2.3 + .49/.7  = 0.213043 + 0.7
    chi2 = 0.36 / 0.4 + 0.36 / 2.6 + 0.04 / 1.2 + 0.04 / 1.8 + 0.49 / 2.3 + 0.49 / 0.7
    assert chi2 == pytest.approx(2.00706, abs=1e-5)
    got = calibration.hosmer_lemeshow(y, p, groups=3)
    assert got["chi2"] == pytest.approx(chi2, rel=1e-12)
    assert got["df"] == 1
    assert got["p"] == pytest.approx(stats.chi2.sf(chi2, 1), rel=1e-12)
    t = got["table"]
    assert t["n"].tolist() == [3, 3, 3]
    assert t["observed"].tolist() == [1, 1, 3]
    np.testing.assert_allclose(t["expected"], [0.4, 1.2, 2.3])


def test_hosmer_lemeshow_deciles_well_and_badly_calibrated():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.95, 2000)
    y = (rng.random(2000) < p).astype(int)
    good = calibration.hosmer_lemeshow(y, p)
    assert good["df"] == 8 and good["table"]["n"].tolist() == [200] * 10
    assert good["p"] > 0.01
    bad = calibration.hosmer_lemeshow(y, np.clip(p + 0.15, 0, 1))
    assert bad["p"] < 1e-6


def test_calibration_curve_uniform_bins_by_hand():
    p = [0.05, 0.15, 0.45, 0.55, 0.95]
    y = [0, 0, 1, 0, 1]
    got = calibration.calibration_curve(y, p, bins=2, strategy="uniform")
    # bin [0, .5]: p .05 .15 .45 -> mean .216667, observed 1/3; bin (.5, 1]: mean .75, observed 1/2
    assert got["n"] == [3, 2]
    np.testing.assert_allclose(got["mean_predicted"], [0.65 / 3, 0.75])
    np.testing.assert_allclose(got["observed"], [1 / 3, 0.5])
    q = calibration.calibration_curve(y, p, bins=5)
    assert q["n"] == [1] * 5 and q["observed"] == [0.0, 0.0, 1.0, 0.0, 1.0]


def test_calibration_slope_recovers_overconfidence():
    rng = np.random.default_rng(2)
    lp_true = rng.normal(0, 1.2, 20000)
    y = (rng.random(lp_true.size) < 1 / (1 + np.exp(-lp_true))).astype(int)
    calibrated = calibration.calibration_slope(y, 1 / (1 + np.exp(-lp_true)))
    assert calibrated["slope"] == pytest.approx(1.0, abs=0.06)
    assert calibrated["intercept"] == pytest.approx(0.0, abs=0.06)
    # a model whose log-odds are twice too extreme has slope 1/2
    over = calibration.calibration_slope(y, 1 / (1 + np.exp(-2 * lp_true)))
    assert over["slope"] == pytest.approx(0.5, abs=0.03)


def test_net_benefit_hand_case():
    y = [1, 1, 0, 0, 1, 0]
    p = [0.9, 0.6, 0.7, 0.2, 0.3, 0.1]
    # pt = .5: treated p >= .5 -> patients 1, 2 (events) and 3 (no event): 2/6 - 1/6 * .5/.5 = 1/6
    assert dca.net_benefit(y, p, 0.5) == pytest.approx(1 / 6)
    # pt = .25: treated 1, 2, 3, 5: TP 3, FP 1 -> 3/6 - 1/6 * (.25/.75) = 1/2 - 1/18 = 4/9
    assert dca.net_benefit(y, p, 0.25) == pytest.approx(4 / 9)
    curve = dca.decision_curve(y, p)
    assert len(curve["thresholds"]) == 99
    assert curve["thresholds"][0] == 0.01 and curve["thresholds"][-1] == 0.99
    i = curve["thresholds"].index(0.25)
    assert curve["model"][i] == pytest.approx(4 / 9)
    # treat all at .25: prevalence .5 - .5 * 1/3 = 1/3
    assert curve["treat_all"][i] == pytest.approx(1 / 3)
    assert set(curve["treat_none"]) == {0.0}
    small = dca.decision_curve(y, p, thresholds=[0.25, 0.5])
    np.testing.assert_allclose(small["model"], [4 / 9, 1 / 6])


def test_calibration_and_dca_reject_bad_input():
    with pytest.raises(DataError, match="between 0 and 1"):
        calibration.brier_score([0, 1], [0.2, 1.3])
    with pytest.raises(DataError, match="different numbers"):
        dca.decision_curve([0, 1, 1], [0.2, 0.5])
    with pytest.raises(ValueError):
        dca.net_benefit([0, 1], [0.2, 0.5], 1.0)
