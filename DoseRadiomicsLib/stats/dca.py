"""Decision curve analysis (Vickers & Elkin, Med Decis Making 2006;26:565-574).

At a threshold probability ``pt`` a patient is treated (called high risk) when ``p >= pt``;
the net benefit is ``TP/n - FP/n * pt / (1 - pt)``.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_binary, as_probability, same_length

__all__ = ["net_benefit", "decision_curve"]


def _check_thresholds(thresholds) -> np.ndarray:
    t = np.atleast_1d(np.asarray(thresholds, dtype=float))
    if t.ndim != 1 or t.size == 0 or not np.all((t > 0) & (t < 1)):
        raise ValueError("threshold probabilities must lie strictly between 0 and 1")
    return t


def _net_benefits(y: np.ndarray, p: np.ndarray, t: np.ndarray) -> np.ndarray:
    n = y.size
    treated = p[None, :] >= t[:, None]
    tp = (treated & (y[None, :] == 1)).sum(axis=1)
    fp = (treated & (y[None, :] == 0)).sum(axis=1)
    return tp / n - fp / n * t / (1 - t)


def net_benefit(y, p, threshold: float) -> float:
    """Net benefit of treating patients with ``p >= threshold``: TP/n - FP/n * pt/(1-pt)."""
    y = as_binary(y)
    p = as_probability(p)
    same_length(outcome=y, probability=p)
    return float(_net_benefits(y, p, _check_thresholds(threshold))[0])


def decision_curve(y, p, thresholds=None) -> dict:
    """Net benefit of the model, of treating everyone and of treating no one, per threshold.

    Default thresholds are 0.01, 0.02, ..., 0.99. Returns lists
    ``dict(thresholds, model, treat_all, treat_none)``; ``treat_all`` is
    ``prevalence - (1 - prevalence) * pt / (1 - pt)`` and ``treat_none`` is 0.
    """
    y = as_binary(y)
    p = as_probability(p)
    same_length(outcome=y, probability=p)
    t = np.round(np.arange(1, 100) / 100, 2) if thresholds is None else _check_thresholds(thresholds)
    prevalence = y.mean()
    return {"thresholds": t.tolist(),
            "model": _net_benefits(y, p, t).tolist(),
            "treat_all": (prevalence - (1 - prevalence) * t / (1 - t)).tolist(),
            "treat_none": [0.0] * t.size}
