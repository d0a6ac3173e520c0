"""The model report and the validation report, opened in a real headless Chromium.

A reviewer opens the HTML in a browser, so the checks are the browser's: the page renders, every
figure decodes (``naturalWidth > 0`` for every ``<img>``), the console has no errors, and every link
of the TRIPOD+AI checklist lands on a section. A negative control shows the checks catch a broken
page. The TRIPOD+AI section's screenshot goes to $DOSERADIOMICS_SCREENSHOT_DIR when set.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from cdp import Browser
from DoseRadiomicsLib.modelfile import load_model, save_model
from DoseRadiomicsLib.report import write_report
from DoseRadiomicsLib.training import train_models
from DoseRadiomicsLib.validation import validate_cohort, write_validation

REPO = Path(__file__).resolve().parents[2]
DEMO_MODEL = REPO / "Resources" / "DemoModel" / "model.json"

CHECK = """(() => {
  const imgs = Array.from(document.images);
  const links = Array.from(document.querySelectorAll('a[href^="#"]')).map(a => a.getAttribute('href').slice(1));
  const tripod = document.getElementById('tripod-ai-checklist');
  return {ready: document.readyState, title: document.title, text: document.body.innerText.length,
          h1: document.querySelectorAll('h1').length,
          images: imgs.map(i => ({complete: i.complete, width: i.naturalWidth, height: i.naturalHeight})),
          broken_links: links.filter(id => !document.getElementById(id)), n_links: links.length,
          tripod_rows: tripod ? tripod.parentElement.querySelectorAll('#tripod-ai-checklist ~ table tr').length : 0};
})()"""

TRIPOD_CLIP = """(() => {
  const h = document.getElementById('tripod-ai-checklist');
  let t = h.nextElementSibling; while (t && t.tagName !== 'TABLE') t = t.nextElementSibling;
  const a = h.getBoundingClientRect(), c = t.getBoundingClientRect();
  return {x: Math.max(a.left - 10, 0), y: a.top + window.scrollY - 10, width: Math.max(a.width, c.width) + 20,
          height: c.bottom - a.top + 20};
})()"""


def _check_page(browser, path: Path) -> tuple[dict, object]:
    page = browser.open(path.resolve().as_uri())
    state = page.evaluate(CHECK)
    n_img = len(re.findall(r"<img\b", path.read_text(encoding="utf-8")))
    assert state["ready"] == "complete" and state["h1"] == 1 and state["text"] > 2000, state
    assert len(state["images"]) == n_img > 0
    bad = [i for i in state["images"] if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
    assert not bad, f"{len(bad)} of {n_img} figures do not decode in {path.name}"
    assert page.console_errors() == []
    assert state["broken_links"] == [], state["broken_links"]
    return state, page


@pytest.fixture(scope="module")
def pages(chromium, tmp_path_factory):
    from test_training import synthetic_cohort
    folder = tmp_path_factory.mktemp("browser")
    features, manifest, truth = synthetic_cohort(n=150, n_noise=20, seed=7)
    save_model(train_models(features, manifest, seed=0, ground_truth=truth, repeated_splits=0),
               folder / "model.json")
    model = load_model(folder / "model.json")
    ext, ext_manifest, ext_truth = synthetic_cohort(n=100, n_noise=20, seed=8)
    result = validate_cohort(model, ext, ext_manifest, ground_truth=ext_truth, recalibrate=True,
                             model_path=folder / "model.json")
    _, validation_html = write_validation(result, model, folder / "validation")
    return {"demo": write_report(DEMO_MODEL, folder / "demo_report.html"),
            "synthetic": write_report(folder / "model.json", folder / "report.html"),
            "validation": validation_html}


def test_model_reports_render_in_chromium(chromium, pages):
    shots = Path(os.environ.get("DOSERADIOMICS_SCREENSHOT_DIR") or pages["demo"].parent)
    with Browser(chromium) as browser:
        for name in ("demo", "synthetic"):
            state, page = _check_page(browser, pages[name])
            assert state["title"] == "DoseRadiomics model report"
            assert state["tripod_rows"] >= 40  # header + every TRIPOD+AI item
            assert state["n_links"] >= 30
            if name == "demo":
                png = page.screenshot(shots / "tripod.png", page.evaluate(TRIPOD_CLIP))
                assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20000


def test_validation_report_renders_in_chromium(chromium, pages):
    with Browser(chromium) as browser:
        state, _ = _check_page(browser, pages["validation"])
    assert state["title"] == "DoseRadiomics external validation"
    assert len(state["images"]) >= 6


def test_the_checks_catch_a_broken_page(chromium, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><head><title>bad</title></head><body><h1>x</h1>"
                   + "<p>" + "text " * 500 + '</p><img src="data:image/png;base64,iVBORw0KGgoAAAA">'
                   '<a href="#nowhere">link</a><script>console.error("boom")</script></body></html>')
    with Browser(chromium) as browser:
        page = browser.open(bad.as_uri())
        state = page.evaluate(CHECK)
        assert state["images"][0]["width"] == 0
        assert state["broken_links"] == ["nowhere"]
        assert any("boom" in m for m in page.console_errors())
        with pytest.raises(AssertionError):
            _check_page(browser, bad)
