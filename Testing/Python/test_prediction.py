"""Predicting one patient from a model file: reproduces training, refuses mismatched settings."""

from __future__ import annotations

import json

import numpy as np

import pandas as pd
import pytest

from DoseRadiomicsLib import cli
from DoseRadiomicsLib.errors import ModelFileError
from DoseRadiomicsLib.modelfile import load_model, save_model
from DoseRadiomicsLib.prediction import predict_from_features, predict_from_images
from DoseRadiomicsLib.training import MODEL_NAMES, train_models
from test_training import CLINICAL, synthetic_cohort


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    features, manifest, truth = synthetic_cohort(n=150, n_noise=40, seed=7)
    trained = train_models(features, manifest, seed=1)
    path = tmp_path_factory.mktemp("model") / "model.json"
    save_model(trained, path)
    return features, manifest, trained, path


def _patient(features, manifest, pid):
    row = features.set_index("patient_id").loc[pid].to_dict()
    clinical = {c: manifest.df.loc[pid, c] for c in CLINICAL}
    return row, clinical


def test_training_patients_reproduced(setup):
    features, manifest, trained, path = setup
    model = load_model(path)
    assert len(model["models"]["clinical"]["features"]) >= 1  # the combined model needs clinical input
    for cohort_name in ("train", "validation"):
        ids = trained.patients.index[trained.patients["cohort"] == cohort_name][:5]
        for pid in ids:
            row, clinical = _patient(features, manifest, pid)
            out = predict_from_features(model, row, clinical)
            assert out["missing"] == []
            for name in MODEL_NAMES:
                assert out["probabilities"][name] == pytest.approx(trained.patients.loc[pid, f"p_{name}"],
                                                                   abs=1e-9), (pid, name)
            assert out["risk_group"] == trained.patients.loc[pid, "risk_group"]
            assert out["cutoff"] == trained.cutoff


def test_missing_clinical_gives_no_risk_group(setup):
    features, manifest, trained, path = setup
    model = load_model(path)
    pid = trained.patients.index[0]
    row, _ = _patient(features, manifest, pid)
    out = predict_from_features(model, row, {})
    assert set(out["probabilities"]) == {"RM_GTV", "DM_GTV", "DM_50Gy", "RDM"}
    assert out["risk_group"] is None and out["combined_probability"] is None
    assert "hb" in out["missing"]
    assert any("no risk group" in w for w in out["warnings"])
    # a missing feature: its models are not computed, the feature is named
    feat = model["models"]["DM_50Gy"]["features"][0]
    del row[feat]
    out = predict_from_features(model, row, {c: manifest.df.loc[pid, c] for c in CLINICAL})
    assert feat in out["missing"] and "DM_50Gy" not in out["probabilities"] and "RDM" not in out["probabilities"]
    assert out["risk_group"] is None


def test_out_of_range_feature_warns(setup):
    features, manifest, trained, path = setup
    model = load_model(path)
    pid = trained.patients.index[0]
    row, clinical = _patient(features, manifest, pid)
    feat = model["models"]["RM_GTV"]["features"][0]
    lo, hi = model["models"]["RM_GTV"]["min"][0], model["models"]["RM_GTV"]["max"][0]
    # normalised value 3: outside the training range, but not so far that the log-odds is extreme
    # (beyond +-40 that is an error, not a warning: test_models_hardening)
    row[feat] = hi + 2 * (hi - lo)
    out = predict_from_features(model, row, clinical)
    assert any(feat in w and "outside the training range" in w for w in out["warnings"])


def test_predict_command_from_features(setup, tmp_path, capsys):
    features, manifest, trained, path = setup
    pid = trained.patients.index[3]
    csv = tmp_path / "features.csv"
    features.to_csv(csv, index=False)
    out = tmp_path / "prediction.json"
    args = ["predict", "--model", str(path), "--features", str(csv), "--patient", pid, "--out", str(out),
            "--clinical"] + [f"{c}={manifest.df.loc[pid, c]}" for c in CLINICAL]
    assert cli.main(args) == 0
    result = json.loads(out.read_text())
    assert result["patient_id"] == pid
    assert result["probabilities"]["combined"] == pytest.approx(trained.patients.loc[pid, "p_combined"], abs=1e-9)
    assert "risk group:" in capsys.readouterr().out


def test_mismatched_settings_hash_refused(setup, tmp_path, capsys):
    features, manifest, trained, path = setup
    csv = tmp_path / "features.csv"
    features.assign(settings_hash="0ther5ettings").to_csv(csv, index=False)
    assert cli.main(["predict", "--model", str(path), "--features", str(csv), "--patient", "P001"]) == 1
    err = capsys.readouterr().err
    assert "settings hash mismatch" in err and "abc123" in err and "0ther5ettings" in err


def test_images_refused_before_extraction_when_settings_differ(setup, monkeypatch):
    pipeline = pytest.importorskip("DoseRadiomicsLib.pipeline")
    _, _, _, path = setup
    model = load_model(path)
    called = []
    monkeypatch.setattr(pipeline, "options_settings_hash", lambda options: "not-abc123")
    monkeypatch.setattr(pipeline, "extract_patient", lambda *a, **k: called.append(1))
    with pytest.raises(ModelFileError, match="settings hash mismatch.*abc123.*not-abc123"):
        predict_from_images(model, "ct.nrrd", "dose.nrrd", "gtv.nrrd", model_path=path)
    assert not called


def test_tampered_model_refused_by_predict(setup, tmp_path, capsys):
    _, _, _, path = setup
    content = json.loads(path.read_text())
    content["risk"]["cutoff"] = 0.01
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(content))
    csv = tmp_path / "f.csv"
    pd.DataFrame({"patient_id": ["x"], "settings_hash": ["abc123"]}).to_csv(csv, index=False)
    assert cli.main(["predict", "--model", str(bad), "--features", str(csv)]) == 1
    assert "checksum mismatch" in capsys.readouterr().err


def test_every_training_patients_risk_group_from_predict_is_its_training_group(setup):
    """The cut-off lies midway between two training scores (pROC's rule), so the CLI path's scalar
    arithmetic, a few ulps away from training's vectorised one, cannot move a patient across it."""
    features, manifest, trained, path = setup
    model = load_model(path)
    tr = trained.patients[trained.patients["cohort"] == "train"]
    scores = np.sort(tr["p_combined"].to_numpy())
    assert trained.cutoff not in scores
    below, above = scores[scores < trained.cutoff].max(), scores[scores >= trained.cutoff].min()
    assert trained.cutoff == pytest.approx((below + above) / 2, rel=1e-12)
    for pid in tr.index:
        row, clinical = _patient(features, manifest, pid)
        assert predict_from_features(model, row, clinical)["risk_group"] == tr.loc[pid, "risk_group"], pid
