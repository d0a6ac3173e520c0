"""pyradiomics' first-order features (segment-based) for a batch of images seen through one mask.

pyradiomics recomputes the mean, the percentiles and the moments in every feature method, one image
at a time; here each is computed once, for all of an ROI's filtered images at once (they share the
mask, so their voxel arrays stack into one (images, Np) array). Every reduction is numpy's along the
contiguous last axis, row by row, as pyradiomics' on its (1, Np) array, so the values are the same.
"""

from __future__ import annotations

import numpy as np

from ._np import median_percentiles, nanmean


def features(x: np.ndarray, counts: list, spacings: list, shift: float) -> list:
    """``x``: (images, Np) grey values (original, not binned); ``counts[b]``: image b's voxel count
    per present bin; ``spacings[b]``: its spacing. One dict of (1,)-arrays per image."""
    x = x.astype("float")
    if np.isnan(x).any() and len(x) > 1:   # NaN-aware paths per image, as pyradiomics
        return [features(x[b:b + 1], counts[b:b + 1], spacings[b:b + 1], shift)[0] for b in range(len(x))]
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
    variance = np.nanstd(x, 1) ** 2
    mad = nanmean(np.absolute(dev), 1)
    rmad = np.nanmean(np.absolute(robust - np.nanmean(robust, 1, keepdims=True)), 1)
    rms = np.sqrt(shifted_sq / n_vox)
    skew = m3 / m2 ** 1.5
    kurt = m4 / m2 ** 2.0
    out = []
    for b, c in enumerate(counts):
        p_i = c.reshape((1, -1)).astype("float")
        p_i = p_i / np.sum(p_i, 1, keepdims=True)
        s = slice(b, b + 1)
        out.append({
            "Energy": shifted_sq[s],
            "TotalEnergy": shifted_sq[s] * np.multiply.reduce(spacings[b]),
            "Entropy": -1.0 * np.sum(p_i * np.log2(p_i + eps), 1),
            "Minimum": mn[s], "10Percentile": p10[s], "90Percentile": p90[s], "Maximum": mx[s],
            "Mean": mean[s, 0], "Median": median[s], "InterquartileRange": p75[s] - p25[s],
            "Range": mx[s] - mn[s], "MeanAbsoluteDeviation": mad[s], "RobustMeanAbsoluteDeviation": rmad[s],
            "RootMeanSquared": rms[s], "Skewness": skew[s], "Kurtosis": kurt[s], "Variance": variance[s],
            "Uniformity": np.nansum(p_i ** 2, 1),
        })
    return out
