"""ROC curves, AUC with DeLong confidence intervals, paired DeLong test, Youden cut-off.

Conventions used throughout: ``y`` is the outcome coded 1 = event (e.g. radiochemotherapy
resistant) and 0 = no event; a higher ``score`` means a higher predicted risk; a patient is
called positive when ``score >= cutoff``.

References: DeLong ER, DeLong DM, Clarke-Pearson DL. Biometrics 1988;44:837-845 (variance of the
empirical AUC from placement values); Sun X, Xu W. IEEE Signal Process Lett 2014;21:1389-1393
(computing the placement values from mid-ranks, O(n log n)).
"""

from __future__ import annotations

import numpy as np
from scipy import stats as _st

from ._checks import as_binary, as_vector, same_length

__all__ = ["roc_curve", "auc", "delong_auc_ci", "delong_test", "youden_cutoff", "classification_at"]


def _inputs(y, score, name="score"):
    y = as_binary(y)
    score = as_vector(score, name)
    same_length(outcome=y, **{name: score})
    return y, score


def roc_curve(y, score):
    """Empirical ROC curve.

    Returns ``(fpr, tpr, thresholds)`` as numpy arrays. ``thresholds`` holds +inf followed by the
    distinct scores in descending order; point ``k`` is the false and true positive rate of the
    rule ``score >= thresholds[k]`` (so the curve starts at (0, 0) and ends at (1, 1)).
    """
    y, score = _inputs(y, score)
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], y[order]
    # last index of each run of equal scores: all tied patients switch to positive together
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tps = np.cumsum(t)[last]
    fps = (last + 1) - tps
    tpr = np.r_[0.0, tps / t.sum()]
    fpr = np.r_[0.0, fps / (t.size - t.sum())]
    thresholds = np.r_[np.inf, s[last]]
    return fpr, tpr, thresholds


def _placements(y: np.ndarray, score: np.ndarray):
    """DeLong's structural components via mid-ranks (Sun & Xu 2014).

    V10[i] = P(score of a random negative < score of positive i) + 1/2 P(tie), and
    V01[j] = P(score of a random positive > score of negative j) + 1/2 P(tie).
    """
    pos, neg = score[y == 1], score[y == 0]
    m, n = pos.size, neg.size
    r_all = _st.rankdata(np.r_[pos, neg])
    r_pos = _st.rankdata(pos)
    r_neg = _st.rankdata(neg)
    v10 = (r_all[:m] - r_pos) / n
    v01 = 1.0 - (r_all[m:] - r_neg) / m
    return v10, v01


def auc(y, score) -> float:
    """Area under the empirical ROC curve (Mann-Whitney statistic; tied scores count 1/2)."""
    y, score = _inputs(y, score)
    v10, _ = _placements(y, score)
    return float(v10.mean())


def delong_auc_ci(y, score, alpha: float = 0.05) -> dict:
    """AUC with DeLong's standard error and a normal (Wald) confidence interval.

    Returns ``dict(auc, se, ci_low, ci_high)``; the interval is ``auc -/+ z(1-alpha/2) * se``
    clipped to [0, 1]. This is what pROC's ``ci.auc(method="delong")`` and Stata's ``roctab``
    report.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must be between 0 and 1")
    y, score = _inputs(y, score)
    v10, v01 = _placements(y, score)
    a = float(v10.mean())
    var = _var(v10) / v10.size + _var(v01) / v01.size
    se = float(np.sqrt(var))
    z = _st.norm.ppf(1 - alpha / 2)
    return {"auc": a, "se": se,
            "ci_low": float(max(0.0, a - z * se)), "ci_high": float(min(1.0, a + z * se))}


def _var(v: np.ndarray) -> float:
    # one patient in a class gives no spread estimate; DeLong's S then contributes 0
    return float(np.var(v, ddof=1)) if v.size > 1 else 0.0


def delong_test(y, score_a, score_b) -> dict:
    """Two-sided DeLong test that two scores measured on the same patients have equal AUC.

    Returns ``dict(auc_a, auc_b, diff, se, z, p)`` with ``diff = auc_a - auc_b``. The variance of
    the difference uses the covariance of the two scores' placement values, which is why the
    test is paired. Two identical scores give ``z = 0, p = 1``.
    """
    y = as_binary(y)
    a = as_vector(score_a, "score_a")
    b = as_vector(score_b, "score_b")
    same_length(outcome=y, score_a=a, score_b=b)
    v10a, v01a = _placements(y, a)
    v10b, v01b = _placements(y, b)
    m, n = v10a.size, v01a.size
    s10 = np.cov(np.vstack([v10a, v10b]), ddof=1) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(np.vstack([v01a, v01b]), ddof=1) if n > 1 else np.zeros((2, 2))
    cov = s10 / m + s01 / n
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    auc_a, auc_b = float(v10a.mean()), float(v10b.mean())
    diff = auc_a - auc_b
    se = float(np.sqrt(max(var, 0.0)))
    if se <= 1e-15 * max(1.0, abs(diff)):
        # no variability of the difference: equal AUCs are certain, unequal ones are "infinitely" significant
        z = 0.0 if abs(diff) < 1e-15 else float(np.sign(diff) * np.inf)
    else:
        z = diff / se
    p = float(2 * _st.norm.sf(abs(z)))
    return {"auc_a": auc_a, "auc_b": auc_b, "diff": diff, "se": se, "z": float(z), "p": p}


def youden_cutoff(y, score) -> float:
    """The score cut-off maximising Youden's J = sensitivity + specificity - 1.

    The rule is ``score >= cutoff`` -> positive (high risk). The best split is found among the
    observed scores; the cut-off returned lies midway between the lowest score called positive and
    the next lower distinct score, as R's pROC places its thresholds, so sensitivity and
    specificity are those of the observed score, and a patient whose probability is recomputed a
    few ulps away (e.g. in scalar arithmetic at prediction time) keeps its group. When every
    patient is called positive there is no lower score: the lowest score minus half the gap above
    it is returned (the score itself when all scores are equal). Tie-break (documented,
    deterministic): when several cut-offs reach the same maximal J (within 1e-12), the HIGHEST of
    them is returned, i.e. the one calling the fewest patients positive (the most specific).
    """
    fpr, tpr, thr = roc_curve(y, score)
    j = (tpr - fpr)[1:]  # drop the +inf point (nobody positive, J = 0)
    thr = thr[1:]
    best = j.max()
    # thresholds are descending distinct scores, so the first maximal point is the highest cut-off
    k = int(np.nonzero(j >= best - 1e-12)[0][0])
    if k + 1 < thr.size:
        return float(thr[k] + (thr[k + 1] - thr[k]) / 2)
    if k > 0:
        return float(thr[k] - (thr[k - 1] - thr[k]) / 2)
    return float(thr[k])


def classification_at(y, score, cutoff: float) -> dict:
    """Confusion table and rates of the rule ``score >= cutoff`` -> positive.

    Returns ``dict(accuracy, sensitivity, specificity, ppv, npv, tp, fp, tn, fn)``; a rate
    whose denominator is zero (e.g. PPV when nobody is called positive) is NaN.
    """
    y, score = _inputs(y, score)
    cutoff = float(cutoff)
    if np.isnan(cutoff):
        raise ValueError("cutoff must be a number")
    called = score >= cutoff
    tp = int(np.sum(called & (y == 1)))
    fp = int(np.sum(called & (y == 0)))
    tn = int(np.sum(~called & (y == 0)))
    fn = int(np.sum(~called & (y == 1)))

    def ratio(a, b):
        return float(a / b) if b else float("nan")

    return {"accuracy": ratio(tp + tn, y.size), "sensitivity": ratio(tp, tp + fn),
            "specificity": ratio(tn, tn + fp), "ppv": ratio(tp, tp + fp), "npv": ratio(tn, tn + fn),
            "tp": tp, "fp": fp, "tn": tn, "fn": fn}
