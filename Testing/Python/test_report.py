"""The HTML report: produced from a model file, parses, shows the models' numbers, escapes data."""

from __future__ import annotations

import html
from pathlib import Path
from html.parser import HTMLParser

import pytest

from DoseRadiomicsLib import cli
from DoseRadiomicsLib.modelfile import load_model, save_model
from DoseRadiomicsLib.report import write_report
from DoseRadiomicsLib.training import MODEL_NAMES, train_models
from test_training import synthetic_cohort

EVIL = "<script>alert(1)</script>"


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text, self.images, self.scripts = [], [], 0, 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            src = dict(attrs).get("src", "")
            assert src.startswith("data:image/png;base64,"), "figures must be embedded"
            self.images += 1
        if tag == "script":
            self.scripts += 1

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    # a ROI whose name carries markup: it must show as text, never run
    rois = ("GTV", "GTV-heat", EVIL)
    features, manifest, truth = synthetic_cohort(n=140, n_noise=30, seed=11, roi_names=rois)
    manifest.df["histology"] = manifest.df["histology"].replace("other", "<b>other</b>")
    trained = train_models(features, manifest, seed=0, ground_truth=truth,
                           roi_models={"RM_GTV": "GTV", "DM_GTV": "GTV-heat", "DM_50Gy": EVIL}, repeated_splits=3)
    folder = tmp_path_factory.mktemp("report")
    model_path = folder / "model.json"
    save_model(trained, model_path)
    out = folder / "report.html"
    assert cli.main(["report", "--model", str(model_path), "--out", str(out)]) == 0
    return load_model(model_path), out.read_text(encoding="utf-8")


def test_report_parses_and_is_self_contained(report):
    _, text = report
    parser = _Collector()
    parser.feed(text)
    parser.close()
    assert parser.tags[0] == "html" and "table" in parser.tags
    assert parser.images >= 5  # ROC, DCA, calibration, KM PFS, KM OS
    assert parser.scripts == 0
    assert "http://" not in text and "https://" not in text  # nothing fetched from elsewhere


def test_report_shows_the_models_and_their_aucs(report):
    model, text = report
    plain = html.unescape(text)
    for name in MODEL_NAMES:
        assert name in plain
        for cohort in ("train", "validation"):
            ev = model["evaluation"][cohort][name]
            assert f"{ev['auc']:.3f}" in plain
            assert f"{ev['ci_low']:.3f}–{ev['ci_high']:.3f}" in plain
    assert f"{model['risk']['cutoff']:.3f}" in plain
    assert model["extraction"]["settings_hash"] in plain
    assert "TRIPOD" in plain and "random split" in plain
    for feature, coef in zip(model["models"]["RM_GTV"]["features"], model["models"]["RM_GTV"]["coefficients"]):
        assert feature in plain and f"{coef:.4f}" in plain
    assert "Log-rank" in plain and "numbers at risk" in plain


def test_malicious_names_are_escaped(report):
    model, text = report
    assert any(EVIL in f for f in model["models"]["DM_50Gy"]["features"])  # the name did reach the report
    assert "<script" not in text.lower()
    assert html.escape(EVIL) in text
    assert "<b>other</b>" not in text and "&lt;b&gt;other&lt;/b&gt;" in text


def test_bundled_demo_model_reports_its_ground_truth_over_repeated_splits(tmp_path):
    """The demo model (synthetic cohort) reports the single split and the spread over 20 more."""
    # the repository from this file, not from 'conftest' (which of the suites' conftest modules that
    # name holds depends on what else was collected)
    model_path = Path(__file__).resolve().parents[2] / "Resources" / "DemoModel" / "model.json"
    model = load_model(model_path)
    out = tmp_path / "demo.html"
    write_report(model_path, out)
    text = out.read_text(encoding="utf-8")
    gt = model["ground_truth"]
    q = gt["repeated_splits"]["summary"]
    assert len(gt["repeated_splits"]["seeds"]) == 20
    assert f"combined model AUC {gt['combined_auc']:.3f}" in text
    assert f"combined model AUC median {q['combined_auc']['median']:.3f}" in text
    assert f"oracle AUC median {q['oracle_auc']['median']:.3f}" in text
    assert f"below 0.1 in {100 * gt['repeated_splits']['within_0_1']:.0f} % of splits" in text
