"""Internal validation beyond one split (issue 13, Build 3): Harrell's bootstrap optimism correction
and leave-one-centre-out validation, both refitting the whole method."""

from __future__ import annotations

import json
import types

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.metrics import brier_score_loss, roc_auc_score

from DoseRadiomicsLib import resampling
from DoseRadiomicsLib.training import MODEL_NAMES, fit_pipeline, score_pipeline, train_models
from test_training import synthetic_cohort


def toy_fit_score(state, train_pos, score_pos, cv_seed):
    """A pipeline simple enough to redo by hand: standardise the one feature on the training rows,
    probability = expit(2 * z)."""
    x = state["X"]["x"].to_numpy()
    mu, sd = x[train_pos].mean(), x[train_pos].std()
    return None, {"toy": expit(2 * (x[score_pos] - mu) / sd)}


def _slope(y, p):
    import statsmodels.api as sm
    lp = np.log(p / (1 - p))
    return sm.Logit(y, sm.add_constant(lp)).fit(disp=0).params[1]


def test_optimism_is_the_mean_of_apparent_minus_test_over_the_recorded_replicates_by_hand():
    rng = np.random.default_rng(3)
    n = 80
    x = rng.normal(size=n)
    y = (rng.random(n) < expit(1.2 * x)).astype(int)
    X, raw = pd.DataFrame({"x": x}), pd.DataFrame(index=range(n))
    train_pos = np.arange(10, 70)                     # the "training cohort": 60 of the 80 rows
    p_main = toy_fit_score({"X": X}, train_pos, train_pos, 0)[1]["toy"]
    apparent = {"toy": resampling.performance(y[train_pos], p_main)}
    out = resampling.bootstrap_optimism(X, raw, y, train_pos, apparent, clinical_columns=[], options=None,
                                        replicates=25, seed=11, fit_score=toy_fit_score)
    assert out["completed"] == 25 and out["failed"] == [] and out["seed"] == 11
    # the replicates by hand: SeedSequence(11).spawn(25)[b] draws the sample, sklearn/statsmodels score
    diffs = {"auc": [], "brier": [], "calibration_slope": []}
    tests = {"auc": [], "brier": [], "calibration_slope": []}
    yt, xt = y[train_pos], x[train_pos]
    for b, child in enumerate(np.random.SeedSequence(11).spawn(25)):
        draw = np.random.default_rng(child).integers(0, 60, 60)
        p = expit(2 * (xt - xt[draw].mean()) / xt[draw].std())
        app = (roc_auc_score(yt[draw], p[draw]), brier_score_loss(yt[draw], p[draw]), _slope(yt[draw], p[draw]))
        test = (roc_auc_score(yt, p), brier_score_loss(yt, p), _slope(yt, p))
        rv = out["replicate_values"]["toy"]
        assert rv["auc_apparent"][b] == pytest.approx(app[0], abs=1e-12)
        assert rv["auc_test"][b] == pytest.approx(test[0], abs=1e-12)
        assert rv["brier_apparent"][b] == pytest.approx(app[1], abs=1e-12)
        assert rv["calibration_slope_test"][b] == pytest.approx(test[2], rel=1e-6)
        for k, m in enumerate(("auc", "brier", "calibration_slope")):
            diffs[m].append(app[k] - test[k])
            tests[m].append(test[k])
    for m in diffs:
        s = out["summary"]["toy"][m]
        assert s["optimism"] == pytest.approx(np.mean(diffs[m]), rel=1e-6, abs=1e-12)
        assert s["corrected"] == pytest.approx(apparent["toy"][m] - np.mean(diffs[m]), rel=1e-6)
        assert s["replicates"] == 25
        assert s["test_mean"] == pytest.approx(np.mean(tests[m]), rel=1e-6)
    assert out["summary"]["toy"]["auc"]["apparent"] == pytest.approx(roc_auc_score(yt, p_main))
    # same seed, any number of workers: the same numbers
    again = resampling.bootstrap_optimism(X, raw, y, train_pos, apparent, clinical_columns=[], options=None,
                                          replicates=25, seed=11, fit_score=toy_fit_score, workers=2)
    assert again == out
    other = resampling.bootstrap_optimism(X, raw, y, train_pos, apparent, clinical_columns=[], options=None,
                                          replicates=25, seed=12, fit_score=toy_fit_score)
    assert other["summary"] != out["summary"]


def test_632plus_auc_from_the_out_of_bag_patients_by_hand():
    """Efron & Tibshirani (1997) .632+ for the AUC, redone by hand on the toy pipeline: each replicate's
    AUC on the training patients it did not draw (sklearn), their mean, the .632+ weight."""
    # the formula on numbers one can check on paper: apparent 0.9, oob 0.7 -> R = 0.2 / 0.4 = 0.5,
    # w = 0.632 / (1 - 0.184) = 0.774509..., estimate = 0.9 - w * 0.2
    hand = resampling.auc_632plus(0.9, 0.7)
    assert hand["relative_overfitting"] == pytest.approx(0.5)
    assert hand["weight"] == pytest.approx(0.632 / 0.816)
    assert hand["estimate"] == pytest.approx(0.9 - 0.2 * 0.632 / 0.816)
    # no overfitting (oob >= apparent): the plain .632 weight; oob below chance counts as chance (R = 1, w = 1)
    assert resampling.auc_632plus(0.8, 0.85)["estimate"] == pytest.approx(0.368 * 0.8 + 0.632 * 0.85)
    assert resampling.auc_632plus(0.9, 0.4)["estimate"] == pytest.approx(0.5)
    rng = np.random.default_rng(5)
    n = 70
    x = rng.normal(size=n)
    y = (rng.random(n) < expit(x)).astype(int)
    X, raw = pd.DataFrame({"x": x}), pd.DataFrame(index=range(n))
    train_pos = np.arange(n)
    apparent = {"toy": resampling.performance(y, toy_fit_score({"X": X}, train_pos, train_pos, 0)[1]["toy"])}
    out = resampling.bootstrap_optimism(X, raw, y, train_pos, apparent, clinical_columns=[], options=None,
                                        replicates=12, seed=4, fit_score=toy_fit_score)
    oob_aucs = []
    for child in np.random.SeedSequence(4).spawn(12):
        draw = np.random.default_rng(child).integers(0, n, n)
        oob = np.setdiff1d(np.arange(n), draw)
        p = expit(2 * (x - x[draw].mean()) / x[draw].std())
        oob_aucs.append(roc_auc_score(y[oob], p[oob]))
    s = out["summary"]["toy"]["auc"]
    assert out["replicate_values"]["toy"]["auc_oob"] == pytest.approx(oob_aucs, abs=1e-12)
    assert s["oob_mean"] == pytest.approx(np.mean(oob_aucs)) and s["oob_replicates"] == 12
    app, oob1 = s["apparent"], max(np.mean(oob_aucs), 0.5)
    r = (app - oob1) / (app - 0.5) if oob1 < app else 0.0
    w = 0.632 / (1 - 0.368 * r)
    assert s["estimate_632plus"] == pytest.approx((1 - w) * app + w * oob1, rel=1e-12)


@pytest.fixture(scope="module")
def small():
    return synthetic_cohort(n=90, n_noise=4, seed=5)


def test_bootstrap_refits_the_whole_method_and_does_not_depend_on_the_worker_count(small, tmp_path):
    features, manifest, _ = small
    one = train_models(features, manifest, seed=2, repeated_splits=0, bootstrap=2, bootstrap_seed=9)
    two = train_models(features, manifest, seed=2, repeated_splits=0, bootstrap=2, bootstrap_seed=9, workers=2)
    b1, b2 = one.internal_validation["bootstrap"], two.internal_validation["bootstrap"]
    # compared as JSON text: a replicate's calibration slope can be NaN (separated refit), and NaN != NaN
    assert json.dumps(b1, sort_keys=True) == json.dumps(b2, sort_keys=True)
    assert b1["completed"] == 2 and set(b1["summary"]) == set(MODEL_NAMES)
    assert one.to_dict()["settings"]["bootstrap_seed"] == 9
    # replicate 1 redone by hand: draw, fit everything on the draw (LASSO folds seeded as documented),
    # score the training cohort, AUC by scikit-learn
    child = np.random.SeedSequence(9).spawn(2)[1]
    tr = one.patients.index[one.patients["cohort"] == "train"]
    draw = np.random.default_rng(child).integers(0, len(tr), len(tr))
    feats = features.set_index("patient_id")
    cols = [c for c in feats.columns if "__" in c and not c.startswith("diag__")]
    y = manifest.df.loc[tr, "outcome"].to_numpy()
    clinical = [c for c in manifest.clinical_columns if c in manifest.df.columns]
    fitted = fit_pipeline(feats.loc[tr[draw], cols], manifest.df.loc[tr[draw]], y[draw], clinical,
                          _options(), int(child.generate_state(1)[0]), detail=False)
    p = score_pipeline(fitted, feats.loc[tr, cols], manifest.df.loc[tr])["combined"]
    rv = b1["replicate_values"]["combined"]
    assert rv["auc_test"][1] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert rv["auc_apparent"][1] == pytest.approx(roc_auc_score(y[draw], p[draw]), abs=1e-12)
    # apparent = the model file's training-cohort figures
    assert b1["summary"]["combined"]["auc"]["apparent"] == pytest.approx(one.evaluation["train"]["combined"]["auc"])
    # the model file keeps it and the report shows the corrected figure beside the split's
    from DoseRadiomicsLib.modelfile import load_model, save_model
    from DoseRadiomicsLib.report import render_report
    save_model(one, tmp_path / "m.json")
    html = render_report(load_model(tmp_path / "m.json"))
    assert "Bootstrap optimism correction (Harrell)" in html and "numpy.random.SeedSequence(9).spawn(2)" in html
    assert f"<td class=\"num\">{b1['summary']['combined']['auc']['corrected']:.3f}</td>" in html


def _options():
    from DoseRadiomicsLib.training import MethodOptions
    return MethodOptions()


def test_leave_one_centre_out_on_a_two_centre_cohort(small, capsys):
    """Each centre's figures are those of a full training run on the other centre, validated on it."""
    features, manifest, _ = small
    m = types.SimpleNamespace(**vars(manifest))
    m.df = manifest.df.assign(centre=np.where(np.arange(len(manifest.df)) % 2, "B", "A"))
    trained = train_models(features, m, seed=4, repeated_splits=0)
    loco = trained.internal_validation["leave_one_centre_out"]
    assert [r["centre"] for r in loco["centres"]] == ["A", "B"]
    a = loco["centres"][0]
    assert a["n"] == 45 and a["n_train"] == 45 and a["events"] == int(m.df.outcome[m.df.centre == "A"].sum())
    check = types.SimpleNamespace(**vars(m))
    check.df = m.df.assign(split=np.where(m.df.centre == "A", "validation", "train"))
    again = train_models(features, check, seed=4, repeated_splits=0, loco=False)
    assert again.internal_validation is None
    ev = again.evaluation["validation"]
    for name in MODEL_NAMES:
        assert a["models"][name]["auc"] == pytest.approx(ev[name]["auc"], abs=1e-12), name
        assert a["models"][name]["brier"] == pytest.approx(ev[name]["brier"], abs=1e-12), name
    assert a["models"]["combined"]["ci_low"] == pytest.approx(ev["combined"]["ci_low"], abs=1e-12)
