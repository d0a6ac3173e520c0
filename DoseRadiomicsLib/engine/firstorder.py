"""pyradiomics' first-order features (segment-based), each statistic computed once.

pyradiomics recomputes the mean, the percentiles and the moments in every feature method; here they
are computed once, with the same numpy reductions on the same (1, Np) array so the values match.
"""

from __future__ import annotations

import numpy as np

from ._np import median_percentiles, nanmean


def features(x: np.ndarray, p_counts: np.ndarray, spacing, shift: float) -> dict:
    """``x``: the ROI's grey values (original, not binned), ``p_counts``: counts per present bin."""
    x = x.astype("float").reshape((1, -1))
    p_i = p_counts.reshape((1, -1)).astype("float")
    p_i = p_i / np.sum(p_i, 1, keepdims=True)
    eps = np.spacing(1)

    shifted_sq = np.nansum((x + shift) ** 2, 1)
    median, (p10, p25, p75, p90) = median_percentiles(x)
    mean = nanmean(x, 1, keepdims=True)
    mn, mx = np.nanmin(x, 1), np.nanmax(x, 1)

    # pyradiomics' _moment: nanmean((x - mean) ** k)
    dev = x - mean
    m2 = nanmean(np.power(dev, 2), 1)
    m3 = nanmean(np.power(dev, 3), 1)
    m4 = nanmean(np.power(dev, 4), 1)
    m2[m2 == 0] = 1   # flat region, as pyradiomics (which then leaves m3, m4 as they are)

    robust = x.copy()
    robust[(x - p10[:, None] < 0) | (x - p90[:, None] > 0)] = np.nan
    n_vox = np.sum(~np.isnan(x), 1).astype("float")

    return {
        "Energy": shifted_sq,
        "TotalEnergy": shifted_sq * np.multiply.reduce(spacing),
        "Entropy": -1.0 * np.sum(p_i * np.log2(p_i + eps), 1),
        "Minimum": mn,
        "10Percentile": p10,
        "90Percentile": p90,
        "Maximum": mx,
        "Mean": mean[:, 0],
        "Median": median,
        "InterquartileRange": p75 - p25,
        "Range": mx - mn,
        "MeanAbsoluteDeviation": nanmean(np.absolute(dev), 1),
        "RobustMeanAbsoluteDeviation": nanmean(np.absolute(robust - nanmean(robust, 1, keepdims=True)), 1),
        "RootMeanSquared": np.sqrt(shifted_sq / n_vox),
        "Skewness": m3 / m2 ** 1.5,
        "Kurtosis": m4 / m2 ** 2.0,
        "Variance": np.nanstd(x, 1) ** 2,
        "Uniformity": np.nansum(p_i ** 2, 1),
    }
