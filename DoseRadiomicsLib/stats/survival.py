"""Kaplan-Meier estimates, numbers at risk, log-rank test and Cox hazard ratio.

``time`` is follow-up time (any unit, >= 0), ``event`` is 1 when the event (progression or
death) was observed at ``time`` and 0 when the patient was censored then.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats as _st

from ..errors import DataError
from ._checks import as_vector, same_length

__all__ = ["kaplan_meier", "numbers_at_risk", "logrank_test", "cox_hazard_ratio"]


def _time_event(time, event):
    t = as_vector(time, "follow-up time")
    e = as_vector(event, "event indicator")
    same_length(time=t, event=e)
    if (t < 0).any():
        raise DataError(f"follow-up time has negative values (minimum {t.min():g})",
                        hint="times must be measured from the start of treatment or diagnosis")
    if not set(np.unique(e).tolist()) <= {0.0, 1.0}:
        raise DataError("the event indicator must be 1 (event observed) or 0 (censored)",
                        hint="recode the event column as 0/1")
    return t, e.astype(int)


def kaplan_meier(time, event, alpha: float = 0.05) -> dict:
    """Kaplan-Meier survival with Greenwood variance and log-log ("exponential Greenwood") CI.

    The step points are time 0 and every distinct follow-up time (events and censorings), as in
    lifelines' ``KaplanMeierFitter``. At each point: ``survival`` is S(t) just after t,
    ``at_risk`` the number with follow-up >= t, ``events`` / ``censored`` the numbers ending at t.
    The CI is ``S^exp(+/- z * se)`` with ``se = sqrt(sum d/(n(n-d))) / |log S|`` (Kalbfleisch &
    Prentice); it is [1, 1] while S = 1 and [0, 0] once S = 0. Returns lists
    ``dict(time, survival, ci_low, ci_high, at_risk, events, censored)``.
    """
    t, e = _time_event(time, event)
    z = _st.norm.ppf(1 - alpha / 2)
    times = np.unique(np.r_[0.0, t])
    at_risk = _at_risk(t, times)
    slot = np.searchsorted(times, t)  # every follow-up time is one of the step points
    events = np.bincount(slot, weights=e, minlength=times.size).astype(int)
    ended = np.bincount(slot, minlength=times.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where(at_risk > 0, 1 - events / np.maximum(at_risk, 1), 1.0)
        surv = np.cumprod(step)
        # Greenwood term; infinite once everybody at risk has the event (S = 0)
        term = np.where(events > 0, events / (at_risk * (at_risk - events)), 0.0)
        gw = np.cumsum(term)
        log_s = np.log(surv)
        se_loglog = np.sqrt(gw) / np.abs(log_s)
        low = surv ** np.exp(z * se_loglog)
        high = surv ** np.exp(-z * se_loglog)
    one = surv >= 1.0
    zero = surv <= 0.0
    low = np.where(one, 1.0, np.where(zero, 0.0, low))
    high = np.where(one, 1.0, np.where(zero, 0.0, high))
    return {"time": times.tolist(), "survival": surv.tolist(), "ci_low": low.tolist(),
            "ci_high": high.tolist(), "at_risk": at_risk.astype(int).tolist(),
            "events": events.astype(int).tolist(), "censored": (ended - events).astype(int).tolist()}


def _at_risk(t: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Number of follow-up times >= each value of ``at``."""
    return t.size - np.searchsorted(np.sort(t), at, side="left")


def numbers_at_risk(time, at_times) -> list[int]:
    """Number of patients still followed (follow-up >= t) at each of ``at_times`` (the KM risk table)."""
    t = as_vector(time, "follow-up time")
    at = np.atleast_1d(np.asarray(at_times, dtype=float))
    return [int(v) for v in _at_risk(t, at)]


def _groups(group, n: int):
    g = np.asarray(group)
    if g.ndim != 1 or g.size != n:
        raise DataError(f"group has {g.size} values for {n} patients",
                        hint="pass one group label per patient, in the same order as the times")
    if g.dtype.kind in "fc" and not np.all(np.isfinite(g.astype(float))):
        raise DataError("group has missing values", hint="remove patients without a group")
    if g.dtype == object and any(v is None or (isinstance(v, float) and np.isnan(v)) for v in g):
        raise DataError("group has missing values", hint="remove patients without a group")
    levels, codes = np.unique(g, return_inverse=True)
    return levels, codes


def logrank_test(time, event, group) -> dict:
    """Log-rank test of equal survival in k >= 2 groups (chi-square with k - 1 df).

    At every distinct event time the observed events of each group are compared with the
    number expected under equal hazards (hypergeometric mean and covariance); the statistic is
    ``(O - E)' V^- (O - E)`` over the first k - 1 groups. Returns ``dict(chi2, df, p, groups,
    observed, expected)`` (the last three are lists in sorted group order).
    """
    t, e = _time_event(time, event)
    levels, codes = _groups(group, t.size)
    k = levels.size
    if k < 2:
        raise DataError("the log-rank test needs at least two groups, all patients are in one",
                        hint="check the risk cut-off: it put every patient in the same group")
    if e.sum() == 0:
        raise DataError("no events were observed, so survival cannot be compared",
                        hint="check the event column (1 = progression/death observed)")
    event_times = np.unique(t[e == 1])
    # per event time (rows) and group (columns): numbers at risk and events
    n_j = np.column_stack([_at_risk(t[codes == j], event_times) for j in range(k)]).astype(float)
    slot = np.searchsorted(event_times, t[e == 1])
    d_j = np.zeros_like(n_j)
    np.add.at(d_j, (slot, codes[e == 1]), 1.0)
    n, d = n_j.sum(axis=1), d_j.sum(axis=1)
    frac = n_j / n[:, None]
    O = d_j.sum(axis=0)
    E = (d[:, None] * frac).sum(axis=0)
    # hypergeometric covariance; a time with one patient at risk contributes nothing
    w = np.where(n > 1, d * (n - d) / np.maximum(n - 1, 1), 0.0)
    V = np.diag((w[:, None] * frac).sum(axis=0)) - (w[:, None, None] * frac[:, :, None] * frac[:, None, :]).sum(axis=0)
    diff = (O - E)[:-1]
    chi2 = float(diff @ np.linalg.pinv(V[:-1, :-1]) @ diff)
    df = k - 1
    return {"chi2": chi2, "df": df, "p": float(_st.chi2.sf(chi2, df)),
            "groups": levels.tolist(), "observed": O.tolist(), "expected": E.tolist()}


def cox_hazard_ratio(time, event, group_binary, alpha: float = 0.05) -> dict:
    """Hazard ratio of group 1 versus group 0 from a Cox proportional-hazards model.

    ``group_binary`` holds two levels; when they are not 0/1 (or False/True) the higher
    sorted level is the comparison group (e.g. "low" < "high" would make "low" the comparison,
    so pass 0/1 to be explicit). Ties are handled by Breslow's method (statsmodels PHReg); the
    CI and p are Wald. Returns ``dict(hr, ci_low, ci_high, p, coef, se)``.
    When no finite hazard ratio exists, DataError: a group without events, or a monotone partial
    likelihood (e.g. every event of one group comes before anybody of the other group is at risk
    of one; the fit would drift to an ever larger coefficient with an enormous standard error).
    """
    import statsmodels.api as sm

    t, e = _time_event(time, event)
    levels, codes = _groups(group_binary, t.size)
    if levels.size != 2:
        raise DataError(f"the hazard ratio needs exactly two groups, got {levels.size}",
                        hint="pass a 0/1 risk group (1 = high risk)")
    for lev in (0, 1):
        if e[codes == lev].sum() == 0:
            raise DataError(f"group {levels[lev]!r} has no events, so the hazard ratio is not finite",
                            hint="report the log-rank test and Kaplan-Meier curves instead")
    x = codes.astype(float)[:, None]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        model = sm.PHReg(t, x, status=e, ties="breslow")
        fit = model.fit()
        coef = float(fit.params[0])
        se = float(fit.bse[0])
        # a finite maximum falls off on both sides; a monotone likelihood keeps (almost) its value
        # ever further out in the direction the fit drifted
        monotone = not (np.isfinite(coef) and np.isfinite(se)) or \
            model.loglike(np.array([coef + np.copysign(10.0, coef)])) >= model.loglike(np.array([coef])) - 1e-6
    if monotone:
        raise DataError("the hazard ratio is not finite: the partial likelihood has no maximum "
                        "(one group's events all come before the other group's, or similar separation)",
                        hint="report the log-rank test and Kaplan-Meier curves instead")
    z = _st.norm.ppf(1 - alpha / 2)
    with np.errstate(over="ignore"):  # a finite but huge bound is reported as inf, without warning
        return {"hr": float(np.exp(coef)), "ci_low": float(np.exp(coef - z * se)),
                "ci_high": float(np.exp(coef + z * se)), "p": float(2 * _st.norm.sf(abs(coef / se))),
                "coef": coef, "se": se}
