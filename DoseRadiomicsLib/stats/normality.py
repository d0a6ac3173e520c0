"""Shapiro-Wilk normality test of many columns at once (Royston's algorithm, as scipy.stats.shapiro).

The univariate filter tests every feature (1,595 per ROI) for normality in each outcome class;
``scipy.stats.shapiro`` takes one sample per call. Every column of a class has the same number
of patients, so the Shapiro-Wilk coefficients are computed once and W and its p-value for all
columns by array arithmetic. The algorithm is Royston's (1992 approximation of the
coefficients and of W's null distribution; 1995 Applied Statistics algorithm AS R94, the one
scipy implements, including AS 111 for the normal quantiles in the coefficients), so the
p-values agree with scipy's to about 1e-9; :func:`normal_columns` re-tests with scipy the
columns whose p lies within 1e-6 of the level, so its decisions are scipy's exactly.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
from scipy import special as _sp
from scipy import stats as _st

__all__ = ["shapiro_wilk_columns", "normal_columns"]

# Royston (1992/1995) polynomial coefficients, lowest order first
_C1 = (0.0, 0.221157, -0.147981, -2.071190, 4.434685, -2.706056)  # a_n in 1/sqrt(n)
_C2 = (0.0, 0.042981, -0.293762, -1.752461, 5.682633, -3.582633)  # a_(n-1) in 1/sqrt(n)
_C3 = (0.5440, -0.39978, 0.025054, -6.714e-4)  # mean of -log(gamma - log(1 - W)), n <= 11, in n
_C4 = (1.3822, -0.77857, 0.062767, -0.0020322)  # log SD of the same, in n
_C5 = (-1.5861, -0.31082, -0.083751, 0.0038915)  # mean of log(1 - W), n >= 12, in log n
_C6 = (-0.4803, -0.082676, 0.0030302)  # log SD of the same, in log n
_G = (-2.273, 0.459)  # gamma, n <= 11, in n
#: the p-value reported when W is beyond the range of the small-sample approximation
_SMALL_P = 1e-19
#: p-values this close to the level are recomputed with scipy (the approximations differ by ~1e-9)
_RECHECK = 1e-6


def _poly(coefs, x):
    out = 0.0 * x
    for c in reversed(coefs):
        out = out * x + c
    return out


def _as111_quantile(p: float) -> float:
    """Normal quantile by algorithm AS 111 (Beasley & Springer 1977), as used in AS R94."""
    q = p - 0.5
    if abs(q) <= 0.42:
        r = q * q
        return q * (((-25.44106049637 * r + 41.39119773534) * r - 18.61500062529) * r + 2.50662823884) / \
            ((((3.13082909833 * r - 21.06224101826) * r + 23.08336743743) * r - 8.47351093090) * r + 1.0)
    r = min(p, 1 - p)
    r = math.sqrt(-math.log(r))
    value = (((2.32121276858 * r + 4.85014127135) * r - 2.29796479134) * r - 2.78718931138) / \
        ((1.63706781897 * r + 3.54388924762) * r + 1.0)
    return -value if q < 0 else value


@functools.lru_cache(maxsize=64)
def _coefficients(n: int) -> np.ndarray:
    """The n antisymmetric Shapiro-Wilk coefficients (Royston's approximation), ascending order."""
    half = n // 2
    if n == 3:
        a = np.array([math.sqrt(0.5)])
    else:
        m = np.array([_as111_quantile((i + 1 - 0.375) / (n + 0.25)) for i in range(half)])
        summ2 = 2.0 * float(m @ m)
        ssumm2 = math.sqrt(summ2)
        rsn = 1.0 / math.sqrt(n)
        a1 = _poly(_C1, rsn) - m[0] / ssumm2
        a = -m.copy()
        if n > 5:
            a2 = -m[1] / ssumm2 + _poly(_C2, rsn)
            fac = math.sqrt((summ2 - 2 * m[0] ** 2 - 2 * m[1] ** 2) / (1 - 2 * a1 ** 2 - 2 * a2 ** 2))
            a[2:] = -m[2:] / fac
            a[1] = a2
        else:
            fac = math.sqrt((summ2 - 2 * m[0] ** 2) / (1 - 2 * a1 ** 2))
            a[1:] = -m[1:] / fac
        a[0] = a1
    full = np.zeros(n)
    full[:half] = -a  # smallest order statistics get the negative weights
    full[n - half:] = a[::-1]
    return full


def shapiro_wilk_columns(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shapiro-Wilk W and p-value of every row of ``columns`` (k samples x n values, n >= 3).

    Matches ``scipy.stats.shapiro`` applied to each row (to ~1e-9 in p). A row without spread
    gets W = 1 and p = 1 (scipy warns and returns the same).
    """
    x = np.asarray(columns, dtype=float)
    if x.ndim != 2 or x.shape[1] < 3:
        raise ValueError("need a 2-D array of samples with at least 3 values each")
    k, n = x.shape
    # as scipy: sort and shift by the value in the middle position (rounding only)
    xs = np.sort(x, axis=1) - x[:, n // 2][:, None]
    rng = xs[:, -1] - xs[:, 0]
    flat = rng < 1e-19
    xs = xs / np.where(flat, 1.0, rng)[:, None]
    coef = _coefficients(n)
    asa = coef - coef.sum() / n
    ssa = float(asa @ asa)
    xsx = xs - xs.mean(axis=1, keepdims=True)
    ssx = np.einsum("ij,ij->i", xsx, xsx)
    sax = xsx @ asa
    root = np.sqrt(ssa * ssx)
    with np.errstate(divide="ignore", invalid="ignore"):
        w1 = (root - sax) * (root + sax) / (ssa * ssx)  # 1 - W, without cancellation
    w = 1.0 - w1
    p = np.empty(k)
    if n == 3:
        # exact for n = 3 (W >= 0.75 in theory; rounding below it is clamped as scipy does)
        below = w < 0.75
        p = np.where(below, 0.0, 1.0 - 6.0 / np.pi * np.arccos(np.sqrt(np.clip(w, 0.75, 1.0))))
        w = np.where(below, 0.75, w)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log(w1)
            if n <= 11:
                gamma = _poly(_G, float(n))
                beyond = y >= gamma
                y = -np.log(gamma - y)
                mean, sd = _poly(_C3, float(n)), math.exp(_poly(_C4, float(n)))
            else:
                beyond = np.zeros(k, dtype=bool)
                ln = math.log(n)
                mean, sd = _poly(_C5, ln), math.exp(_poly(_C6, ln))
            p = _sp.ndtr(-(y - mean) / sd)  # upper tail
        p = np.where(beyond, _SMALL_P, p)
    w = np.where(flat, 1.0, w)
    p = np.where(flat, 1.0, p)
    return w, p


def normal_columns(columns: np.ndarray, level: float) -> np.ndarray:
    """Boolean per row of ``columns``: Shapiro-Wilk accepts normality (p >= ``level``).

    Rows with fewer than 3 values or without spread are not normal. Decisions are exactly those
    of ``scipy.stats.shapiro`` (p-values within 1e-6 of the level are recomputed with scipy).
    """
    x = np.asarray(columns, dtype=float)
    k, n = x.shape
    if n < 3:
        return np.zeros(k, dtype=bool)
    spread = np.ptp(x, axis=1) > 0
    _, p = shapiro_wilk_columns(x)
    out = spread & (p >= level)
    close = np.flatnonzero(spread & (np.abs(p - level) <= _RECHECK))
    if close.size:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns for n > 5000 that p may be inaccurate
            for i in close:
                out[i] = bool(_st.shapiro(x[i]).pvalue >= level)
    return out
