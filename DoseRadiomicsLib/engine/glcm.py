"""pyradiomics' GLCM features for one image, all angles at once.

The matrix comes from pyradiomics' own C code (``cMatrices.calculate_glcm``), processed as
pyradiomics' RadiomicsGLCM does (empty grey levels and angles removed, symmetrised, normalised per
angle). Two of pyradiomics' Python loops are replaced by single operations:

- p(x+y) and p(x-y): one ``bincount`` per marginal instead of a masked sum per k; bincount adds
  the weights in input order, row-major over (i, j), as the masked sum does, so the sums are equal;
- MCC's Q: one product instead of a loop over k (see ``_mcc``: equal to the last bit or so).

Returns None where pyradiomics takes an edge path this module does not reproduce (no pair of
neighbours in any direction); the caller then uses pyradiomics' class.
"""

from __future__ import annotations

import numpy as np

from ._np import angle_means, nanmean


def matrix(binned, mask, grey_levels, ng, settings, cmatrices):
    """pyradiomics' normalised symmetric GLCM, shape (1, Ng_present, Ng_present, angles), or None."""
    p, _angles = cmatrices.calculate_glcm(binned, mask, np.array(settings.get("distances", [1])), ng,
                                          settings.get("force2D", False), settings.get("force2Ddimension", 0))
    if len(grey_levels) < ng:
        keep = grey_levels - 1
        p = p[:, keep][:, :, keep]
    p += np.transpose(p, (0, 2, 1, 3)).copy()
    sum_p = np.sum(p, (1, 2))
    if p.shape[3] > 1:
        empty = np.where(np.sum(sum_p, 0) == 0)
        if len(empty[0]) > 0:
            p = np.delete(p, empty, 3)
            sum_p = np.delete(sum_p, empty, 1)
    if p.shape[3] == 0 or (sum_p == 0).any():
        return None
    p /= sum_p[:, None, None, :]
    return p


def features(p, grey_levels, ng) -> dict:
    eps = np.spacing(1)
    levels = grey_levels.astype("float")
    i, j = np.meshgrid(levels, levels, indexing="ij", sparse=True)
    n_angles = p.shape[3]
    k_sum = np.arange(2, (ng * 2) + 1, dtype="float")
    k_diff = np.arange(0, ng, dtype="float")

    px = p.sum(2, keepdims=True)
    py = p.sum(1, keepdims=True)
    i4 = i[None, :, :, None]
    j4 = j[None, :, :, None]
    ux = np.sum(i4 * p, (1, 2), keepdims=True)
    uy = np.sum(j4 * p, (1, 2), keepdims=True)

    # p(x+y)[k], p(x-y)[k]: bins (i + j - 2) and |i - j|, angle-major so each angle's bins are contiguous
    gi = grey_levels.astype(np.intp)
    flat = np.transpose(p[0], (2, 0, 1)).reshape(n_angles, -1)       # (angles, i*j) row-major in (i, j)
    offsets = (np.arange(n_angles) * len(k_sum))[:, None]
    sum_idx = (gi[:, None] + gi[None, :] - 2).ravel()[None, :] + offsets
    px_add_y = np.bincount(sum_idx.ravel(), flat.ravel(), n_angles * len(k_sum)).reshape(n_angles, -1).T[None]
    offsets = (np.arange(n_angles) * len(k_diff))[:, None]
    diff_idx = np.abs(gi[:, None] - gi[None, :]).ravel()[None, :] + offsets
    px_sub_y = np.bincount(diff_idx.ravel(), flat.ravel(), n_angles * len(k_diff)).reshape(n_angles, -1).T[None]

    log_p = np.log2(p + eps)
    hxy = (-1) * np.sum((p * log_p), (1, 2))
    out = {}
    pa = {}      # per-angle values of the features pyradiomics averages with nanmean(., 1)
    pa["Autocorrelation"] = np.sum(p * (i * j)[None, :, :, None], (1, 2))
    out["JointAverage"] = ux.mean((1, 2, 3))
    ij_u = (i + j)[None, :, :, None] - ux - uy
    ij_u2 = ij_u ** 2
    pa["ClusterProminence"] = np.sum(p * (ij_u ** 4), (1, 2))
    pa["ClusterShade"] = np.sum(p * (ij_u ** 3), (1, 2))
    pa["ClusterTendency"] = np.sum(p * ij_u2, (1, 2))
    pa["Contrast"] = np.sum(p * ((np.abs(i - j))[None, :, :, None] ** 2), (1, 2))

    di = i4 - ux
    dj = j4 - uy
    sigx = np.sum(p * (di ** 2), (1, 2), keepdims=True) ** 0.5
    sigy = np.sum(p * (dj ** 2), (1, 2), keepdims=True) ** 0.5
    corm = np.sum(p * di * dj, (1, 2), keepdims=True)
    corr = corm / (sigx * sigy + eps)
    corr[sigx * sigy == 0] = 1
    out["Correlation"] = nanmean(corr, (1, 2, 3))

    kd = k_diff[None, :, None]
    diffavg = np.sum((kd * px_sub_y), 1, keepdims=True)
    pa["DifferenceAverage"] = diffavg[:, 0]
    pa["DifferenceEntropy"] = (-1) * np.sum((px_sub_y * np.log2(px_sub_y + eps)), 1)
    pa["DifferenceVariance"] = np.sum((px_sub_y * ((kd - diffavg) ** 2)), 1)
    pa["JointEnergy"] = np.sum((p ** 2), (1, 2))
    pa["JointEntropy"] = hxy

    hx = (-1) * np.sum((px * np.log2(px + eps)), (1, 2))
    hy = (-1) * np.sum((py * np.log2(py + eps)), (1, 2))
    pxpy = px * py
    log_pxpy = np.log2(pxpy + eps)
    hxy1 = (-1) * np.sum((p * log_pxpy), (1, 2))
    div = np.fmax(hx, hy)
    imc1 = hxy - hxy1
    imc1[div != 0] /= div[div != 0]
    imc1[div == 0] = 0
    pa["Imc1"] = imc1
    hxy2 = (-1) * np.sum((pxpy * log_pxpy), (1, 2))
    with np.errstate(invalid="ignore"):      # pyradiomics: a negative root is NaN, then left out
        imc2 = (1 - np.e ** (-2 * (hxy2 - hxy))) ** 0.5
    imc2[hxy2 == hxy] = 0
    pa["Imc2"] = imc2

    pa["Idm"] = np.sum(px_sub_y / (1 + (kd ** 2)), 1)
    out["MCC"] = _mcc(p, px, py, eps)
    pa["Idmn"] = np.sum(px_sub_y / (1 + ((kd ** 2) / (ng ** 2))), 1)
    pa["Id"] = np.sum(px_sub_y / (1 + kd), 1)
    pa["Idn"] = np.sum(px_sub_y / (1 + (kd / ng)), 1)
    pa["InverseVariance"] = np.sum(px_sub_y[:, 1:, :] / k_diff[None, 1:, None] ** 2, 1)
    pa["MaximumProbability"] = np.amax(p, (1, 2))
    pa["SumAverage"] = np.sum((k_sum[None, :, None] * px_add_y), 1)
    pa["SumEntropy"] = (-1) * np.sum((px_add_y * np.log2(px_add_y + eps)), 1)
    pa["SumSquares"] = np.sum((p * (di ** 2)), (1, 2))
    out.update(angle_means(pa))
    return out


def _mcc(p, px, py, eps):
    """pyradiomics' MCC: sqrt of Q's second-largest eigenvalue, Q[i, j] = sum_k P[i,k] P[j,k] /
    (px[i] py[k] + eps), averaged over angles. Q is one product (einsum, no BLAS, so the result
    does not depend on the thread count) instead of pyradiomics' loop over k: each term is divided
    before it is multiplied, so Q can differ from pyradiomics' in the last bit; eigvals, sorting and
    the real/complex handling are pyradiomics' own."""
    pa = np.ascontiguousarray(p[0].transpose(2, 0, 1))                     # (angle, i, k)
    d = px[0, :, 0, :].T[:, :, None] * py[0, 0].T[:, None, :] + eps       # (angle, i, k)
    q = np.einsum("aik,ajk->aij", pa / d, pa, optimize=False)
    eig = np.linalg.eigvals(q[None])
    eig.sort()
    if eig.shape[2] < 2:
        return 1
    with np.errstate(invalid="ignore"):
        mcc = np.sqrt(eig[:, :, -2])
    return nanmean(mcc, 1).real
