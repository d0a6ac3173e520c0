"""Calibration of predicted probabilities: Brier score, Hosmer-Lemeshow test, calibration curve,
calibration intercept and slope.

``y`` is the outcome coded 0/1, ``p`` the model's predicted probability of outcome 1.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats as _st

from ..errors import DataError
from ._checks import as_binary, as_probability, same_length

__all__ = ["brier_score", "hosmer_lemeshow", "calibration_curve", "calibration_slope"]


def _inputs(y, p):
    y = as_binary(y)
    p = as_probability(p)
    same_length(outcome=y, probability=p)
    return y, p


def brier_score(y, p) -> float:
    """Mean squared difference between predicted probability and outcome (0 = perfect)."""
    y, p = _inputs(y, p)
    return float(np.mean((p - y) ** 2))


def _risk_groups(p: np.ndarray, groups: int) -> np.ndarray:
    """Group index 0..groups-1 of each patient by quantiles ("deciles") of predicted risk.

    Cut points are the quantiles of ``p`` at k/groups (numpy's default linear interpolation);
    intervals are closed on the right and the lowest one includes its minimum, as R's
    ``cut(p, quantile(p, 0:g/g), include.lowest = TRUE)`` used by ResourceSelection::hoslem.test.
    Tied probabilities therefore always fall into the same group.
    """
    breaks = np.quantile(p, np.linspace(0, 1, groups + 1))
    # searchsorted(side="left") on the inner breaks gives right-closed intervals
    return np.searchsorted(breaks[1:-1], p, side="left")


def hosmer_lemeshow(y, p, groups: int = 10) -> dict:
    """Hosmer-Lemeshow goodness-of-fit test over groups of predicted risk.

    Patients are grouped by quantiles of ``p`` (deciles by default, see ``_risk_groups``); for
    each group the observed and expected numbers of events and non-events are compared:
    ``chi2 = sum (O1 - E1)^2 / E1 + (O0 - E0)^2 / E0`` with ``E1 = sum(p)``, ``E0 = n - E1``.
    ``df = groups - 2``. If ties in ``p`` leave some groups empty, the empty groups are dropped
    and ``df`` is the number of non-empty groups minus 2 (``groups_used`` says how many).

    Returns ``dict(chi2, df, p, groups_used, table)`` where ``table`` is a DataFrame with one
    row per group: group, n, p_min, p_max, mean_predicted, observed (events), expected (events),
    observed_non_events, expected_non_events. A small p means poor calibration.
    """
    if int(groups) != groups or groups < 3:
        raise ValueError("groups must be an integer of at least 3")
    y, p = _inputs(y, p)
    g = _risk_groups(p, int(groups))
    rows = []
    chi2 = 0.0
    for k in range(int(groups)):
        sel = g == k
        n = int(sel.sum())
        if n == 0:
            continue
        o1 = float(y[sel].sum())
        e1 = float(p[sel].sum())
        o0, e0 = n - o1, n - e1
        for o, e in ((o1, e1), (o0, e0)):
            if e > 0:
                chi2 += (o - e) ** 2 / e
            elif o > 0:  # expected nothing, observed something: the fit is infinitely bad
                chi2 = float("inf")
        rows.append({"group": k + 1, "n": n, "p_min": float(p[sel].min()), "p_max": float(p[sel].max()),
                     "mean_predicted": e1 / n, "observed": o1, "expected": e1,
                     "observed_non_events": o0, "expected_non_events": e0})
    used = len(rows)
    df = used - 2
    if df < 1:
        raise DataError(f"the Hosmer-Lemeshow test needs at least 3 groups of distinct predicted risk, "
                        f"got {used}", hint="the model predicts too few distinct probabilities; use fewer "
                        "groups or report the calibration curve instead")
    return {"chi2": float(chi2), "df": int(df), "p": float(_st.chi2.sf(chi2, df)), "groups_used": used,
            "table": pd.DataFrame(rows)}


def calibration_curve(y, p, bins: int = 10, strategy: str = "quantile") -> dict:
    """Observed event rate against mean predicted probability per bin (a reliability diagram).

    ``strategy="quantile"`` makes bins of (nearly) equal numbers of patients, using the same
    risk groups as :func:`hosmer_lemeshow`; ``"uniform"`` cuts [0, 1] into equal widths (right-
    closed, the first including 0). Empty bins are left out. Returns lists
    ``dict(mean_predicted, observed, n)``, one entry per non-empty bin in increasing risk.
    """
    if int(bins) != bins or bins < 1:
        raise ValueError("bins must be a positive integer")
    y, p = _inputs(y, p)
    if strategy == "quantile":
        g = _risk_groups(p, int(bins))
    elif strategy == "uniform":
        g = np.searchsorted(np.linspace(0, 1, int(bins) + 1)[1:-1], p, side="left")
    else:
        raise ValueError('strategy must be "quantile" or "uniform"')
    out = {"mean_predicted": [], "observed": [], "n": []}
    for k in range(int(bins)):
        sel = g == k
        if sel.any():
            out["mean_predicted"].append(float(p[sel].mean()))
            out["observed"].append(float(y[sel].mean()))
            out["n"].append(int(sel.sum()))
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-12, 1 - 1e-12)  # probabilities of exactly 0 or 1 have no finite logit
    return np.log(q / (1 - q))


def calibration_slope(y, p) -> dict:
    """Calibration intercept and slope by logistic recalibration: ``logit P(y=1) = a + b logit(p)``.

    Returns ``dict(intercept=a, slope=b, intercept_in_the_large)``. A perfectly calibrated model
    has a = 0 and b = 1; b < 1 means predictions are too extreme (overfitting). The extra key
    ``intercept_in_the_large`` is the intercept with the slope fixed at 1 (offset logit(p)),
    the "calibration-in-the-large" of Van Calster et al. 2016.
    """
    import statsmodels.api as sm

    y, p = _inputs(y, p)
    lp = _logit(p)
    if np.ptp(lp) == 0:
        raise DataError("the calibration slope needs at least two distinct predicted probabilities",
                        hint="the model predicts the same risk for every patient")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit()
            offset_fit = sm.GLM(y, np.ones_like(lp), family=sm.families.Binomial(), offset=lp).fit()
        except Exception as exc:  # statsmodels raises on perfect separation in some versions
            raise DataError(f"logistic recalibration failed ({exc})",
                            hint="the predictions separate the classes perfectly; the slope is infinite") from None
    a, b = (float(v) for v in fit.params)
    if not (np.isfinite(a) and np.isfinite(b)) or abs(b) > 1e3:
        raise DataError("logistic recalibration did not converge",
                        hint="the predictions separate the classes perfectly; the slope is infinite")
    return {"intercept": a, "slope": b, "intercept_in_the_large": float(offset_fit.params[0])}
