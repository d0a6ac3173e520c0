"""numpy's nan-reductions without their per-call overhead where the input has no NaN, and the
matrix step GLCM and GLRLM share."""

from __future__ import annotations

import numpy as np


def nanmean(x, axis, keepdims=False):
    """``np.nanmean(x, axis)``, bit for bit: numpy's nanmean sums (NaNs as 0) and divides by the
    count; without NaNs that is this sum divided by the axis length, without the masked copy."""
    x = np.asanyarray(x)
    total = np.sum(x, axis=axis, keepdims=keepdims)
    if np.isnan(total).any():
        return np.nanmean(x, axis=axis, keepdims=keepdims)
    axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    count = 1
    for a in axes:
        count *= x.shape[a]
    return total / count


def median_percentiles(x):
    """nanmedian and nanpercentile(10, 25, 75, 90) of a (1, n) array: numpy's median and percentile
    when there is no NaN (the same values, bit for bit, checked under numpy 1.26 and 2.4; without
    the masked-array path nanmedian takes on small arrays)."""
    if np.isnan(x).any():
        return np.nanmedian(x, 1), np.nanpercentile(x, [10, 25, 75, 90], axis=1)
    return np.median(x, 1), np.percentile(x, [10, 25, 75, 90], axis=1)


def angle_means_batch(per_angle: dict) -> dict:
    """``{name: np.nanmean(v, 1)}`` for many (images, angles) arrays in one reduction: each row of
    the stack is summed as the (1, angles) array alone would be (the same pairwise sum along the
    contiguous last axis), so every mean is nanmean's to the bit; rows with a NaN use nanmean."""
    names = list(per_angle)
    stack = np.concatenate([np.asarray(per_angle[n], dtype=float) for n in names], 0)
    n_img = len(stack) // len(names)
    means = np.sum(stack, axis=1) / stack.shape[1]
    for k in np.flatnonzero(np.isnan(means)):
        means[k] = np.nanmean(stack[k:k + 1], 1)[0]
    return {n: means[k * n_img:(k + 1) * n_img] for k, n in enumerate(names)}


def drop_empty_angles(p, totals):
    """pyradiomics' GLCM/GLRLM step after building a (1, i, j, angles) matrix ``p`` with per-angle
    ``totals`` (1, angles): angles without any entry are deleted when there is more than one angle.
    Returns (p, totals), or None where pyradiomics takes an edge path (no angle left, or an empty
    one left) that the engine leaves to pyradiomics' class."""
    if p.shape[3] > 1:
        empty = np.where(np.sum(totals, 0) == 0)
        if len(empty[0]) > 0:
            p = np.delete(p, empty, 3)
            totals = np.delete(totals, empty, 1)
    if p.shape[3] == 0 or (totals == 0).any():
        return None
    return p, totals
