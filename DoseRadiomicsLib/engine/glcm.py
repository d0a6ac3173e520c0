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

from ._np import angle_means_batch, drop_empty_angles


def matrix(binned, mask, grey_levels, ng, settings, cmatrices):
    """pyradiomics' normalised symmetric GLCM, shape (1, Ng_present, Ng_present, angles), or None."""
    p, _angles = cmatrices.calculate_glcm(binned, mask, np.array(settings.get("distances", [1])), ng,
                                          settings.get("force2D", False), settings.get("force2Ddimension", 0))
    if len(grey_levels) < ng:
        keep = grey_levels - 1
        p = p[:, keep][:, :, keep]
    p += np.transpose(p, (0, 2, 1, 3)).copy()
    kept = drop_empty_angles(p, np.sum(p, (1, 2)))
    if kept is None:
        return None
    p, sum_p = kept
    p /= sum_p[:, None, None, :]
    return p


def features(mats: list, level_sets: list, ngs: list) -> list:
    """GLCM features of a batch of images (one ROI's filtered images): ``mats[b]`` from
    :func:`matrix`, ``level_sets[b]`` its present grey levels, ``ngs[b]`` its highest level. The
    matrices are zero-padded to one (images, N, N, angles) stack. With several angles every sum
    over (i, j) runs over non-contiguous axes, which numpy adds one element after another in
    row-major order; a zero adds nothing, so those sums are taken over the matrix's non-zero
    entries only, in the same order (one ``bincount`` per sum, which adds in input order): the
    padding and the empty cells (most of a GLCM with many grey levels) cost nothing, and every sum
    is the one pyradiomics forms. With one angle numpy sums the contiguous j axis pairwise, so the
    dense stack is used as it is. One dict of (1,)-arrays per image."""
    n_img = len(mats)
    n_angles = mats[0].shape[3]
    sizes = [m.shape[1] for m in mats]
    big = max(sizes)
    p = np.zeros((n_img, big, big, n_angles))
    levels = np.empty((n_img, big))
    for b, (m, gl) in enumerate(zip(mats, level_sets)):
        p[b, :sizes[b], :sizes[b]] = m[0]
        levels[b, :sizes[b]] = gl
        levels[b, sizes[b]:] = gl[-1]        # padding: any level (its probabilities are 0)
    eps = np.spacing(1)
    ng = np.asarray(ngs, dtype=float)[:, None, None]
    k_sum = np.arange(2, (max(ngs) * 2) + 1, dtype="float")
    k_diff = np.arange(0, max(ngs), dtype="float")
    n_seg = n_img * n_angles

    px = p.sum(2, keepdims=True)
    py = p.sum(1, keepdims=True)
    if n_angles > 1:
        # the non-zero entries in row-major (image, i, j, angle) order: within each (image, angle)
        # in the (i, j) order numpy's dense sum visits them
        b_, i_, j_, a_ = np.nonzero(p)
        cell = p[b_, i_, j_, a_]
        seg = b_ * n_angles + a_
        i4, j4 = levels[b_, i_], levels[b_, j_]

        def total(x):
            return np.bincount(seg, x, n_seg).reshape(n_img, n_angles)

        def spread(v):
            return v[b_, a_]
        px_c, py_c = px[b_, i_, 0, a_], py[b_, 0, j_, a_]
        max_prob = np.full(n_seg, -np.inf)
        np.maximum.at(max_prob, seg, cell)
        max_prob = max_prob.reshape(n_img, n_angles)
        row_of = seg
    else:
        cell = p
        i4 = levels[:, :, None, None]
        j4 = levels[:, None, :, None]

        def total(x):
            return np.sum(x, (1, 2))

        def spread(v):
            return v[:, None, None, :]
        px_c, py_c = px, py
        max_prob = np.amax(p, (1, 2))
        row_of = np.broadcast_to(np.arange(n_img)[:, None, None, None] * n_angles, p.shape)
    ux = total(i4 * cell)
    uy = total(j4 * cell)
    ux_c, uy_c = spread(ux), spread(uy)

    # p(x+y)[k], p(x-y)[k]: bins (i + j - 2) and |i - j| per (image, angle), weights added in
    # row-major (i, j) order as pyradiomics' masked sums add them
    gi, gj = np.asarray(i4, dtype=np.intp), np.asarray(j4, dtype=np.intp)
    if n_angles > 1:
        weights = cell
    else:
        gi, gj, row_of = (np.broadcast_to(x, p.shape).ravel() for x in (gi, gj, row_of))
        weights = p.ravel()
    px_add_y = np.bincount((gi + gj - 2 + row_of * len(k_sum)).ravel(), weights, n_seg * len(k_sum))
    px_add_y = px_add_y.reshape(n_img, n_angles, -1).transpose(0, 2, 1)
    px_sub_y = np.bincount((np.abs(gi - gj) + row_of * len(k_diff)).ravel(), weights, n_seg * len(k_diff))
    px_sub_y = px_sub_y.reshape(n_img, n_angles, -1).transpose(0, 2, 1)

    hxy = (-1) * total(cell * np.log2(cell + eps))
    pa = {}      # per-angle values of the features pyradiomics averages with nanmean(., 1)
    pa["Autocorrelation"] = total(cell * (i4 * j4))
    joint_average = ux
    ij_u = (i4 + j4) - ux_c - uy_c
    pa["ClusterProminence"] = total(cell * (ij_u ** 4))
    pa["ClusterShade"] = total(cell * (ij_u ** 3))
    pa["ClusterTendency"] = total(cell * (ij_u ** 2))
    pa["Contrast"] = total(cell * ((np.abs(i4 - j4)) ** 2))

    di = i4 - ux_c
    dj = j4 - uy_c
    sum_squares = total(cell * (di ** 2))
    sigx = sum_squares ** 0.5
    sigy = total(cell * (dj ** 2)) ** 0.5
    corm = total(cell * di * dj)
    corr = corm / (sigx * sigy + eps)
    corr[sigx * sigy == 0] = 1
    correlation = corr

    kd = k_diff[None, :, None]
    diffavg = np.sum((kd * px_sub_y), 1, keepdims=True)
    pa["DifferenceAverage"] = diffavg[:, 0]
    pa["DifferenceEntropy"] = (-1) * np.sum((px_sub_y * np.log2(px_sub_y + eps)), 1)
    pa["DifferenceVariance"] = np.sum((px_sub_y * ((kd - diffavg) ** 2)), 1)
    pa["JointEnergy"] = total(cell ** 2)
    pa["JointEntropy"] = hxy

    hx = (-1) * np.sum((px * np.log2(px + eps)), (1, 2))
    hy = (-1) * np.sum((py * np.log2(py + eps)), (1, 2))
    pxpy = px * py
    log_pxpy = np.log2(pxpy + eps)
    hxy1 = (-1) * total(cell * (log_pxpy if n_angles == 1 else np.log2(px_c * py_c + eps)))
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
    pa["Idmn"] = np.sum(px_sub_y / (1 + ((kd ** 2) / (ng[:, :, 0:1] ** 2))), 1)
    pa["Id"] = np.sum(px_sub_y / (1 + kd), 1)
    pa["Idn"] = np.sum(px_sub_y / (1 + (kd / ng[:, :, 0:1])), 1)
    pa["InverseVariance"] = np.sum(px_sub_y[:, 1:, :] / k_diff[None, 1:, None] ** 2, 1)
    pa["MaximumProbability"] = max_prob
    pa["SumAverage"] = np.sum((k_sum[None, :, None] * px_add_y), 1)
    pa["SumEntropy"] = (-1) * np.sum((px_add_y * np.log2(px_add_y + eps)), 1)
    pa["SumSquares"] = sum_squares     # the sum sigx is the root of, as pyradiomics forms both
    pa["JointAverage"] = joint_average
    pa["Correlation"] = correlation
    means = angle_means_batch(pa)
    mcc = _mcc(mats, px, py, sizes, eps)
    return [{**{k: v[b:b + 1] for k, v in means.items()}, "MCC": mcc[b]} for b in range(n_img)]


def _mcc(mats, px_all, py_all, sizes, eps) -> list:
    """pyradiomics' MCC per image: sqrt of Q's second-largest eigenvalue, Q[i, j] = sum_k P[i,k]
    P[j,k] / (px[i] py[k] + eps), averaged over angles. Q is one product (einsum, no BLAS, so it
    does not depend on the thread count) instead of pyradiomics' loop over k: each term is divided
    before it is multiplied, so Q can differ from pyradiomics' in the last bit.

    Eigenvalues: P is symmetric, so D^(1/2) Q D^(-1/2) (D = diag(px)) is symmetric but for the eps
    terms: H + K, H symmetric, K skew and tiny. A skew perturbation moves a simple eigenvalue's real
    part only to second order (|K|^2 / gap), and keeps the real parts of a cluster within the
    cluster, so H's second-largest eigenvalue (eigvalsh, several times cheaper than the general
    eigvals pyradiomics runs) is Q's wherever ``_trusted`` says the bound is below 1e-12 of it. The
    other angles get eigvals on Q, with pyradiomics' sorting and real/complex handling (a negative
    one's root is NaN, left out of the mean; numpy returns real eigenvalues where all are real)."""
    out = [None] * len(mats)
    for n in sorted(set(sizes)):
        members = [b for b, s in enumerate(sizes) if s == n]
        if n < 2:
            for b in members:
                out[b] = 1
            continue
        pa = np.stack([np.ascontiguousarray(mats[b][0].transpose(2, 0, 1)) for b in members])   # (m, a, i, k)
        px = px_all[members, :n, 0, :].transpose(0, 2, 1)[:, :, :, None]                        # (m, a, i, 1)
        py = py_all[members, 0, :n, :].transpose(0, 2, 1)[:, :, None, :]                        # (m, a, 1, k)
        q = np.einsum("maik,majk->maij", pa / (px * py + eps), pa, optimize=False)
        root = np.sqrt(px[..., 0])
        root[root == 0] = 1                 # a level absent at this angle: its row and column of Q are 0
        sym = q * (root[..., :, None] / root[..., None, :])
        skew_norm = np.sqrt(np.sum(((sym - np.swapaxes(sym, 2, 3)) / 2) ** 2, (2, 3)))
        lam = np.linalg.eigvalsh((sym + np.swapaxes(sym, 2, 3)) / 2)
        second = lam[..., -2]
        values = np.sqrt(np.where(second > 0, second, 1.0))
        redo = np.argwhere(~_trusted(lam, skew_norm))
        fragile = set()
        if len(redo):
            e = np.sort(np.linalg.eigvals(q[redo[:, 0], redo[:, 1]]))
            for (row, angle), ea in zip(redo, e):
                if not np.iscomplexobj(ea) or not ea.imag.any():
                    ea = ea.real
                if ea[-2].real < _FRAGILE:
                    fragile.add(row)
                with np.errstate(invalid="ignore"):
                    values[row, angle] = np.sqrt(ea[-2]).real
        for row, b in enumerate(members):
            out[b] = _mcc_as_pyradiomics(mats[b], eps) if row in fragile else np.nanmean(values[row:row + 1], 1)
    return out


def _trusted(lam, skew_norm):
    """Where H's second-largest eigenvalue (``lam`` ascending, per image and angle) is Q's to 1e-12
    relative: not small (so that round-off stays below that), and the skew part's second-order
    shift |K|^2 / gap (gap: to the nearest eigenvalue outside the cluster within 1e-12 of it)
    below 1e-12 of it as well."""
    second = lam[..., -2:-1]
    width = 1e-12 * np.abs(second)
    dist = np.abs(lam - second)
    gap = np.min(np.where(dist > width, dist, np.inf), -1)
    second = second[..., 0]
    return (second >= 1e-4) & (skew_norm ** 2 <= 1e-12 * second * gap)


# Below this second-largest eigenvalue, MCC is decided by round-off: a negative one's root is NaN
# (left out of the angle mean) or 0 (when numpy returns complex eigenvalues for that image), and
# which one pyradiomics gets depends on the last bit of its Q. Such images are recomputed with
# pyradiomics' own sequence of operations, so the same bits go into the same eigvals call.
_FRAGILE = 1e-6


def _mcc_as_pyradiomics(p, eps):
    """pyradiomics' getMCCFeatureValue on one image's matrix p (1, n, n, angles), step for step."""
    px = p.sum(2, keepdims=True)
    py = p.sum(1, keepdims=True)
    q = ((p[:, :, None, 0, :] * p[:, None, :, 0, :]) / (px[:, :, None, 0, :] * py[:, None, :, 0, :] + eps))
    for gl in range(1, p.shape[1]):
        q += ((p[:, :, None, gl, :] * p[:, None, :, gl, :]) / (px[:, :, None, 0, :] * py[:, None, :, gl, :] + eps))
    eig = np.linalg.eigvals(q.transpose((0, 3, 1, 2)))
    eig.sort()
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.sqrt(eig[:, :, -2]), 1).real
