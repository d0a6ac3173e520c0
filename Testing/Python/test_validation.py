"""``doseradiomics validate`` on synthetic external cohorts whose truth is known.

The development cohort and the external cohorts come from the same generator (``synthetic_cohort``:
another seed is another sample of the same population, so its oracle AUC is known); a "shifted
centre" reads every feature higher by a fixed offset, as a scanner or a planning system of another
hospital would. The figures are checked against independent computations: scikit-learn's AUC and
Brier score, statsmodels' logistic recalibration, lifelines' log-rank test, and the ``predict``
command run on single patients.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from DoseRadiomicsLib import cli
from DoseRadiomicsLib.modelfile import load_model, save_model
from DoseRadiomicsLib.training import MODEL_NAMES, train_models
from DoseRadiomicsLib.validation import validate_cohort
from test_training import synthetic_cohort


def _external(seed, n=160, shift=0.0, centre="X"):
    """Another sample of the development population, ids E000..., optionally at a shifted centre."""
    features, manifest, truth = synthetic_cohort(n=n, n_noise=30, seed=seed)
    ids = {p: "E" + p[1:] for p in features["patient_id"]}
    features["patient_id"] = features["patient_id"].map(ids)
    manifest.df.index = manifest.df.index.map(ids)
    truth.index = truth.index.map(ids)
    manifest.df["centre"] = centre
    if shift:
        cols = [c for c in features.columns if "__" in c and not c.startswith("diag__")]
        features[cols] = features[cols] + shift * features[cols].std()
    return features, manifest, truth


def _write(folder, features, manifest, truth):
    folder.mkdir(parents=True, exist_ok=True)
    features.to_csv(folder / "features.csv", index=False)
    df = manifest.df.copy()
    df.insert(0, "ct", "ct.nrrd")
    df.insert(1, "dose", "dose.nrrd")
    df.insert(2, "gtv", "gtv.nrrd")
    df["dose_unit"] = "Gy"
    df.to_csv(folder / "manifest.csv", index_label="patient_id")
    truth.rename("true_p").to_csv(folder / "ground_truth.csv", index_label="patient_id")
    return folder


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    features, manifest, truth = synthetic_cohort(n=200, n_noise=30, seed=1)
    trained = train_models(features, manifest, seed=0, ground_truth=truth, repeated_splits=0)
    folder = tmp_path_factory.mktemp("validate")
    save_model(trained, folder / "model.json")
    return folder, load_model(folder / "model.json")


@pytest.fixture(scope="module")
def runs(dev):
    folder, _ = dev
    out = {}
    for name, kw in (("same", {}), ("shifted", {"shift": 1.0})):
        cohort = _write(folder / name, *_external(seed=21, **kw))
        args = ["validate", "--model", str(folder / "model.json"), "--features", str(cohort / "features.csv"),
                "--manifest", str(cohort / "manifest.csv"), "--ground-truth", str(cohort / "ground_truth.csv"),
                "--recalibrate", "--out", str(cohort / "out")]
        assert cli.main(args) == 0
        out[name] = (cohort, json.loads((cohort / "out" / "validation.json").read_text()),
                     pd.read_csv(cohort / "out" / "predictions.csv", dtype={"patient_id": str}).set_index("patient_id"))
    return out


def test_external_auc_is_near_the_known_oracle(runs):
    from sklearn.metrics import roc_auc_score
    cohort, result, _ = runs["same"]
    truth = pd.read_csv(cohort / "ground_truth.csv", dtype={"patient_id": str}).set_index("patient_id")["true_p"]
    y = pd.read_csv(cohort / "manifest.csv", dtype={"patient_id": str}).set_index("patient_id")["outcome"]
    oracle = roc_auc_score(y, truth.loc[y.index])
    gt = result["ground_truth"]
    assert gt["n"] == 160 and gt["oracle_auc"] == pytest.approx(oracle, abs=1e-12)
    comb = result["evaluation"]["combined"]
    # the fitted model is below the ceiling (200 development patients, 90 candidate features a ROI)
    assert 0 < gt["oracle_auc"] - comb["auc"] < 0.12, (comb["auc"], gt["oracle_auc"])
    assert comb["auc"] > 0.8
    assert comb["ci_low"] < gt["oracle_auc"] < 1.0
    # same population: the external AUC is within sampling error of the development validation split's
    dev_auc = result["development"]["combined"]["validation"]["auc"]
    assert abs(comb["auc"] - dev_auc) < 0.1


def test_figures_agree_with_independent_computations(runs, dev):
    from sklearn.metrics import brier_score_loss, roc_auc_score
    cohort, result, pred = runs["same"]
    y = pred["outcome"].to_numpy()
    for name in MODEL_NAMES:
        p = pred[f"p_{name}"].to_numpy()
        ev = result["evaluation"][name]
        assert ev["n"] == 160
        assert ev["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert ev["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
        # classification at the model's TRAINING cut-off, not one chosen on this cohort
        cut = dev[1]["evaluation"]["train"][name]["cutoff"]
        assert result["cutoffs"][name] == cut
        high = p >= cut
        assert ev["classification"]["sensitivity"] == pytest.approx(high[y == 1].mean())
        assert ev["classification"]["specificity"] == pytest.approx((~high[y == 0]).mean())
    # risk groups: the combined model's cut-off; log-rank against lifelines
    from lifelines.statistics import logrank_test
    assert set(pred["risk_group"]) == {"high", "low"}
    assert ((pred["p_combined"] >= dev[1]["risk"]["cutoff"]) == (pred["risk_group"] == "high")).all()
    man = pd.read_csv(cohort / "manifest.csv", dtype={"patient_id": str}).set_index("patient_id").loc[pred.index]
    hi = (pred["risk_group"] == "high").to_numpy()
    ref = logrank_test(man["pfs_months"][hi], man["pfs_months"][~hi], man["pfs_event"][hi], man["pfs_event"][~hi])
    assert result["survival"]["endpoints"]["pfs"]["logrank"]["p"] == pytest.approx(ref.p_value, rel=1e-6)
    # predict on single patients gives the same probabilities
    for pid in pred.index[:3]:
        out = cohort / f"{pid}.json"
        clinical = [f"{c}={man.at[pid, c]}" for c in ("hb", "t_stage", "age", "kps", "cea", "sex", "smoking",
                                                     "diabetes", "n_stage", "m_stage", "tnm_stage", "histology",
                                                     "rt_technique", "treatment_mode", "prescribed_dose")]
        assert cli.main(["predict", "--model", str(dev[0] / "model.json"), "--features",
                         str(cohort / "features.csv"), "--patient", pid, "--clinical", *clinical,
                         "--out", str(out)]) == 0
        single = json.loads(out.read_text())
        for name in MODEL_NAMES:
            assert single["probabilities"][name] == pytest.approx(pred.at[pid, f"p_{name}"], rel=1e-12)


def test_a_shifted_centre_keeps_ranking_but_loses_calibration(runs):
    import statsmodels.api as sm
    _, same, _ = runs["same"]
    _, shifted, pred = runs["shifted"]
    for name in ("RM_GTV", "DM_GTV", "DM_50Gy", "RDM"):
        # a constant offset on every feature adds a constant to a linear model's log-odds: same ranking
        assert shifted["evaluation"][name]["auc"] == pytest.approx(same["evaluation"][name]["auc"], abs=1e-12)
    # ... but its probabilities are off: calibration-in-the-large moves away from 0
    a_same = abs(same["evaluation"]["RDM"]["calibration_slope"]["intercept_in_the_large"])
    a_shift = abs(shifted["evaluation"]["RDM"]["calibration_slope"]["intercept_in_the_large"])
    assert a_shift > a_same + 0.5, (a_same, a_shift)
    assert shifted["evaluation"]["RDM"]["brier"] > same["evaluation"]["RDM"]["brier"]
    # the recalibration fitted on this cohort is statsmodels' logistic fit of y on logit(p)
    p = pred["p_RDM"].clip(1e-15, 1 - 1e-15)
    fit = sm.GLM(pred["outcome"], sm.add_constant(np.log(p / (1 - p))), family=sm.families.Binomial()).fit()
    rec = shifted["recalibrated"]["RDM"]
    assert rec["recalibration"]["intercept"] == pytest.approx(fit.params.iloc[0], rel=1e-6)
    assert rec["recalibration"]["slope"] == pytest.approx(fit.params.iloc[1], rel=1e-6)
    # apparent: the recalibrated model is perfectly calibrated on the cohort it was fitted on
    assert rec["calibration_slope"]["slope"] == pytest.approx(1.0, abs=1e-6)
    assert rec["calibration_slope"]["intercept"] == pytest.approx(0.0, abs=1e-6)
    assert rec["brier"] < shifted["evaluation"]["RDM"]["brier"]
    assert rec["auc"] == pytest.approx(shifted["evaluation"]["RDM"]["auc"], abs=1e-12)
    # the classification does not change: the cut-off is carried through the same monotone map
    assert rec["classification"] == pytest.approx(shifted["evaluation"]["RDM"]["classification"])


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.text, self.scripts = 0, [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            assert dict(attrs)["src"].startswith("data:image/png;base64,")
            self.images += 1
        self.scripts += tag == "script"

    def handle_data(self, data):
        self.text.append(data)


def test_validation_report_html(runs):
    cohort, result, _ = runs["shifted"]
    page = _Page()
    page.feed((cohort / "out" / "validation.html").read_text())
    text = " ".join(page.text)
    assert page.images >= 6 and page.scripts == 0  # ROC, calibration x2, DCA, KM PFS and OS
    assert "External − development validation AUC" in text
    assert f"{result['evaluation']['combined']['auc']:.3f}" in text
    assert "Logistic recalibration fitted on the external cohort (reported separately)" in text
    assert f"{result['ground_truth']['oracle_auc']:.3f}" in text


def test_refuses_features_of_other_settings(dev, tmp_path, capsys):
    folder, model = dev
    features, manifest, truth = _external(seed=22, n=60)
    features["settings_hash"] = "deadbeef"
    cohort = _write(tmp_path / "other", features, manifest, truth)
    rc = cli.main(["validate", "--model", str(folder / "model.json"), "--features", str(cohort / "features.csv"),
                   "--manifest", str(cohort / "manifest.csv"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "settings hash mismatch" in err and "deadbeef" in err and "abc123" in err
    assert not (tmp_path / "out").exists()


def test_harmonised_model_validates_a_known_centre_and_refuses_an_unknown_one(tmp_path):
    from DoseRadiomicsLib.errors import InputError
    features, manifest, truth = synthetic_cohort(n=200, n_noise=30, seed=5)
    centre = np.where(np.arange(200) % 2, "A", "B")
    manifest.df["centre"] = centre
    cols = [c for c in features.columns if "__" in c and not c.startswith("diag__")]
    sd = features[cols].std()
    features.loc[centre == "B", cols] = (features.loc[centre == "B", cols] + 1.5 * sd).to_numpy()
    trained = train_models(features, manifest, seed=0, repeated_splits=0, harmonise="combat")
    save_model(trained, tmp_path / "model.json")
    model = load_model(tmp_path / "model.json")
    # an external sample of centre B, with B's offset: harmonised as B, it keeps its discrimination
    ext, ext_manifest, ext_truth = _external(seed=23, n=120, centre="B")
    ext[cols] = (ext[cols] + 1.5 * sd).to_numpy()
    result = validate_cohort(model, ext, ext_manifest, ground_truth=ext_truth)
    assert result["harmonisation"]["cohort_centres_unknown_to_model"] == []
    assert result["ground_truth"]["oracle_auc"] - result["evaluation"]["combined"]["auc"] < 0.1
    # the same patients said to come from centre A are miscalibrated (B's offset left in)
    ext_manifest.df["centre"] = "A"
    wrong = validate_cohort(model, ext, ext_manifest)
    assert (abs(wrong["evaluation"]["RDM"]["calibration_slope"]["intercept_in_the_large"])
            > abs(result["evaluation"]["RDM"]["calibration_slope"]["intercept_in_the_large"]) + 0.5)
    ext_manifest.df["centre"] = "NEW"
    with pytest.raises(InputError, match="centre 'NEW' is not one the model's ComBat harmonisation knows") as err:
        validate_cohort(model, ext, ext_manifest)
    assert err.value.patient == "E000"


def test_refuses_a_features_table_without_the_models_features(dev, tmp_path, capsys):
    folder, model = dev
    features, manifest, truth = _external(seed=24, n=60)
    used = model["models"]["RDM"]["features"][0]
    cohort = _write(tmp_path / "lacking", features.drop(columns=used), manifest, truth)
    rc = cli.main(["validate", "--model", str(folder / "model.json"), "--features", str(cohort / "features.csv"),
                   "--manifest", str(cohort / "manifest.csv"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "lacks 1 feature(s) the model uses" in err and used in err and "features.csv" in err
