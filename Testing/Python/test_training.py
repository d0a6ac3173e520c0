"""The paper's method end to end on small synthetic feature cohorts with a known signal.

``synthetic_cohort`` is shared with the model-file, prediction and report tests.
"""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest

from DoseRadiomicsLib.errors import DataError
from DoseRadiomicsLib.training import (MODEL_NAMES, encode_clinical_value, fit_clinical_coding,
                                       split_cohort, train_models)

ROIS = ("GTV", "GTV-heat", "50Gy-heat")
CLINICAL = ["age", "sex", "kps", "cea", "hb", "smoking", "diabetes", "t_stage", "n_stage", "m_stage",
            "tnm_stage", "histology", "rt_technique", "treatment_mode", "prescribed_dose"]


def synthetic_cohort(n=160, n_noise=60, seed=1, roi_names=ROIS, survival=True):
    """Features of three ROIs (3 informative + noise each), clinical variables and an outcome.

    The outcome's log-odds: 1.5 * (GTV signal) + 1.5 * (GTV-heat signal) + 2.0 * (50Gy-heat signal)
    - 0.06 * (Hb - 120) + 1.2 * (T3-4); PFS/OS shorter for resistant patients.
    Returns (features DataFrame with patient_id/settings_hash columns, manifest-like object).
    """
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n)]
    latent = rng.normal(size=(n, 3))
    hb = rng.normal(122, 17, n).round(0)
    t34 = rng.random(n) < 0.7
    logit = (1.5 * latent[:, 0] + 1.5 * latent[:, 1] + 2.0 * latent[:, 2]
             - 0.06 * (hb - 122) + 1.2 * (t34 - 0.7) + 0.3)
    outcome = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    cols = {"patient_id": ids, "settings_hash": ["abc123"] * n, "diag__slice_index": rng.integers(0, 40, n)}
    for r, roi in enumerate(roi_names):
        for k in range(3):  # informative: the latent signal plus noise, on pyradiomics-like scales
            cols[f"{roi}__original_firstorder_Signal{k}"] = 100 + 20 * (latent[:, r] + 0.3 * rng.normal(size=n))
        for k in range(n_noise):
            cols[f"{roi}__wavelet-LLH_glcm_Noise{k}"] = rng.lognormal(1.0, 0.5, n)
    features = pd.DataFrame(cols)
    stage_t = np.where(t34, rng.choice(["T3", "T4"], n), rng.choice(["T1", "T2"], n))
    m1 = rng.random(n) < 0.4
    df = pd.DataFrame({
        "outcome": outcome,
        "age": rng.normal(60, 9, n).round(0),
        "sex": rng.choice(["M", "F"], n, p=[0.8, 0.2]),
        "kps": rng.choice([70, 80, 90], n),
        "cea": rng.lognormal(1.3, 1.0, n).round(1),
        "hb": hb,
        "smoking": rng.choice(["yes", "no"], n, p=[0.6, 0.4]),
        "diabetes": rng.choice(["yes", "no"], n, p=[0.1, 0.9]),
        "t_stage": stage_t,
        "n_stage": rng.choice(["N0", "N1", "N2", "N3"], n),
        "m_stage": np.where(m1, "M1", "M0"),
        "tnm_stage": np.where(m1, "IV", rng.choice(["II", "IIIA", "IIIB"], n)),
        "histology": rng.choice(["squamous", "adenocarcinoma", "other"], n, p=[0.6, 0.35, 0.05]),
        "rt_technique": rng.choice(["IMRT", "IGRT", "3D-CRT"], n, p=[0.3, 0.6, 0.1]),
        "treatment_mode": rng.choice(["RT", "SCRT", "CCRT"], n, p=[0.2, 0.15, 0.65]),
        "prescribed_dose": rng.choice([60.0, 62.0, 64.0, 66.0], n),
    }, index=pd.Index(ids, name="patient_id"))
    if survival:
        scale = np.where(outcome == 1, 10.0, 25.0)
        for ep, f in (("pfs", 1.0), ("os", 1.8)):
            t = rng.exponential(scale * f)
            c = rng.uniform(12, 60, n)
            df[f"{ep}_months"] = np.minimum(t, c).round(2)
            df[f"{ep}_event"] = (t <= c).astype(int)
    manifest = types.SimpleNamespace(df=df, clinical_columns=list(CLINICAL), has_outcome=True,
                                     has_survival=survival)
    truth = pd.Series(1 / (1 + np.exp(-logit)), index=ids)
    return features, manifest, truth


@pytest.fixture(scope="module")
def cohort():
    return synthetic_cohort()


@pytest.fixture(scope="module")
def trained(cohort):
    features, manifest, truth = cohort
    # 8 further splits: each refits the whole method with its own LASSO CV (issue 13)
    return train_models(features, manifest, seed=3, ground_truth=truth, repeated_splits=8)


def test_split_is_stratified_seeded_7_3():
    y = pd.Series([1] * 100 + [0] * 120, index=[f"p{i}" for i in range(220)])
    a = split_cohort(y, seed=5)
    assert (a == "train").sum() == 154 and (a == "validation").sum() == 66  # the paper's 154/66
    # stratified: the event rate differs by at most one patient's worth between cohorts
    assert abs(y[a == "train"].mean() - y.mean()) < 0.01
    assert a.equals(split_cohort(y.sample(frac=1, random_state=0), seed=5).loc[a.index])  # row order irrelevant
    assert not a.equals(split_cohort(y, seed=6))


def test_six_models_recover_the_signal(trained, cohort):
    assert set(trained.models) == set(MODEL_NAMES)
    for name, roi in (("RM_GTV", "GTV"), ("DM_GTV", "GTV-heat"), ("DM_50Gy", "50Gy-heat")):
        feats = trained.models[name]["features"]
        assert feats and all(f.startswith(f"{roi}__") for f in feats)
        assert any("Signal" in f for f in feats), f"{name} missed the informative features: {feats}"
    rdm = trained.models["RDM"]["features"]
    assert set(rdm) == {f for n in ("RM_GTV", "DM_GTV", "DM_50Gy") for f in trained.models[n]["features"]}
    assert trained.models["combined"]["features"][0] == "RDM_score"
    assert "hb" in trained.models["clinical"]["features"]
    ev = trained.evaluation["validation"]
    assert ev["combined"]["auc"] > 0.75 and ev["RDM"]["auc"] > 0.7
    # ground truth: the combined model's validation AUC within 0.1 of the oracle's
    g = trained.ground_truth
    assert g["oracle_auc"] - g["combined_auc"] < 0.1
    assert trained.cohort["train"]["n"] == 112 and trained.cohort["validation"]["n"] == 48


def test_youden_cutoff_is_stats_youden_on_training_combined(trained):
    from DoseRadiomicsLib.stats.roc import youden_cutoff
    p = trained.patients
    tr = p[p["cohort"] == "train"]
    assert trained.cutoff == youden_cutoff(tr["outcome"], tr["p_combined"])
    assert ((p["p_combined"] >= trained.cutoff) == (p["risk_group"] == "high")).all()
    assert trained.evaluation["validation"]["combined"]["cutoff"] == trained.cutoff


def test_evaluation_matches_independent_computations(trained):
    from sklearn.metrics import roc_auc_score
    p = trained.patients
    for cohort_name in ("train", "validation"):
        sub = p[p["cohort"] == cohort_name]
        for name in MODEL_NAMES:
            ev = trained.evaluation[cohort_name][name]
            assert ev["auc"] == pytest.approx(roc_auc_score(sub["outcome"], sub[f"p_{name}"]), abs=1e-12)
            assert ev["ci_low"] <= ev["auc"] <= ev["ci_high"]
            c = ev["classification"]
            pos = sub[f"p_{name}"] >= ev["cutoff"]
            assert c["tp"] == int((pos & (sub["outcome"] == 1)).sum())
            assert c["tn"] == int((~pos & (sub["outcome"] == 0)).sum())
            assert ev["brier"] == pytest.approx(((sub[f"p_{name}"] - sub["outcome"]) ** 2).mean())
    pairs = {(c["cohort"], c["model_a"], c["model_b"]) for c in trained.comparisons}
    assert ("validation", "RDM", "combined") in pairs and ("train", "RDM", "DM_50Gy") in pairs


def test_survival_stratification(trained, cohort):
    from lifelines.statistics import logrank_test
    df = cohort[1].df
    ep = trained.survival["endpoints"]
    assert set(ep) == {"pfs", "os"} and set(ep["pfs"]) == {"train", "validation"}
    for endpoint in ("pfs", "os"):
        for cohort_name in ("train", "validation"):
            s = ep[endpoint][cohort_name]
            p = trained.patients[trained.patients["cohort"] == cohort_name]
            high = p.index[p["risk_group"] == "high"]
            low = p.index[p["risk_group"] == "low"]
            assert s["groups"]["high"]["n"] == len(high) and s["groups"]["low"]["n"] == len(low)
            assert s["groups"]["high"]["at_risk"][0] == len(high)
            ref = logrank_test(df.loc[high, f"{endpoint}_months"], df.loc[low, f"{endpoint}_months"],
                               df.loc[high, f"{endpoint}_event"], df.loc[low, f"{endpoint}_event"])
            assert s["logrank"]["p"] == pytest.approx(ref.p_value, rel=1e-6)
    assert ep["pfs"]["train"]["cox"]["hr"] > 1  # resistant patients progress sooner


def test_survival_skipped_without_columns():
    features, manifest, _ = synthetic_cohort(n=120, n_noise=20, survival=False)
    t = train_models(features, manifest, seed=1)
    assert t.survival["endpoints"] == {}
    assert any("PFS" in n for n in t.notes)


def test_no_leakage_validation_rows_do_not_change_the_fit(cohort, trained):
    """Scramble the validation patients' features and outcomes: nothing fitted may change."""
    features, manifest, truth = cohort
    val = trained.patients.index[trained.patients["cohort"] == "validation"]
    rng = np.random.default_rng(0)
    f2 = features.set_index("patient_id").copy()
    fcols = [c for c in f2.columns if "__" in c and not c.startswith("diag__")]
    f2.loc[val, fcols] = f2.loc[val, fcols].to_numpy() * rng.uniform(0.1, 10, (len(val), len(fcols))) + 1000
    m2 = types.SimpleNamespace(**vars(manifest))
    m2.df = manifest.df.copy()
    m2.df.loc[val, "outcome"] = 1 - m2.df.loc[val, "outcome"]
    m2.df.loc[val, "hb"] = 40.0
    m2.df.loc[val, "histology"] = "other"
    m2.df["split"] = trained.patients["cohort"].reindex(m2.df.index)
    t2 = train_models(f2.reset_index(), m2, seed=3)
    for name in MODEL_NAMES:
        a, b = trained.models[name], t2.models[name]
        assert a["features"] == b["features"], name
        assert a["min"] == b["min"] and a["max"] == b["max"], name
        np.testing.assert_allclose(a["coefficients"], b["coefficients"], rtol=1e-10, err_msg=name)
        assert a["intercept"] == pytest.approx(b["intercept"], rel=1e-10)
    assert trained.cutoff == t2.cutoff
    assert trained.clinical_coding == t2.clinical_coding
    assert trained.evaluation["train"]["combined"]["auc"] == t2.evaluation["train"]["combined"]["auc"]
    assert trained.evaluation["validation"]["combined"]["auc"] != t2.evaluation["validation"]["combined"]["auc"]


def test_one_class_and_too_few_events_are_clear_errors(cohort):
    features, manifest, _ = cohort
    m = types.SimpleNamespace(**vars(manifest))
    m.df = manifest.df.assign(outcome=1)
    with pytest.raises(DataError, match="only one outcome class"):
        train_models(features, m)
    m.df = manifest.df.assign(outcome=0)
    m.df.iloc[:12, m.df.columns.get_loc("outcome")] = 1  # 12 events: ~8 in training
    with pytest.raises(DataError, match=r"10-fold cross-validation .* needs at least 10 of each") as err:
        train_models(features, m)
    assert "add patients" in str(err.value)


def test_clinical_encodings():
    t = {"kind": "binary", "encoded": "t_stage_T3_4"}
    assert [encode_clinical_value("t_stage", v, t)["t_stage_T3_4"] for v in ("T1", "T2b", "cT3", "4", "T4a")] == \
        [0, 0, 1, 1, 1]
    assert encode_clinical_value("t_stage", "", t) is None
    with pytest.raises(ValueError, match="not recognised"):
        encode_clinical_value("t_stage", "big", t)
    tnm = {"kind": "ordinal", "encoded": "tnm_stage"}
    assert [encode_clinical_value("tnm_stage", v, tnm)["tnm_stage"] for v in ("IIB", "IIIA", "Stage IV", "I")] == \
        [1, 2, 3, 1]
    raw = pd.DataFrame({"histology": ["squamous"] * 5 + ["adeno"] * 3 + ["Other"],
                        "sex": ["M"] * 6 + ["F"] * 3, "hb": [120, None, 130, 110, 100, 90, 140, 125, 115]})
    coding, _ = fit_clinical_coding(raw, ["histology", "sex", "hb"])
    assert coding["histology"]["reference"] == "squamous"  # the most frequent level
    assert coding["histology"]["encoded"] == ["histology_adeno", "histology_other"]
    assert coding["sex"]["encoded"] == "sex_female"
    assert coding["hb"]["impute"] == 117.5  # training median


def test_train_command_with_a_manifest_file(tmp_path, capsys):
    """``doseradiomics train`` on CSV files read by the real manifest reader."""
    from DoseRadiomicsLib import cli
    from DoseRadiomicsLib.modelfile import load_model
    features, manifest, truth = synthetic_cohort(n=130, n_noise=20, seed=21)
    df = manifest.df.copy()
    for col in ("ct", "dose", "gtv"):
        df[col] = [f"images/{p}/{col}.nrrd" for p in df.index]
    df.to_csv(tmp_path / "manifest.csv", index_label="patient_id")
    features.to_csv(tmp_path / "features.csv", index=False)
    truth.rename("true_p").to_csv(tmp_path / "ground_truth.csv", index_label="patient_id")
    args = ["train", "--features", str(tmp_path / "features.csv"), "--manifest", str(tmp_path / "manifest.csv"),
            "--out", str(tmp_path / "model.json"), "--seed", "4", "--lasso-rule", "min",
            "--ground-truth", str(tmp_path / "ground_truth.csv"), "--predictions", str(tmp_path / "p.csv"),
            "--repeated-splits", "2"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    model = load_model(tmp_path / "model.json")
    auc = model["evaluation"]["validation"]["combined"]["auc"]
    assert f"combined   validation  {auc:.3f}" in out
    assert "oracle" in out and model["ground_truth"]["oracle_auc"] > 0.8
    rs = model["ground_truth"]["repeated_splits"]
    assert rs["seeds"] == [5, 6]
    assert f"over 2 further random splits: validation AUC combined median {rs['summary']['combined_auc']['median']:.3f}" \
        in out
    assert model["settings"]["lasso_rule"] == "min" and model["settings"]["seed"] == 4
    preds = pd.read_csv(tmp_path / "p.csv", dtype={"patient_id": str}).set_index("patient_id")
    assert len(preds) == 130 and set(preds["cohort"]) == {"train", "validation"}
    # the manifest's normalised values (flags 0/1, sex M/F) are encoded like the raw ones
    assert model["clinical_coding"]["smoking"]["encoded"] == "smoking_yes"


def test_repeated_split_assessment_of_the_ground_truth_recovery(trained, cohort):
    """8 further splits (each refitting everything): per split the oracle AUC is the truth's AUC in that split's validation
    cohort (checked with scikit-learn), the summary is their median/IQR, and the recovery claim
    (oracle - combined < 0.1) holds for the median split."""
    from sklearn.metrics import roc_auc_score
    _, manifest, truth = cohort
    rs = trained.ground_truth["repeated_splits"]
    assert rs["seeds"] == list(range(4, 12))  # main seed 3, then 8 further ones
    y = manifest.df["outcome"]
    for i in (0, 7):
        split = split_cohort(y, seed=rs["seeds"][i])
        val = split.index[split == "validation"]
        assert rs["n_validation"][i] == len(val) == 48
        assert rs["oracle_auc"][i] == pytest.approx(roc_auc_score(y[val], truth[val]), abs=1e-12)
    np.testing.assert_allclose(rs["difference"], np.subtract(rs["oracle_auc"], rs["combined_auc"]))
    for key in ("combined_auc", "oracle_auc", "difference"):
        q1, med, q3 = np.percentile(rs[key], [25, 50, 75])
        assert rs["summary"][key] == pytest.approx({"median": med, "q1": q1, "q3": q3})
    assert len(set(rs["combined_auc"])) > 5  # the splits really differ
    # each split refits everything (clinical predictors, imputation, LASSO with its own CV): its AUC is
    # exactly that of a full training run given that split and seed
    features, _, _ = cohort
    m = types.SimpleNamespace(**vars(manifest))
    m.df = manifest.df.assign(split=split_cohort(y, seed=rs["seeds"][0]))
    again = train_models(features, m, seed=rs["seeds"][0], repeated_splits=0)
    assert rs["combined_auc"][0] == pytest.approx(again.evaluation["validation"]["combined"]["auc"], abs=1e-12)
    assert rs["summary"]["difference"]["median"] < 0.1 and rs["within_0_1"] >= 0.5
    assert rs["summary"]["combined_auc"]["median"] > 0.75


def test_separation_is_detected_warned_recorded_and_firth_offered(tmp_path, capsys):
    """An outcome that one GTV feature predicts exactly: the ML fit is flagged (model file, console,
    report), every model records its events per variable, and --penalised firth gives finite estimates."""
    from DoseRadiomicsLib import cli
    from DoseRadiomicsLib.modelfile import load_model
    from DoseRadiomicsLib.report import render_report
    features, manifest, _ = synthetic_cohort(n=90, n_noise=4, seed=5)
    signal = features.set_index("patient_id")["GTV__original_firstorder_Signal0"]
    df = manifest.df.assign(outcome=(signal > signal.median()).astype(int).reindex(manifest.df.index))
    for col in ("ct", "dose", "gtv"):
        df[col] = [f"images/{p}/{col}.nrrd" for p in df.index]
    df.to_csv(tmp_path / "manifest.csv", index_label="patient_id")
    features.to_csv(tmp_path / "features.csv", index=False)
    base = ["train", "--features", str(tmp_path / "features.csv"), "--manifest", str(tmp_path / "manifest.csv"),
            "--seed", "1"]
    assert cli.main(base + ["--out", str(tmp_path / "ml.json")]) == 0
    out = capsys.readouterr().out
    ml = load_model(tmp_path / "ml.json")
    rm = ml["models"]["RM_GTV"]
    assert rm["separation"]["separation"] and rm["fit_method"].startswith("maximum likelihood")
    assert "warning: RM_GTV: (quasi-)complete separation" in out and "--penalised firth" in out
    assert any(w.startswith("RM_GTV: (quasi-)complete separation") for w in ml["warnings"])
    n_minority = min(ml["cohort"]["train"]["events"], ml["cohort"]["train"]["n"] - ml["cohort"]["train"]["events"])
    for name in MODEL_NAMES:
        epv = ml["models"][name]["events_per_variable"]
        assert epv["minority_class_n"] == n_minority and epv["inputs"] == len(ml["models"][name]["features"])
    assert "events per variable (minority class / model inputs): " in out
    assert "Events per variable and separation" in render_report(ml)
    assert cli.main(base + ["--out", str(tmp_path / "firth.json"), "--penalised", "firth"]) == 0
    out = capsys.readouterr().out
    firth = load_model(tmp_path / "firth.json")
    fr = firth["models"]["RM_GTV"]
    assert fr["fit_method"] == "Firth" and fr["features"] == rm["features"]
    assert fr["separation"]["separation"]                      # the data still separate; the fit copes
    assert max(map(abs, fr["coefficients"])) < max(map(abs, rm["coefficients"]))
    assert "the Firth fit is used" in out and firth["settings"]["penalised"] == "firth"
    assert "Firth" in firth["settings"]["fit_description"]
