"""Models and predictions that cannot print nonsense (issue 12, Build 4).

- a model whose log-odds for a patient is extreme or not finite is an error (exit 1, one line), never
  ``P = nan`` classified "low risk", and ``--out`` is not written;
- ``predict --features`` reads with train's checked reader: empty, binary, UTF-16 and broken-quote
  files are one-line errors (the encoding named), a BOM and CRLF are accepted;
- ``train`` refuses a one-class validation cohort before writing anything (the previous model stays).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from DoseRadiomicsLib import cli
from DoseRadiomicsLib.modelfile import load_model, save_model
from DoseRadiomicsLib.training import train_models

from test_training import synthetic_cohort


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    features, manifest, truth = synthetic_cohort(n=100, n_noise=8, seed=4)
    model = d / "model.json"
    save_model(train_models(features, manifest, seed=1), model)
    features.to_csv(d / "features.csv", index=False)
    df = manifest.df.copy()
    for col in ("ct", "dose", "gtv"):
        df[col] = [f"images/{p}/{col}.nrrd" for p in df.index]
    return d, model, features, df


def one_error(capsys, argv, *needles) -> str:
    capsys.readouterr()
    rc = cli.main(argv)
    captured = capsys.readouterr()
    assert rc == 1, captured
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in captured.err, lines
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert "risk group" not in captured.out and "nan" not in captured.out.lower()
    return lines[0]


@pytest.mark.parametrize("coefficient", [1e6, 1e300])
def test_extreme_coefficients_are_an_error_not_a_risk_group(coefficient, setup, tmp_path, capsys):
    d, model, features, _ = setup
    content = json.loads(model.read_text())
    rdm = content["models"]["RDM"]
    rdm["coefficients"] = [coefficient] * len(rdm["coefficients"])
    edited = tmp_path / "extreme.json"
    save_model(content, edited)           # a valid checksum: the file itself is well formed
    load_model(edited)
    out = tmp_path / "prediction.json"
    line = one_error(capsys, ["predict", "--model", str(edited), "--features", str(d / "features.csv"),
                              "--patient", "P001", "--out", str(out)], "model RDM", "log-odds")
    assert "indistinguishable from 0 or 1" in line
    assert not out.exists()


def test_the_unedited_model_still_predicts(setup, tmp_path, capsys):
    d, model, _, _ = setup
    assert cli.main(["predict", "--model", str(model), "--features", str(d / "features.csv"), "--patient", "P001",
                     "--out", str(tmp_path / "p.json")]) == 0
    out = json.loads((tmp_path / "p.json").read_text())
    assert all(np.isfinite(list(out["probabilities"].values())))


CSV = "patient_id,settings_hash,GTV__x\nP001,abc123,1.0\n"


@pytest.mark.parametrize("name,data,needles", [
    ("empty", b"", ["cannot read the features table as CSV"]),
    ("binary", bytes(range(256)) * 20, ["not UTF-8 text"]),
    ("utf16", CSV.encode("utf-16"), ["not UTF-8 text", "byte 0"]),
    ("broken-quote", b'patient_id,settings_hash,GTV__x\n"P001,abc123,1.0\n', ["cannot read the features table"]),
])
def test_predict_features_bad_files(name, data, needles, setup, tmp_path, capsys):
    _, model, _, _ = setup
    f = tmp_path / f"{name}.csv"
    f.write_bytes(data)
    one_error(capsys, ["predict", "--model", str(model), "--features", str(f), "--patient", "P001"], str(f), *needles)


def test_predict_features_accepts_a_bom_and_crlf(setup, tmp_path, capsys):
    d, model, _, _ = setup
    text = (d / "features.csv").read_text(encoding="utf-8")
    f = tmp_path / "excel.csv"
    f.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    capsys.readouterr()
    assert cli.main(["predict", "--model", str(model), "--features", str(f), "--patient", "P001"]) == 0
    assert "risk group" in capsys.readouterr().out


def test_train_refuses_a_one_class_validation_cohort_before_writing(setup, tmp_path, capsys):
    d, _, _, df = setup
    df = df.copy()
    split = np.array(["train"] * len(df), dtype=object)
    split[np.nonzero(df["outcome"].to_numpy() == 0)[0][:25]] = "validation"
    df["split"] = split
    df.to_csv(tmp_path / "manifest.csv", index_label="patient_id")
    previous = tmp_path / "model.json"
    previous.write_text("previous model\n")
    one_error(capsys, ["train", "--features", str(d / "features.csv"), "--manifest", str(tmp_path / "manifest.csv"),
                       "--out", str(previous)], "validation cohort has only sensitive patients (25)")
    assert previous.read_text() == "previous model\n"
