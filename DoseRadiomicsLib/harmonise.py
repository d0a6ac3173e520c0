"""ComBat harmonisation of features across centres (Johnson, Li & Rabinovic, Biostatistics 2007;8:118).

Each feature g of patient j at centre i is modelled as ``y_ij = alpha_g + X_ij beta_g + gamma_ig +
delta_ig * eps_ij``: a centre shifts its location (gamma) and scales its spread (delta). The
protected covariates X (the outcome and chosen clinical variables) enter the least-squares fit so
that a centre with more resistant patients is not "corrected" towards the others. The centre
effects are shrunk by parametric empirical Bayes across features (Johnson et al. 2007, section 3.2:
normal prior on gamma, inverse-gamma prior on delta^2, the iterative posterior solution).

Why we wrote it (docs/harmonisation.md): neuroHarmonize needs numpy < 2; pyComBat (``combat``) is
GPL-3 (the project is BSD-3); neuroCombat 0.2.12 (MIT, last release 2021) works but fits and
applies in one call on the whole cohort, prints to stdout, and its apply-to-new-data path is marked
"under development". The tests check this module against neuroCombat and against the formulas.

How it is applied. At prediction time the outcome is unknown, so a patient's harmonised value
cannot use its own ``X beta``. Every patient (training ones included, so that training and
prediction see the same transform) is mapped by the centre's affine map that neuroCombat's
``neuroCombatFromTraining`` uses::

    y* = c_g + sigma_g * ((y - c_g) / sigma_g - gamma*_ig) / delta*_ig

with ``c_g = alpha_g + mean over training patients of X beta_g`` and ``sigma_g`` the pooled
residual SD. Using Johnson's training-only formula (which adds back each training patient's
``X beta``) for the training rows would write the outcome into the training features: the fitted
model would look better than it can be at prediction.

A patient from a centre the model does not know is refused (``unknown_centre="refuse"``) unless
the model was trained with ``unknown_centre="unadjusted"``: the features are then used as
measured, and a warning says so.
"""

from __future__ import annotations

import numpy as np

from .errors import DataError, InputError

UNKNOWN_CENTRE_POLICIES = ("refuse", "unadjusted")
MIN_PER_CENTRE = 3  # a centre's spread needs a variance (>= 2 patients); 3 keeps it from being noise alone


def _it_sol(z, g_hat, d_hat, g_bar, t2, a, b, *, conv=1e-6, max_iter=10000):
    """Johnson et al. (2007) eqs. 3.1-3.2 iterated to a fixed point for one centre (all features)."""
    n = z.shape[0]
    g_old, d_old = g_hat.copy(), d_hat.copy()
    for it in range(1, max_iter + 1):
        g_new = (t2 * n * g_hat + d_old * g_bar) / (t2 * n + d_old)
        sum2 = ((z - g_new) ** 2).sum(axis=0)
        d_new = (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
        # sva::ComBat and neuroCombat stop at a relative change of 1e-4 measured against a signed
        # denominator (a negative gamma never blocks); we use |old| and 1e-6: a tighter fixed point
        with np.errstate(divide="ignore", invalid="ignore"):
            change = max(np.nanmax(np.abs(g_new - g_old) / np.abs(g_old)),
                         np.nanmax(np.abs(d_new - d_old) / np.abs(d_old)))
        g_old, d_old = g_new, d_new
        if change <= conv:
            return g_new, d_new, it
    return g_old, d_old, max_iter


def fit_combat(Y, centres, covariates=None, *, conv: float = 1e-6) -> dict:
    """Estimate the ComBat centre effects on training data.

    ``Y``: n patients x g features (finite, no feature constant); ``centres``: n labels;
    ``covariates``: n x p protected covariates (numbers, no intercept column) or None.
    Returns numpy arrays: ``centres`` (sorted labels), ``n`` per centre, ``alpha`` (grand mean,
    sum_i n_i/N * B_i), ``beta`` (p x g), ``sigma`` (pooled residual SD, 1/N), ``location`` (c_g),
    ``gamma_hat``, ``delta_hat_sq`` (I x g, ddof 1), ``gamma_bar``, ``tau_sq``, ``a``, ``b`` (priors
    per centre), ``gamma_star``, ``delta_star_sq`` (I x g), ``iterations`` per centre.
    """
    Y = np.asarray(Y, dtype=float)
    labels = np.asarray([str(c) for c in centres])
    if Y.ndim != 2 or Y.shape[0] != labels.size:
        raise DataError(f"ComBat: {Y.shape[0]} feature rows but {labels.size} centre labels")
    if not np.isfinite(Y).all():
        raise DataError("ComBat: the features to harmonise contain missing or infinite values")
    levels, counts = np.unique(labels, return_counts=True)
    if levels.size < 2:
        raise DataError(f"ComBat needs at least two centres in the training cohort, found {levels.size} "
                        f"({', '.join(levels)})", hint="train without --harmonise, or add the centre column")
    small = [f"{lev} ({c})" for lev, c in zip(levels, counts) if c < MIN_PER_CENTRE]
    if small:
        raise DataError(f"ComBat needs at least {MIN_PER_CENTRE} training patients per centre; too few at "
                        + ", ".join(small), hint="merge small centres in the manifest's centre column")
    N = labels.size
    batch = (labels[:, None] == levels[None, :]).astype(float)
    X = np.zeros((N, 0)) if covariates is None else np.asarray(covariates, dtype=float).reshape(N, -1)
    if not np.isfinite(X).all():
        raise DataError("ComBat: a protected covariate has missing values",
                        hint="impute or drop the covariate")
    design = np.hstack([batch, X])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise DataError("ComBat: the protected covariates are collinear with the centres (e.g. one "
                        "outcome class or one covariate value only at a centre)",
                        hint="protect fewer covariates")
    B, *_ = np.linalg.lstsq(design, Y, rcond=None)
    I = levels.size
    alpha = (counts / N) @ B[:I]
    beta = B[I:]
    resid = Y - design @ B
    var_pooled = (resid ** 2).mean(axis=0)
    if (var_pooled <= 0).any():
        raise DataError("ComBat: a feature has no residual variance", hint="drop constant features first")
    sigma = np.sqrt(var_pooled)
    stand_mean = alpha + X @ beta
    Z = (Y - stand_mean) / sigma
    gamma_hat = np.vstack([Z[labels == lev].mean(axis=0) for lev in levels])
    delta_hat = np.vstack([Z[labels == lev].var(axis=0, ddof=1) for lev in levels])
    gamma_bar = gamma_hat.mean(axis=1)
    tau_sq = gamma_hat.var(axis=1, ddof=1)
    m, s2 = delta_hat.mean(axis=1), delta_hat.var(axis=1, ddof=1)
    a = (2 * s2 + m ** 2) / s2
    b = (m * s2 + m ** 3) / s2
    gamma_star, delta_star, iterations = [], [], []
    for i, lev in enumerate(levels):
        g, d, it = _it_sol(Z[labels == lev], gamma_hat[i], delta_hat[i], gamma_bar[i], tau_sq[i], a[i], b[i],
                           conv=conv)
        gamma_star.append(g)
        delta_star.append(d)
        iterations.append(it)
    return {"centres": levels, "n": counts, "alpha": alpha, "beta": beta, "sigma": sigma,
            "location": alpha + (X @ beta).mean(axis=0) if X.shape[1] else alpha,
            "gamma_hat": gamma_hat, "delta_hat_sq": delta_hat, "gamma_bar": gamma_bar, "tau_sq": tau_sq,
            "a": a, "b": b, "gamma_star": np.vstack(gamma_star), "delta_star_sq": np.vstack(delta_star),
            "iterations": np.asarray(iterations)}


def harmonisation_entry(fit: dict, features, covariates, unknown_centre: str, keep=None) -> dict:
    """The model file's ``harmonisation`` block (plain numbers) for the features in ``keep``."""
    if unknown_centre not in UNKNOWN_CENTRE_POLICIES:
        raise DataError(f"unknown-centre policy {unknown_centre!r}",
                        hint=f"use one of {', '.join(UNKNOWN_CENTRE_POLICIES)}")
    features = [str(f) for f in features]
    idx = [i for i, f in enumerate(features) if keep is None or f in set(keep)]
    return {
        "method": "combat",
        "reference": "Johnson, Li & Rabinovic, Biostatistics 2007;8:118 (parametric empirical Bayes)",
        "applied_as": "y* = location + sigma * ((y - location) / sigma - gamma_star) / sqrt(delta_star_sq), "
                      "per feature and centre, to every patient (training included)",
        "covariates": list(covariates), "unknown_centre": unknown_centre,
        "centres": [str(c) for c in fit["centres"]],
        "n_train": {str(c): int(n) for c, n in zip(fit["centres"], fit["n"])},
        "iterations": {str(c): int(k) for c, k in zip(fit["centres"], fit["iterations"])},
        "features": [features[i] for i in idx],
        "location": [float(fit["location"][i]) for i in idx],
        "sigma": [float(fit["sigma"][i]) for i in idx],
        "gamma_star": {str(c): [float(fit["gamma_star"][k, i]) for i in idx] for k, c in enumerate(fit["centres"])},
        "delta_star_sq": {str(c): [float(fit["delta_star_sq"][k, i]) for i in idx]
                          for k, c in enumerate(fit["centres"])},
    }


def apply_combat(Y, centres, fit: dict) -> np.ndarray:
    """The affine per-centre map of :func:`fit_combat`'s estimates on rows ``Y`` (n x g, same features)."""
    Y = np.asarray(Y, dtype=float)
    levels = [str(c) for c in fit["centres"]]
    out = np.empty_like(Y)
    for r, c in enumerate(centres):
        k = levels.index(str(c))
        out[r] = fit["location"] + (Y[r] - fit["location"] - fit["sigma"] * fit["gamma_star"][k]) \
            / np.sqrt(fit["delta_star_sq"][k])
    return out


def harmonise_features(entry: dict | None, features: dict, centre) -> tuple[dict, list]:
    """One patient's features (name -> value) harmonised by a model file's ``harmonisation`` block.

    Returns ``(features, warnings)``; features not in the block are unchanged. Raises InputError for
    a centre the model does not know when its policy is "refuse".
    """
    if not entry:
        return features, []
    centre = None if centre is None or (isinstance(centre, float) and np.isnan(centre)) else str(centre).strip()
    if centre not in entry["gamma_star"]:
        known = ", ".join(entry["centres"])
        if entry.get("unknown_centre") == "unadjusted":
            return features, [f"centre {centre!r} is not one the model was harmonised on ({known}): "
                              "features used unadjusted (the model's unknown-centre policy)"]
        raise InputError(f"centre {centre!r} is not one the model's ComBat harmonisation knows ({known})",
                         hint="give the patient's centre (predict --centre, or the manifest's centre column for "
                              "validate), or retrain with --harmonise-unknown-centre unadjusted to use features of "
                              "new centres as measured")
    out = dict(features)
    g, d = entry["gamma_star"][centre], entry["delta_star_sq"][centre]
    for f, loc, s, gi, di in zip(entry["features"], entry["location"], entry["sigma"], g, d):
        if f in out:
            try:
                x = float(out[f])
            except (TypeError, ValueError):
                continue
            out[f] = loc + (x - loc - s * gi) / np.sqrt(di)
    return out, []


def harmonise_cohort(X, df, train, columns, *, covariates=(), unknown_centre: str = "refuse"):
    """Fit ComBat on the training rows of ``X[columns]`` and apply it to every row (training's part).

    ``df``: the manifest rows (index = X's) with ``centre``, ``outcome`` and the clinical columns;
    ``train``: boolean Series; ``covariates``: clinical columns protected besides the outcome
    (encoded and imputed as the clinical model does, from the training rows). Returns
    ``(X harmonised, fit, protected covariate names, notes)``. A validation patient whose centre
    is not in training is refused (DataError naming the patient) or, with ``unknown_centre=
    "unadjusted"``, left as measured.
    """
    from .training import encode_clinical, fit_clinical_coding
    if unknown_centre not in UNKNOWN_CENTRE_POLICIES:
        raise DataError(f"unknown-centre policy {unknown_centre!r}",
                        hint=f"use one of {', '.join(UNKNOWN_CENTRE_POLICIES)}")
    if "centre" not in df.columns:
        raise DataError("ComBat harmonisation needs the manifest's centre column",
                        hint="add a centre column (one label per patient) or train without --harmonise")
    centre = df["centre"].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v))
                              else str(v).strip() or None)
    no_centre = [p for p in df.index[train.to_numpy()] if centre[p] is None]
    if no_centre:
        raise DataError("a training patient has no centre", patient=str(no_centre[0]),
                        hint="fill the manifest's centre column for every training patient")
    covariates = [c for c in covariates]
    missing = [c for c in covariates if c not in df.columns]
    if missing:
        raise DataError(f"protected covariate {missing[0]!r} is not a manifest column",
                        hint="name clinical columns of the manifest in --harmonise-covariates")
    cov = [df["outcome"].astype(float).rename("outcome")]
    names = ["outcome"]
    if covariates:
        coding, _ = fit_clinical_coding(df.loc[train, covariates], covariates)
        encoded, _ = encode_clinical(df[list(coding)], coding)
        cov.append(encoded)
        names += list(encoded.columns)
    C = np.column_stack([c.to_numpy(dtype=float) for c in cov])
    tr = train.to_numpy()
    fit = fit_combat(X.loc[tr, columns].to_numpy(dtype=float), centre[tr].to_numpy(), C[tr])
    known = set(fit["centres"])
    notes = [f"ComBat harmonisation over centres {', '.join(fit['centres'])} (training n "
             + ", ".join(str(int(n)) for n in fit["n"]) + f"), protecting {', '.join(names)}"]
    out = X.copy()
    rows = [p for p in X.index if centre[p] in known]
    unknown = [p for p in X.index if centre[p] not in known]
    if unknown and unknown_centre == "refuse":
        raise DataError(f"validation patient's centre {centre[unknown[0]]!r} is not a training centre "
                        f"({', '.join(fit['centres'])})", patient=str(unknown[0]),
                        hint="ComBat estimates a centre's effect on its training patients: put patients of "
                             "every centre in training, or use --harmonise-unknown-centre unadjusted")
    if unknown:
        notes.append(f"{len(unknown)} validation patient(s) of centres unknown to training used unadjusted")
    values = out.loc[rows, columns].to_numpy(dtype=float)
    out.loc[rows, columns] = apply_combat(values, centre[rows].to_numpy(), fit)
    return out, fit, names, notes
