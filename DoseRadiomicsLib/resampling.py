"""Internal validation beyond one split: the whole method refitted on resampled cohorts.

Three assessments, each refitting everything :func:`training.fit_pipeline` fits (usable features,
min-max normalisation, univariate filter, LASSO with its own 10-fold CV, the ROI models and the RDM,
clinical encodings, imputation values and predictor selection, the combined model) on its own
training rows only:

* :func:`bootstrap_optimism` -- Harrell's optimism correction (Harrell, Lee & Mark 1996; Steyerberg
  2019, ch. 17) on the training cohort: for replicate b, draw n patients with replacement from the
  n training patients, fit the method on them, and score it on the bootstrap sample (apparent_b)
  and on the original training cohort (test_b). optimism = mean_b(apparent_b - test_b); corrected =
  the main fit's apparent (training-cohort) value - optimism. For AUC, calibration slope and Brier.
* :func:`leave_one_centre_out` -- with a ``centre`` column: fit on every other centre's patients
  (both cohorts of the split), evaluate on the centre left out.
* :func:`repeated_split_assessment` (in :mod:`training`) -- further random 7:3 splits.

Reproducibility: replicate b's random numbers come from ``SeedSequence(seed).spawn(N)[b]``: its
generator draws the bootstrap sample, and ``generate_state(1)[0]`` seeds the replicate's LASSO
folds. Replicates are independent and collected in order, so the result is the same for any
number of ``workers`` (a process pool of spawned, single-threaded workers that receive the data
once).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing

import numpy as np
import pandas as pd

from .errors import DataError

#: the metrics of the optimism correction
METRICS = ("auc", "calibration_slope", "brier")
BOOTSTRAP_METHOD = (
    "Harrell's bootstrap optimism correction on the training cohort: per replicate, n patients drawn with "
    "replacement from the n training patients; the whole method (usable features, min-max normalisation, "
    "univariate filter, LASSO with its own 10-fold CV, ROI models, RDM, clinical encodings, imputation and "
    "predictor selection, combined model) refitted on the sample; its AUC, calibration slope and Brier score "
    "on the sample (apparent) and on the original training cohort (test); optimism = mean(apparent - test); "
    "corrected = the model file's training-cohort value - optimism. Replicate b uses "
    "numpy SeedSequence(seed).spawn(N)[b]: default_rng of it draws the sample, generate_state(1)[0] seeds "
    "the LASSO folds. The LASSO's 10-fold CV folds the sample's distinct patients (glmnet foldid by patient): "
    "every copy of a patient drawn more than once is in one fold, so none is fitted and scored in the same fold. "
    "Beside it, the .632+ estimate of the AUC (Efron & Tibshirani 1997): each refit's AUC on the training "
    "patients it was not fitted on (out of bag), averaged over the replicates, combined with the apparent AUC "
    "by the .632+ weight (no-information AUC 0.5).")

_STATE: dict = {}


def _init(state: dict) -> None:
    from .stats.elastic_net import single_threaded_blas
    _STATE.clear()
    _STATE.update(state)
    _STATE["_blas"] = single_threaded_blas()
    _STATE["_blas"].__enter__()  # the worker's whole life: one thread, results independent of BLAS


def run_tasks(func, tasks: list, state: dict, workers: int = 1) -> list:
    """``[func(task) for task in tasks]`` in order, in ``workers`` spawned processes holding ``state``."""
    workers = max(1, int(workers or 1))
    if workers == 1 or len(tasks) <= 1:
        saved = dict(_STATE)
        _init(state)
        try:
            return [func(t) for t in tasks]
        finally:
            _STATE["_blas"].__exit__(None, None, None)
            _STATE.clear()
            _STATE.update(saved)
    from .cohort import _single_threaded_children
    ctx = multiprocessing.get_context("spawn")
    with _single_threaded_children():
        pool = cf.ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx,
                                      initializer=_init, initargs=(state,))
    try:
        # one task at a time: a task is a whole refit (seconds), so sending it costs nothing and the
        # workers finish together (chunks of 12 left one worker idle for up to a chunk at the end);
        # map returns results in task order
        return list(pool.map(func, tasks, chunksize=1))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _fit_score(train_pos, score_pos, cv_seed: int):
    """Fit the method on rows ``train_pos`` of the shared data, score rows ``score_pos``.

    Returns ``(fitted, {model: probabilities of the score_pos rows})``. A state's ``fit_score``
    (a module-level function with this signature taking the state first) replaces the method:
    the tests use a pipeline whose apparent and test performance they can compute by hand.
    """
    if _STATE.get("fit_score") is not None:
        return _STATE["fit_score"](_STATE, train_pos, score_pos, cv_seed)
    from .training import fit_pipeline, score_pipeline
    X, raw, y = _STATE["X"], _STATE["raw"], _STATE["y"]
    fitted = fit_pipeline(X.iloc[train_pos], raw.iloc[train_pos], y[train_pos], _STATE["clinical_columns"],
                          _STATE["options"], cv_seed, detail=False)
    return fitted, score_pipeline(fitted, X.iloc[score_pos], raw.iloc[score_pos], unseen_as_reference=True)


def performance(y, p) -> dict:
    """AUC, calibration slope and Brier score of probabilities ``p`` (NaN ones left out)."""
    from .stats import calibration, roc
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    ok = np.isfinite(p)
    y, p = y[ok], p[ok]
    out = {"auc": float("nan"), "calibration_slope": float("nan"), "brier": float("nan")}
    if y.size == 0 or y.min() == y.max():
        return out
    out["auc"] = roc.auc(y, p)
    out["brier"] = calibration.brier_score(y, p)
    try:
        out["calibration_slope"] = calibration.calibration_slope(y, p)["slope"]
    except DataError:  # constant or perfectly separating predictions: no finite slope
        pass
    return out


def _bootstrap_replicate(task):
    index, seed_seq = task
    train_pos, y = _STATE["train_pos"], _STATE["y"]
    rng = np.random.default_rng(seed_seq)
    draw = rng.integers(0, train_pos.size, train_pos.size)
    cv_seed = int(seed_seq.generate_state(1)[0])
    try:
        _, p = _fit_score(train_pos[draw], train_pos, cv_seed)
    except DataError as exc:
        return {"replicate": index, "error": exc.problem}
    y_tr = y[train_pos]
    oob = np.setdiff1d(np.arange(train_pos.size), draw)  # the patients this refit never saw
    out = {"replicate": index, "n_unique": int(np.unique(draw).size), "models": {}}
    for name in p:
        app, test = performance(y_tr[draw], p[name][draw]), performance(y_tr, p[name])
        out["models"][name] = {**{f"{m}_apparent": app[m] for m in METRICS},
                               **{f"{m}_test": test[m] for m in METRICS},
                               "auc_oob": oob_auc(y_tr[oob], p[name][oob])}
    return out


def oob_auc(y, p) -> float:
    """AUC on the out-of-bag patients (NaN without both classes or with missing scores)."""
    from .stats import roc
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    if y.size == 0 or y.min() == y.max() or not np.isfinite(p).all():
        return float("nan")
    return float(roc.auc(y, p))


def auc_632plus(apparent: float, oob: float) -> dict:
    """Efron & Tibshirani's (1997) .632+ estimate for the AUC, with 1 - AUC as the loss and 0.5 (a
    score unrelated to the outcome) as the no-information value:
    oob' = max(oob, 0.5); R = (apparent - oob') / (apparent - 0.5) if oob' < apparent (else 0);
    w = 0.632 / (1 - 0.368 R); estimate = (1 - w) apparent + w oob'."""
    if not (np.isfinite(apparent) and np.isfinite(oob)):
        return {"estimate": float("nan"), "weight": float("nan"), "relative_overfitting": float("nan")}
    oob1 = max(oob, 0.5)
    r = (apparent - oob1) / (apparent - 0.5) if (oob1 < apparent and apparent > 0.5) else 0.0
    w = 0.632 / (1 - 0.368 * r)
    return {"estimate": float((1 - w) * apparent + w * oob1), "weight": float(w), "relative_overfitting": float(r)}


def optimism_summary(apparent: dict, replicates: list) -> dict:
    """Per model and metric: apparent, optimism = mean(apparent_b - test_b) over the replicates where both
    are finite, corrected = apparent - optimism, how many replicates counted, and test_mean = mean(test_b)."""
    out = {}
    ok = [r for r in replicates if "models" in r]
    for name in apparent:
        out[name] = {}
        for m in METRICS:
            d = np.array([r["models"][name][f"{m}_apparent"] - r["models"][name][f"{m}_test"] for r in ok],
                         dtype=float)
            test = np.array([r["models"][name][f"{m}_test"] for r in ok], dtype=float)
            d, test = d[np.isfinite(d)], test[np.isfinite(test)]
            opt = float(d.mean()) if d.size else float("nan")
            app = float(apparent[name][m])
            # test_mean: the refits' mean on the original cohort (for the slope, the heuristic shrinkage
            # factor; meaningful where the in-sample slope of a separated refit is not 1)
            out[name][m] = {"apparent": app, "optimism": opt, "corrected": app - opt, "replicates": int(d.size),
                            "test_mean": float(test.mean()) if test.size else float("nan")}
        # .632+ beside Harrell's: the refits scored only on the patients they did not see
        oob = np.array([r["models"][name].get("auc_oob", np.nan) for r in ok], dtype=float)
        oob = oob[np.isfinite(oob)]
        oob_mean = float(oob.mean()) if oob.size else float("nan")
        plus = auc_632plus(out[name]["auc"]["apparent"], oob_mean)
        out[name]["auc"].update(oob_mean=oob_mean, oob_replicates=int(oob.size), estimate_632plus=plus["estimate"],
                                weight_632plus=plus["weight"], relative_overfitting=plus["relative_overfitting"])
    return out


def bootstrap_optimism(X: pd.DataFrame, raw: pd.DataFrame, y: np.ndarray, train_pos: np.ndarray,
                       apparent: dict, *, clinical_columns, options, replicates: int, seed: int,
                       workers: int = 1, fit_score=None) -> dict:
    """Harrell's optimism correction of the whole method (see the module docstring).

    ``X``/``raw``/``y``: every usable patient's raw features, manifest row and outcome; ``train_pos``:
    positions of the training cohort; ``apparent``: model -> {metric: value} of the main fit on the
    training cohort. Returns dict(method, seed, replicates, completed, failed, n, summary (see
    :func:`optimism_summary`), replicate_values (per model and metric, apparent and test per
    completed replicate, in replicate order)). ``fit_score``: see :func:`_fit_score` (tests only).
    """
    if replicates < 1:
        raise DataError(f"--bootstrap needs at least 1 replicate, got {replicates}",
                        hint="Harrell's correction is usually run with 200 or more")
    state = {"X": X, "raw": raw, "y": np.asarray(y, dtype=int), "train_pos": np.asarray(train_pos),
             "clinical_columns": list(clinical_columns), "options": options, "fit_score": fit_score}
    children = np.random.SeedSequence(int(seed)).spawn(int(replicates))
    results = run_tasks(_bootstrap_replicate, list(enumerate(children)), state, workers)
    done = [r for r in results if "models" in r]
    values = {name: {**{f"{m}_{k}": [r["models"][name][f"{m}_{k}"] for r in done]
                        for m in METRICS for k in ("apparent", "test")},
                     "auc_oob": [r["models"][name].get("auc_oob", float("nan")) for r in done]} for name in apparent}
    return {"method": BOOTSTRAP_METHOD, "seed": int(seed), "replicates": int(replicates),
            "completed": len(done), "n": int(np.asarray(train_pos).size),
            "failed": [{"replicate": r["replicate"], "error": r["error"]} for r in results if "error" in r],
            "summary": optimism_summary(apparent, done),
            "replicate_seeds": f"numpy.random.SeedSequence({int(seed)}).spawn({int(replicates)})",
            "replicate_values": values}


def _loco_fold(task):
    from .stats.roc import delong_auc_ci
    from .training import MODEL_NAMES
    centre, train_pos, test_pos, cv_seed = task
    y = _STATE["y"]
    try:
        _, p = _fit_score(train_pos, test_pos, cv_seed)
    except DataError as exc:
        return {"centre": centre, "n": int(test_pos.size), "error": exc.problem}
    yt = y[test_pos]
    out = {"centre": centre, "n": int(test_pos.size), "events": int(yt.sum()),
           "n_train": int(train_pos.size), "models": {}}
    for name in MODEL_NAMES:
        perf = performance(yt, p[name])
        if yt.min() != yt.max() and np.isfinite(p[name]).all():
            ci = delong_auc_ci(yt, p[name])
            perf.update(ci_low=ci["ci_low"], ci_high=ci["ci_high"])
        out["models"][name] = perf
    return out


def leave_one_centre_out(X: pd.DataFrame, raw: pd.DataFrame, y: np.ndarray, centre: pd.Series, *,
                         clinical_columns, options, seed: int, workers: int = 1) -> dict:
    """Fit the method on all centres but one, evaluate it on the one left out, for every centre.

    ``centre``: each usable patient's centre (same order as ``X``); patients without one stay in every
    training set and are never a test centre. The split's train/validation labels are not used. The
    LASSO folds are seeded by ``seed``. Returns dict(method, seed, centres: [{centre, n, events,
    n_train, models: {model: {auc, ci_low, ci_high, calibration_slope, brier}}} or {centre, n,
    error}]).
    """
    labels = centre.astype("string").str.strip()
    names = sorted(labels.dropna().unique())
    tasks = []
    for c in names:
        test = np.flatnonzero((labels == c).fillna(False).to_numpy())
        train = np.flatnonzero(~(labels == c).fillna(False).to_numpy())
        tasks.append((str(c), train, test, int(seed)))
    state = {"X": X, "raw": raw, "y": np.asarray(y, dtype=int), "clinical_columns": list(clinical_columns),
             "options": options}
    return {"method": "leave-one-centre-out: for each centre, the whole method refitted on every other centre's "
                      "patients (the train/validation split ignored) and evaluated on that centre's patients",
            "seed": int(seed), "centres": run_tasks(_loco_fold, tasks, state, workers)}


def _split_task(task):
    from .stats.roc import auc
    from .training import split_cohort
    seed, train_fraction = task
    y, truth = _STATE["y_series"], _STATE["truth"]
    cohort = split_cohort(y, seed=seed, train_fraction=train_fraction).to_numpy()
    train_pos, val_pos = np.flatnonzero(cohort == "train"), np.flatnonzero(cohort == "validation")
    try:
        _, p = _fit_score(train_pos, val_pos, int(seed))
    except DataError as exc:
        return {"seed": int(seed), "error": exc.problem}
    score = p["combined"]
    ids = y.index[val_pos]
    keep = np.isfinite(score) & ids.isin(truth.index)
    yv = y.to_numpy()[val_pos][keep]
    if yv.size == 0 or yv.min() == yv.max():
        return {"seed": int(seed), "error": "one outcome class in the validation cohort"}
    return {"seed": int(seed), "n_validation": int(keep.sum()), "combined_auc": auc(yv, score[keep]),
            "oracle_auc": auc(yv, truth.loc[ids[keep]].to_numpy(dtype=float))}


def repeated_splits(X, raw, y: pd.Series, truth: pd.Series, *, clinical_columns, options, seeds,
                    train_fraction: float, workers: int = 1) -> list:
    """Per seed: a stratified split, the whole method refitted on its training part (its LASSO folds
    seeded by the split's seed), the combined model's and the truth's AUC on its validation part."""
    state = {"X": X, "raw": raw, "y": y.to_numpy(dtype=int), "y_series": y, "truth": truth,
             "clinical_columns": list(clinical_columns), "options": options}
    return run_tasks(_split_task, [(int(s), train_fraction) for s in seeds], state, workers)
