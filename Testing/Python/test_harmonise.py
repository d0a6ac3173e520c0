"""ComBat harmonisation: the published formulas, an independent implementation, and what it is for.

- a hand-checkable case: every quantity of Johnson et al. (2007) recomputed feature by feature with
  the standard library (``statistics``), from the paper's equations, not from the module's code;
- neuroCombat 0.2.12 (PyPI, MIT; installed for the tests only) on a cohort with protected
  covariates: the same least-squares fit, priors and empirical-Bayes estimates;
- a centre effect injected into a synthetic cohort is removed, the validation AUC comes back
  towards the oracle, and the model file applies it unchanged in ``predict``.
"""

from __future__ import annotations

import contextlib
import io
import math
import statistics as stat

import numpy as np
import pandas as pd
import pytest

from DoseRadiomicsLib import cli
from DoseRadiomicsLib.errors import DataError, InputError, ModelFileError
from DoseRadiomicsLib.harmonise import apply_combat, fit_combat, harmonise_cohort
from DoseRadiomicsLib.modelfile import load_model, save_model
from DoseRadiomicsLib.prediction import predict_from_features
from DoseRadiomicsLib.training import train_models
from test_training import synthetic_cohort

# 2 centres x 3 patients, 3 features, no covariates: small enough to follow on paper
HAND_Y = [[1.0, 10.0, 5.0], [2.0, 14.0, 4.0], [4.0, 12.0, 7.0],      # centre A
          [6.0, 20.0, 5.5], [8.0, 26.0, 9.0], [7.0, 21.0, 6.0]]      # centre B
HAND_C = ["A", "A", "A", "B", "B", "B"]


def _hand_combat(Y, centres):
    """Johnson et al. 2007, section 3.1-3.2, written out per feature with plain Python."""
    levels = sorted(set(centres))
    N, G = len(Y), len(Y[0])
    rows = {c: [j for j in range(N) if centres[j] == c] for c in levels}
    out = {"alpha": [], "sigma": [], "gamma_hat": {c: [] for c in levels}, "delta_hat": {c: [] for c in levels}}
    Z = [[0.0] * G for _ in range(N)]
    for g in range(G):
        # without covariates the least-squares fit is the centre means; alpha the n-weighted mean of them
        means = {c: stat.fmean(Y[j][g] for j in rows[c]) for c in levels}
        alpha = sum(len(rows[c]) * means[c] for c in levels) / N
        var = sum((Y[j][g] - means[centres[j]]) ** 2 for j in range(N)) / N  # eq. 2.3: 1/N
        sigma = math.sqrt(var)
        out["alpha"].append(alpha)
        out["sigma"].append(sigma)
        for j in range(N):
            Z[j][g] = (Y[j][g] - alpha) / sigma
        for c in levels:
            z = [Z[j][g] for j in rows[c]]
            out["gamma_hat"][c].append(stat.fmean(z))
            out["delta_hat"][c].append(stat.variance(z))
    out["gamma_star"], out["delta_star"] = {}, {}
    for c in levels:
        gh, dh, n = out["gamma_hat"][c], out["delta_hat"][c], len(rows[c])
        gbar, t2 = stat.fmean(gh), stat.variance(gh)
        V, S2 = stat.fmean(dh), stat.variance(dh)
        lam, theta = (V * V + 2 * S2) / S2, (V ** 3 + V * S2) / S2   # inverse-gamma moments
        gs, ds = list(gh), list(dh)
        for _ in range(5000):
            gs_new = [(n * t2 * gh[g] + ds[g] * gbar) / (n * t2 + ds[g]) for g in range(G)]
            ds_new = [(theta + 0.5 * sum((Z[j][g] - gs_new[g]) ** 2 for j in rows[c])) / (n / 2 + lam - 1)
                      for g in range(G)]
            done = max(abs(a - b) for a, b in zip(gs_new + ds_new, gs + ds)) < 1e-13
            gs, ds = gs_new, ds_new
            if done:
                break
        out["gamma_star"][c], out["delta_star"][c] = gs, ds
    out["adjusted"] = [[out["sigma"][g] * (Z[j][g] - out["gamma_star"][centres[j]][g])
                        / math.sqrt(out["delta_star"][centres[j]][g]) + out["alpha"][g] for g in range(G)]
                       for j in range(N)]
    return out


def test_combat_follows_the_published_formulas_on_a_hand_checkable_case():
    hand = _hand_combat(HAND_Y, HAND_C)
    fit = fit_combat(np.array(HAND_Y), HAND_C)
    assert list(fit["centres"]) == ["A", "B"]
    np.testing.assert_allclose(fit["alpha"], hand["alpha"], rtol=1e-12)
    np.testing.assert_allclose(fit["sigma"], hand["sigma"], rtol=1e-12)
    for k, c in enumerate(("A", "B")):
        np.testing.assert_allclose(fit["gamma_hat"][k], hand["gamma_hat"][c], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(fit["delta_hat_sq"][k], hand["delta_hat"][c], rtol=1e-10)
        np.testing.assert_allclose(fit["gamma_star"][k], hand["gamma_star"][c], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(fit["delta_star_sq"][k], hand["delta_star"][c], rtol=1e-5)
    # without covariates the applied map is Johnson's adjustment itself
    np.testing.assert_allclose(apply_combat(np.array(HAND_Y), HAND_C, fit), hand["adjusted"], rtol=1e-5)
    # the first feature by hand: centre means 7/3 and 7, alpha = 14/3, sigma^2 = (4/3 + ... )/6
    assert fit["alpha"][0] == pytest.approx(14 / 3)
    assert fit["sigma"][0] ** 2 == pytest.approx((16 / 9 + 1 / 9 + 25 / 9 + 1 + 1 + 0) / 6)


def _neurocombat(Y, covars, categorical, continuous):
    neuro = pytest.importorskip("neuroCombat", reason="neuroCombat (requirements.txt) is the independent check")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its progress
        return neuro.neuroCombat(Y.T.copy(), covars, "batch", categorical_cols=categorical,
                                 continuous_cols=continuous)


def test_combat_agrees_with_neurocombat_with_protected_covariates():
    rng = np.random.default_rng(0)
    n, g = 60, 12
    centre = np.repeat(["A", "B", "C"], [25, 20, 15])
    y = rng.integers(0, 2, n)
    age = rng.normal(60, 8, n)
    Y = (rng.normal(size=(n, g)) * np.linspace(1, 4, g) + 1.5 * y[:, None] + 0.05 * age[:, None]
         + (centre == "B")[:, None] * 2.0 + (centre == "C")[:, None] * rng.normal(0, 2, g))
    Y[centre == "C"] *= 1.7
    ref = _neurocombat(Y, pd.DataFrame({"batch": centre, "y": y, "age": age}), ["y"], ["age"])["estimates"]
    fit = fit_combat(Y, centre, np.column_stack([y, age]))
    np.testing.assert_allclose(fit["sigma"] ** 2, np.ravel(ref["var.pooled"]), rtol=1e-6)
    np.testing.assert_allclose(fit["alpha"], ref["stand.mean"][:, 0], rtol=1e-6)
    np.testing.assert_allclose(fit["gamma_hat"], ref["gamma_hat"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fit["delta_hat_sq"], ref["delta_hat"], rtol=1e-6)
    np.testing.assert_allclose(fit["gamma_bar"], ref["gamma_bar"], rtol=1e-6)
    np.testing.assert_allclose(fit["tau_sq"], ref["t2"], rtol=1e-6)
    np.testing.assert_allclose(fit["a"], ref["a_prior"], rtol=1e-6)
    np.testing.assert_allclose(fit["b"], ref["b_prior"], rtol=1e-6)
    # (neuroCombat inverts the normal equations, we use lstsq: 1e-6 relative covers the rounding)
    # neuroCombat stops at a 1e-4 relative change, we at 1e-6: the fixed points agree to that
    np.testing.assert_allclose(fit["gamma_star"], ref["gamma.star"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(fit["delta_star_sq"], ref["delta.star"], rtol=1e-3)
    # the location of the applied map is neuroCombatFromTraining's: alpha + mean of X beta
    np.testing.assert_allclose(fit["location"], ref["stand.mean"][:, 0] + ref["mod.mean"].mean(axis=1), rtol=1e-6)


def test_combat_without_covariates_gives_neurocombats_harmonised_data():
    rng = np.random.default_rng(1)
    centre = np.repeat(["s1", "s2"], [18, 22])
    Y = rng.normal(size=(40, 8)) + (centre == "s2")[:, None] * 3.0
    ref = _neurocombat(Y, pd.DataFrame({"batch": centre}), None, None)
    fit = fit_combat(Y, centre)
    np.testing.assert_allclose(apply_combat(Y, centre, fit), ref["data"].T, rtol=1e-3, atol=1e-4)


def test_combat_refuses_what_it_cannot_estimate():
    Y = np.random.default_rng(2).normal(size=(8, 3))
    with pytest.raises(DataError, match="two centres"):
        fit_combat(Y, ["A"] * 8)
    with pytest.raises(DataError, match="at least 3 training patients per centre; too few at B \\(2\\)"):
        fit_combat(Y, ["A"] * 6 + ["B"] * 2)
    with pytest.raises(DataError, match="collinear"):  # the outcome is the centre
        fit_combat(Y, ["A"] * 4 + ["B"] * 4, np.array([0] * 4 + [1] * 4))


# --------------------------------------------------------------------------------------------
# A centre effect in a synthetic cohort


def _multicentre(seed=3, n=200):
    features, manifest, truth = synthetic_cohort(n=n, n_noise=30, seed=seed)
    rng = np.random.default_rng(seed + 100)
    centre = rng.choice(["A", "B", "C"], n, p=[0.4, 0.35, 0.25])
    manifest.df["centre"] = centre
    cols = [c for c in features.columns if "__" in c and not c.startswith("diag__")]
    shifted = features.copy()
    sd = features[cols].std()
    # centre B reads every feature 2 SD high; centre C stretches them by 1.8 and shifts them down
    shifted.loc[centre == "B", cols] = (features.loc[centre == "B", cols] + 2.0 * sd).to_numpy()
    shifted.loc[centre == "C", cols] = (1.8 * features.loc[centre == "C", cols] - 1.0 * sd).to_numpy()
    return features, shifted, manifest, truth, cols


@pytest.fixture(scope="module")
def multicentre():
    clean, shifted, manifest, truth, cols = _multicentre()
    runs = {name: train_models(f, manifest, seed=0, ground_truth=truth, repeated_splits=0, harmonise=h)
            for name, f, h in (("clean", clean, None), ("shifted", shifted, None),
                               ("combat", shifted, "combat"))}
    return clean, shifted, manifest, truth, cols, runs


def test_injected_centre_effect_is_removed(multicentre):
    clean, shifted, manifest, _, cols, _ = multicentre
    df = manifest.df.loc[shifted["patient_id"]]
    X = shifted.set_index("patient_id")[cols]
    train = pd.Series(np.arange(len(X)) % 3 != 0, index=X.index)
    harmonised, fit, protected, _ = harmonise_cohort(X, df, train, cols)
    assert protected == ["outcome"]
    centre = df["centre"].to_numpy()
    sd = clean[cols].std().to_numpy()

    def gap(frame):  # per feature, the largest difference of centre means in SDs of the clean feature
        means = np.vstack([frame[centre == c].mean().to_numpy() for c in ("A", "B", "C")])
        return np.ptp(means, axis=0) / sd
    chance = gap(clean.set_index("patient_id")[cols])  # ~70 patients a centre: gaps of chance alone
    assert np.median(gap(X)) > 1.9
    assert np.median(gap(harmonised)) < 0.3
    assert np.max(gap(harmonised)) < np.max(chance) + 0.2
    # and the spreads: centre C's 1.8x stretch is undone
    ratio = harmonised[centre == "C"].std().to_numpy() / harmonised[centre == "A"].std().to_numpy()
    assert np.median(ratio) == pytest.approx(1.0, abs=0.2)
    assert np.median(X[centre == "C"].std().to_numpy() / X[centre == "A"].std().to_numpy()) > 1.5


def test_combat_brings_the_validation_auc_back_towards_the_oracle(multicentre):
    runs = multicentre[-1]
    auc = {k: r.evaluation["validation"]["combined"]["auc"] for k, r in runs.items()}
    oracle = runs["clean"].ground_truth["oracle_auc"]
    assert auc["shifted"] < oracle - 0.08, auc        # the centre effect costs discrimination
    assert auc["combat"] > auc["shifted"] + 0.07, auc
    assert auc["combat"] > oracle - 0.05, (auc, oracle)
    assert abs(auc["combat"] - auc["clean"]) < 0.06, auc


def test_model_file_applies_combat_unchanged_in_predict(multicentre, tmp_path):
    _, shifted, manifest, _, cols, runs = multicentre
    trained = runs["combat"]
    path = tmp_path / "model.json"
    save_model(trained, path)
    model = load_model(path)
    h = model["harmonisation"]
    assert h["centres"] == ["A", "B", "C"] and h["unknown_centre"] == "refuse"
    assert set(h["features"]) == {f for n in ("RDM",) for f in model["models"][n]["features"]}
    feats = shifted.set_index("patient_id")
    clinical_cols = manifest.clinical_columns
    for pid in trained.patients.index[:40]:
        row = manifest.df.loc[pid]
        out = predict_from_features(model, feats.loc[pid].to_dict(), row[clinical_cols].to_dict(),
                                    centre=row["centre"])
        assert out["probabilities"]["RDM"] == pytest.approx(trained.patients.loc[pid, "p_RDM"], rel=1e-9)
        assert out["probabilities"]["combined"] == pytest.approx(trained.patients.loc[pid, "p_combined"],
                                                                 rel=1e-9)
    pid = trained.patients.index[0]
    with pytest.raises(InputError, match="centre 'Z' is not one the model's ComBat harmonisation knows"):
        predict_from_features(model, feats.loc[pid].to_dict(), centre="Z")
    with pytest.raises(InputError, match="centre None"):
        predict_from_features(model, feats.loc[pid].to_dict())
    # the report says what was done, per centre
    from DoseRadiomicsLib.report_trust import trust_sections, tripod_ai_items
    html = "".join(trust_sections(model))
    n_a = int((manifest.df.loc[trained.patients.index[trained.patients["cohort"] == "train"], "centre"] == "A").sum())
    assert "<h2>Harmonisation</h2>" in html and f'<td>A</td><td class="num">{n_a}</td>' in html
    assert {i[0]: i[2] for i in tripod_ai_items(model)}["12d"] == "reported"
    # the CLI takes --centre
    feats.loc[[pid]].reset_index().to_csv(tmp_path / "one.csv", index=False)
    assert cli.main(["predict", "--model", str(path), "--features", str(tmp_path / "one.csv"),
                     "--centre", str(manifest.df.loc[pid, "centre"])]) == 0


def test_unknown_centre_policy_unadjusted_warns(multicentre, tmp_path):
    _, shifted, manifest, _, _, runs = multicentre
    content = runs["combat"].to_dict()
    content["harmonisation"]["unknown_centre"] = "unadjusted"
    save_model(content, tmp_path / "m.json")
    model = load_model(tmp_path / "m.json")
    row = shifted.set_index("patient_id").iloc[0].to_dict()
    out = predict_from_features(model, row, centre="Z")
    assert any("not one the model was harmonised on" in w for w in out["warnings"])
    # a damaged block is refused on loading
    content["harmonisation"]["delta_star_sq"]["A"][0] = -1.0
    save_model_path = tmp_path / "bad.json"
    with pytest.raises(ModelFileError, match="delta_star_sq of centre 'A' must be positive"):
        save_model(content, save_model_path)


def test_train_refuses_a_validation_centre_unknown_to_training():
    features, manifest, _ = synthetic_cohort(n=150, n_noise=10, seed=4)
    manifest.df["centre"] = np.where(np.arange(150) % 2, "A", "B")
    manifest.df["split"] = "train"
    manifest.df.iloc[:10, manifest.df.columns.get_loc("centre")] = "NEW"
    manifest.df.iloc[:10, manifest.df.columns.get_loc("split")] = "validation"
    with pytest.raises(DataError, match="centre 'NEW' is not a training centre") as err:
        train_models(features, manifest, harmonise="combat", repeated_splits=0)
    assert err.value.patient == manifest.df.index[0]
    manifest.df = manifest.df.drop(columns="centre")
    with pytest.raises(DataError, match="needs the manifest's centre column"):
        train_models(features, manifest, harmonise="combat", repeated_splits=0)
