"""Intraclass correlation coefficients for many features at once (two-way ANOVA, single rater).

``Y`` holds ``n`` targets (patients) x ``k`` raters (conditions: the unperturbed extraction and each
perturbation) x ``F`` features; every feature is one two-way layout without replication, and every
mean square is computed for all features at once with numpy.

- ``ICC(3,1)`` (Shrout & Fleiss 1979; McGraw & Wong 1996 "ICC(C,1)"): two-way mixed, consistency,
  single rater: ``(MSR - MSE) / (MSR + (k-1) MSE)``. The raters are fixed conditions and a shift
  common to all patients (a dose scaled by 1 % raises every dose mean alike) is not penalised.
- ``ICC(2,1)`` (McGraw & Wong "ICC(A,1)"): two-way, absolute agreement, single rater:
  ``(MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n)``: a common shift counts against agreement.

Confidence intervals are the F-based ones of McGraw & Wong 1996 (Table 7; for ICC(A,1) with
Satterthwaite's degrees of freedom), the formulas SPSS, R's ``irr`` and pingouin use.

A feature equal for every patient and condition has no between-patient variance: its ICC is
undefined (NaN). One that differs between patients but not within any (MSE = 0) has ICC 1.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as _st

from ..errors import DataError

__all__ = ["icc", "mean_squares"]


def _as_layout(Y) -> np.ndarray:
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 2:
        Y = Y[:, :, None]
    if Y.ndim != 3:
        raise DataError(f"ICC needs targets x raters (x features) values, got an array of shape {Y.shape}")
    n, k = Y.shape[:2]
    if n < 2 or k < 2:
        raise DataError(f"ICC needs at least 2 targets and 2 raters, got {n} x {k}",
                        hint="sample more patients or give more perturbations")
    return Y


def mean_squares(Y) -> dict:
    """MSR (between targets), MSC (between raters) and MSE (residual) per feature, and n, k."""
    Y = _as_layout(Y)
    n, k = Y.shape[:2]
    # centred per feature first: features of 1e6 and 1e-6 keep their own relative precision
    Y = Y - Y.mean(axis=(0, 1), keepdims=True)
    rows = Y.mean(axis=1, keepdims=True)             # n x 1 x F
    cols = Y.mean(axis=0, keepdims=True)             # 1 x k x F
    resid = Y - rows - cols                          # grand mean is 0 after centring
    msr = k * (rows[:, 0, :] ** 2).sum(axis=0) / (n - 1)
    msc = n * (cols[0] ** 2).sum(axis=0) / (k - 1)
    mse = (resid ** 2).sum(axis=(0, 1)) / ((n - 1) * (k - 1))
    return {"msr": msr, "msc": msc, "mse": mse, "n": n, "k": k}


def icc(Y, form: str = "3,1", alpha: float = 0.05) -> dict:
    """ICC per feature with its ``1 - alpha`` confidence interval.

    ``Y``: array (n targets, k raters[, F features]); ``form``: ``"3,1"`` (consistency) or ``"2,1"``
    (absolute agreement). Returns arrays ``icc``, ``ci_low``, ``ci_high`` (length F), and ``n``, ``k``,
    ``form``. A feature with a non-finite value anywhere gets NaN.
    """
    if form not in ("3,1", "2,1"):
        raise DataError(f"unknown ICC form {form!r}", hint="use '3,1' (consistency) or '2,1' (absolute agreement)")
    Y = _as_layout(Y)
    finite = np.isfinite(Y).all(axis=(0, 1))
    ms = mean_squares(np.where(finite[None, None, :], Y, 0.0))
    msr, msc, mse, n, k = ms["msr"], ms["msc"], ms["mse"], ms["n"], ms["k"]
    q = 1.0 - alpha / 2.0
    df1, df2 = n - 1, (n - 1) * (k - 1)
    # relative round-off: sums of squares below ~1e-12 of the total are zero
    tiny = 1e-12 * (msr + msc + mse)
    mse = np.where(mse <= tiny, 0.0, mse)
    with np.errstate(divide="ignore", invalid="ignore"):
        if form == "3,1":
            value = (msr - mse) / (msr + (k - 1) * mse)
            f_obs = msr / mse
            fl = f_obs / _st.f.ppf(q, df1, df2)
            fu = f_obs * _st.f.ppf(q, df2, df1)
            low = (fl - 1) / (fl + k - 1)
            high = (fu - 1) / (fu + k - 1)
        else:
            value = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
            a = k * value / (n * (1 - value))
            b = 1 + k * value * (n - 1) / (n * (1 - value))
            v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / df2)
            fl = _st.f.ppf(q, df1, v)
            fu = _st.f.ppf(q, v, df1)
            low = n * (msr - fl * mse) / (fl * (k * msc + (k * n - k - n) * mse) + n * msr)
            high = n * (fu * msr - mse) / (k * msc + (k * n - k - n) * mse + n * fu * msr)
    perfect = (mse == 0) & (msr > tiny)     # no within-patient variation (and, for agreement, no shift)
    if form == "2,1":
        perfect &= msc <= tiny
    value = np.where(perfect, 1.0, value)
    low = np.where(perfect, 1.0, low)
    high = np.where(perfect, 1.0, high)
    undefined = ~finite | (msr <= tiny) & (mse == 0)
    nan = np.nan
    return {"icc": np.where(undefined, nan, value), "ci_low": np.where(undefined, nan, low),
            "ci_high": np.where(undefined, nan, high), "n": n, "k": k, "form": form}
