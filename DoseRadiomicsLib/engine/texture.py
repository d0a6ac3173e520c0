"""pyradiomics' GLRLM, GLSZM, GLDM and NGTDM features for one image.

Matrices from pyradiomics' C code (``cMatrices``), processed as pyradiomics' classes do; the
features use the same numpy reductions on the same array shapes, with the shared terms (squared
index vectors, normalised marginals) computed once instead of once per feature. Each function
returns None on an edge path it does not reproduce (an empty matrix); the caller then falls back
to pyradiomics' class.
"""

from __future__ import annotations

import numpy as np

from ._np import angle_means_batch, drop_empty_angles

_EPS = np.spacing(1)


def _drop_empty_levels(p, grey_levels, ng):
    if len(grey_levels) < ng:
        p = p[:, grey_levels - 1]
    return p


def glrlm_matrix(binned, mask, grey_levels, ng, settings, cm):
    """pyradiomics' GLRLM of one image, empty grey levels and angles removed: (P, Nr) or None."""
    p, _angles = cm.calculate_glrlm(binned, mask, ng, np.max(binned.shape),
                                    settings.get("force2D", False), settings.get("force2Ddimension", 0))
    p = _drop_empty_levels(p, grey_levels, ng)
    kept = drop_empty_angles(p, np.sum(p, (1, 2)))
    return None if kept is None else kept[0]


def glrlm(mats: list, level_sets: list) -> list:
    """GLRLM features of a batch of images (one ROI's), matrices zero-padded to one stack. The sums
    run over non-contiguous axes (added one element after another), so the padding's zeros, like
    the empty run lengths pyradiomics deletes, leave every sum as it is. One dict per image."""
    n_img, n_angles = len(mats), mats[0].shape[3]
    big_g = max(m.shape[1] for m in mats)
    big_r = max(m.shape[2] for m in mats)
    p = np.zeros((n_img, big_g, big_r, n_angles))
    iv = np.ones((n_img, big_g))                 # padding levels: 1 (never a divisor of 0)
    for b, (m, gl) in enumerate(zip(mats, level_sets)):
        p[b, :m.shape[1], :m.shape[2]] = m[0]
        iv[b, :m.shape[1]] = gl
    nr = np.sum(p, (1, 2))
    pr = np.sum(p, 1)
    pg = np.sum(p, 2)
    jv = np.arange(1, big_r + 1, dtype=np.float64)

    j2 = jv[None, :, None] ** 2
    i2 = iv[:, :, None] ** 2
    i2_4 = iv[:, :, None, None] ** 2
    j2_4 = jv[None, None, :, None] ** 2
    pg_n = pg / nr[:, None, :]
    pr_n = pr / nr[:, None, :]
    u_i = np.sum(pg_n * iv[:, :, None], 1, keepdims=True)
    u_j = np.sum(pr_n * jv[None, :, None], 1, keepdims=True)
    p_n = p / nr[:, None, None, :]
    sum_pg2 = np.sum((pg ** 2), 1)
    sum_pr2 = np.sum((pr ** 2), 1)
    means = angle_means_batch({
        "ShortRunEmphasis": np.sum((pr / j2), 1) / nr,
        "LongRunEmphasis": np.sum((pr * j2), 1) / nr,
        "GrayLevelNonUniformity": sum_pg2 / nr,
        "GrayLevelNonUniformityNormalized": sum_pg2 / (nr ** 2),
        "RunLengthNonUniformity": sum_pr2 / nr,
        "RunLengthNonUniformityNormalized": sum_pr2 / nr ** 2,
        "RunPercentage": nr / np.sum(pr * jv[None, :, None], 1),
        "GrayLevelVariance": np.sum(pg_n * (iv[:, :, None] - u_i) ** 2, 1),
        "RunVariance": np.sum(pr_n * (jv[None, :, None] - u_j) ** 2, 1),
        "RunEntropy": -np.sum(p_n * np.log2(p_n + _EPS), (1, 2)),
        "LowGrayLevelRunEmphasis": np.sum((pg / i2), 1) / nr,
        "HighGrayLevelRunEmphasis": np.sum((pg * i2), 1) / nr,
        "ShortRunLowGrayLevelEmphasis": np.sum((p / (i2_4 * j2_4)), (1, 2)) / nr,
        "ShortRunHighGrayLevelEmphasis": np.sum((p * i2_4 / j2_4), (1, 2)) / nr,
        "LongRunLowGrayLevelEmphasis": np.sum((p * j2_4 / i2_4), (1, 2)) / nr,
        "LongRunHighGrayLevelEmphasis": np.sum((p * (j2_4 * i2_4)), (1, 2)) / nr,
    })
    return [{k: v[b:b + 1] for k, v in means.items()} for b in range(n_img)]


def _zone_features(p, pz, pg, iv, jv, nz, prefix_small, prefix_large, names):
    """The features GLSZM and GLDM share (zone sizes / dependence counts ``pz`` over ``jv``)."""
    j2 = jv[None, :] ** 2
    i2 = iv[None, :] ** 2
    i2_3 = iv[None, :, None] ** 2
    j2_3 = jv[None, None, :] ** 2
    pg_n = pg / nz[:, None]
    pz_n = pz / nz[:, None]
    u_i = np.sum(pg_n * iv[None, :], 1, keepdims=True)
    u_j = np.sum(pz_n * jv[None, :], 1, keepdims=True)
    p_n = p / nz[:, None, None]
    sum_pg2 = np.sum(pg ** 2, 1)
    sum_pz2 = np.sum(pz ** 2, 1)
    return {
        names[0]: np.sum(pz / j2, 1) / nz,
        names[1]: np.sum(pz * j2, 1) / nz,
        "GrayLevelNonUniformity": sum_pg2 / nz,
        "GrayLevelNonUniformityNormalized": sum_pg2 / nz ** 2,
        names[2]: sum_pz2 / nz,
        names[3]: sum_pz2 / nz ** 2,
        "GrayLevelVariance": np.sum(pg_n * (iv[None, :] - u_i) ** 2, 1),
        names[4]: np.sum(pz_n * (jv[None, :] - u_j) ** 2, 1),
        names[5]: -np.sum(p_n * np.log2(p_n + _EPS), (1, 2)),
        names[6]: np.sum(pg / i2, 1) / nz,
        names[7]: np.sum(pg * i2, 1) / nz,
        prefix_small + "LowGrayLevel" + names[8]: np.sum(p / (i2_3 * j2_3), (1, 2)) / nz,
        prefix_small + "HighGrayLevel" + names[8]: np.sum(p * i2_3 / j2_3, (1, 2)) / nz,
        prefix_large + "LowGrayLevel" + names[8]: np.sum(p * j2_3 / i2_3, (1, 2)) / nz,
        prefix_large + "HighGrayLevel" + names[8]: np.sum(p * i2_3 * j2_3, (1, 2)) / nz,
    }


_GLSZM_NAMES = ("SmallAreaEmphasis", "LargeAreaEmphasis", "SizeZoneNonUniformity",
                "SizeZoneNonUniformityNormalized", "ZoneVariance", "ZoneEntropy",
                "LowGrayLevelZoneEmphasis", "HighGrayLevelZoneEmphasis", "Emphasis")
_GLDM_NAMES = ("SmallDependenceEmphasis", "LargeDependenceEmphasis", "DependenceNonUniformity",
               "DependenceNonUniformityNormalized", "DependenceVariance", "DependenceEntropy",
               "LowGrayLevelEmphasis", "HighGrayLevelEmphasis", "Emphasis")


def glszm(binned, mask, grey_levels, ng, settings, cm):
    p = cm.calculate_glszm(binned, mask, ng, int(np.sum(mask)),
                           settings.get("force2D", False), settings.get("force2Ddimension", 0))
    p = _drop_empty_levels(p, grey_levels, ng)
    ps = np.sum(p, 1)
    pg = np.sum(p, 2)
    iv = grey_levels.astype(float)
    jv = np.arange(1, p.shape[2] + 1, dtype=np.float64)
    nz = np.sum(p, (1, 2))
    np_ = np.sum(ps * jv[None, :], 1)
    if (nz == 0).any() or (np_ == 0).any():
        return None
    empty = np.where(np.sum(ps, 0) == 0)
    p = np.delete(p, empty, 2)
    jv = np.delete(jv, empty)
    ps = np.delete(ps, empty, 1)
    out = _zone_features(p, ps, pg, iv, jv, nz, "SmallArea", "LargeArea", _GLSZM_NAMES)
    out["ZonePercentage"] = nz / np_
    return out


def gldm(binned, mask, grey_levels, ng, settings, cm):
    p = cm.calculate_gldm(binned, mask, np.array(settings.get("distances", [1])), ng,
                          settings.get("gldm_a", 0), settings.get("force2D", False),
                          settings.get("force2Ddimension", 0))
    p = _drop_empty_levels(p, grey_levels, ng)
    jv = np.arange(1, p.shape[2] + 1, dtype="float64")
    pd = np.sum(p, 1)
    pg = np.sum(p, 2)
    empty = np.where(np.sum(pd, 0) == 0)
    p = np.delete(p, empty, 2)
    jv = np.delete(jv, empty)
    pd = np.delete(pd, empty, 1)
    nz = np.sum(pd, 1)
    if (nz == 0).any():
        return None
    out = _zone_features(p, pd, pg, grey_levels.astype(float), jv, nz,
                         "SmallDependence", "LargeDependence", _GLDM_NAMES)
    del out["GrayLevelNonUniformityNormalized"]     # deprecated in pyradiomics' GLDM
    return out


def ngtdm(binned, mask, grey_levels, ng, settings, cm):
    p = cm.calculate_ngtdm(binned, mask, np.array(settings.get("distances", [1])), ng,
                           settings.get("force2D", False), settings.get("force2Ddimension", 0))
    p = np.delete(p, np.where(np.sum(p[:, :, 0], 0) == 0), 1)
    nvp = np.sum(p[:, :, 0], 1)
    if (nvp == 0).any():
        return None
    p_i = p[:, :, 0] / nvp[:, None]
    s_i = p[:, :, 1]
    i = p[:, :, 2]
    ngp = np.sum(p[:, :, 0] > 0, 1)
    p_zero = np.where(p_i == 0)

    sum_coarse = np.sum(p_i * s_i, 1)
    sum_coarse[sum_coarse != 0] = 1 / sum_coarse[sum_coarse != 0]
    sum_coarse[sum_coarse == 0] = 1e6

    sum_s_i = np.sum(s_i, 1)
    diff = i[:, :, None] - i[:, None, :]
    div = ngp * (ngp - 1)
    contrast = (np.sum(p_i[:, :, None] * p_i[:, None, :] * diff ** 2, (1, 2)) * sum_s_i / nvp)
    contrast[div != 0] /= div[div != 0]
    contrast[div == 0] = 0

    i_pi = i * p_i
    absdiff = np.abs(i_pi[:, :, None] - i_pi[:, None, :])
    absdiff[p_zero[0], :, p_zero[1]] = 0
    absdiff[p_zero[0], p_zero[1], :] = 0
    absdiff = np.sum(absdiff, (1, 2))
    busyness = np.sum(p_i * s_i, 1)
    busyness[absdiff != 0] = busyness[absdiff != 0] / absdiff[absdiff != 0]
    busyness[absdiff == 0] = 0

    pi_si = p_i * s_i
    numerator = pi_si[:, :, None] + pi_si[:, None, :]
    numerator[p_zero[0], :, p_zero[1]] = 0
    numerator[p_zero[0], p_zero[1], :] = 0
    p_sum = p_i[:, :, None] + p_i[:, None, :]
    divisor = p_sum.copy()
    divisor[divisor == 0] = 1
    complexity = np.sum(np.abs(diff) * numerator / divisor, (1, 2)) / nvp

    strength = p_sum * diff ** 2
    strength[p_zero[0], :, p_zero[1]] = 0
    strength[p_zero[0], p_zero[1], :] = 0
    strength = np.sum(strength, (1, 2))
    strength[sum_s_i != 0] /= sum_s_i[sum_s_i != 0]
    strength[sum_s_i == 0] = 0
    return {"Coarseness": sum_coarse, "Contrast": contrast, "Busyness": busyness,
            "Complexity": complexity, "Strength": strength}
