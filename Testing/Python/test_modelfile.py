"""The model file: JSON round trip, strict validation, tamper and version refusal."""

from __future__ import annotations

import json

import pytest

from DoseRadiomicsLib import modelfile
from DoseRadiomicsLib.errors import ModelFileError
from DoseRadiomicsLib.modelfile import content_checksum, load_model, save_model
from DoseRadiomicsLib.training import MODEL_NAMES, train_models
from test_training import synthetic_cohort


@pytest.fixture(scope="module")
def trained():
    features, manifest, truth = synthetic_cohort(n=140, n_noise=40, seed=5)
    return train_models(features, manifest, seed=2, ground_truth=truth, repeated_splits=3)


@pytest.fixture()
def saved(trained, tmp_path):
    path = tmp_path / "model.json"
    save_model(trained, path)
    return path


def _rewrite(path, edit, recompute=True):
    """Edit a saved model's content; recompute the checksum so only the edit is tested."""
    content = json.loads(path.read_text())
    edit(content)
    if recompute:
        content["checksum"] = content_checksum(content)
    path.write_text(json.dumps(content))


def test_round_trip(trained, saved):
    loaded = load_model(saved)
    assert loaded["schema"] == "doseradiomics-model" and loaded["schema_version"] == 1
    expected = trained.to_dict()
    for key in expected:
        assert loaded[key] == expected[key], key
    for name in MODEL_NAMES:
        m = loaded["models"][name]
        assert len(m["features"]) == len(m["coefficients"]) == len(m["min"]) == len(m["max"])
    assert loaded["risk"]["cutoff"] == trained.cutoff
    assert loaded["extraction"]["settings_hash"] == "abc123"
    assert loaded["library_versions"]["numpy"]
    # the training cohort summary and selection details are there for the report
    assert loaded["cohort"]["train"]["n"] + loaded["cohort"]["validation"]["n"] == 140
    assert loaded["selection"]["DM_50Gy"]["lasso"]["cv"]["lambdas"]
    # saving a loaded model again gives the same content
    again = save_model(loaded, saved.with_name("again.json"))
    assert again["checksum"] == loaded["checksum"]


def test_no_patient_ids_in_the_model_file(saved):
    assert "P00" not in saved.read_text()


def test_tampered_model_refused(saved):
    content = json.loads(saved.read_text())
    content["models"]["combined"]["coefficients"][0] += 0.5
    saved.write_text(json.dumps(content))
    with pytest.raises(ModelFileError, match="checksum mismatch: the model file was modified") as err:
        load_model(saved)
    assert str(saved) in str(err.value)


def test_future_version_refused_with_upgrade_hint(saved):
    _rewrite(saved, lambda c: c.update(schema_version=2))
    with pytest.raises(ModelFileError, match=r"schema version 2.*upgrade DoseRadiomics"):
        load_model(saved)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(schema="something-else"), "not a DoseRadiomics model file"),
    (lambda c: c["models"]["RDM"]["min"].pop(), r"model RDM: \d+ features but"),
    (lambda c: c["models"].pop("DM_GTV"), "model 'DM_GTV' is missing"),
    (lambda c: c["risk"].update(cutoff=1.7), "not a probability"),
    (lambda c: c["models"]["RM_GTV"].update(intercept="0.1"), "must be finite numbers"),
    (lambda c: c["models"]["RM_GTV"]["max"].__setitem__(0, -1e9), "invalid normalisation range"),
    (lambda c: c["models"]["combined"]["sources"].__setitem__(0, "python:eval"), "unknown source"),
])
def test_invalid_content_refused(saved, edit, message):
    _rewrite(saved, edit)
    with pytest.raises(ModelFileError, match=message):
        load_model(saved)


def test_non_finite_and_non_json_refused(saved, tmp_path):
    text = saved.read_text()
    content = json.loads(text)
    first = content["models"]["RDM"]["coefficients"][0]
    saved.write_text(text.replace(repr(first), "NaN", 1))
    with pytest.raises(ModelFileError, match="NaN is not allowed"):
        load_model(saved)
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\x80\x04\x95 pickle")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(bad)


def test_size_bound(saved, monkeypatch):
    monkeypatch.setattr(modelfile, "MAX_BYTES", 1000)
    with pytest.raises(ModelFileError, match="MB limit"):
        load_model(saved)


def test_missing_checksum_refused(saved):
    content = json.loads(saved.read_text())
    del content["checksum"]
    saved.write_text(json.dumps(content))
    with pytest.raises(ModelFileError, match="no checksum"):
        load_model(saved)
