"""The cohort QA sheet (qa.html) and the slice picture it shows.

The integration test runs cohort-extract on a small synthetic cohort (with one failing patient)
and reads the page back with the standard library's HTML parser: one row per patient, every
picture a PNG that Pillow decodes, the failure listed, values equal to features.csv. The flag rules
are checked on a table whose outliers are known.
"""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from DoseRadiomicsLib import synth
from DoseRadiomicsLib.cohort import run_cohort
from DoseRadiomicsLib.qa import flags, write_qa_sheet


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.images, self._row, self._cell, self.in_qa, self.fail_rows = [], [], None, None, False, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id") == "qa":
            self.in_qa = True
        if tag == "tr" and a.get("class") == "fail":
            self.fail_rows += 1
        if self.in_qa and tag == "tr":
            self._row = {"class": a.get("class"), "cells": []}
        if self.in_qa and tag == "td" and self._row is not None:
            self._cell = a.get("data-v")
            self._row["cells"].append(self._cell)
        if tag == "img":
            self.images.append(a["src"])

    def handle_endtag(self, tag):
        if tag == "table":
            self.in_qa = False
        if tag == "tr" and self._row is not None and self._row["cells"]:
            self.rows.append(self._row)
            self._row = None


def read_page(path):
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_cohort_extract_writes_a_qa_sheet_from_the_workers_thumbnails(tmp_path):
    cohort = tmp_path / "cohort"
    synth.generate_cohort(3, seed=5, out_dir=cohort)
    manifest = cohort / "manifest.csv"
    df = pd.read_csv(manifest)
    bad = df.iloc[0].copy()
    bad["patient_id"] = "broken&1"
    bad["gtv"] = "missing.nrrd"
    pd.concat([df, bad.to_frame().T]).to_csv(manifest, index=False)
    out = tmp_path / "out"
    run_cohort(manifest, out, workers=1, progress=False)
    features = pd.read_csv(out / "features.csv")
    assert len(features) == 3
    for pid in features["patient_id"]:
        assert (out / "patients" / f"{pid}.png").is_file()       # drawn by the worker
    page = read_page(out / "qa.html")
    assert [r["cells"][0] for r in page.rows] == list(features["patient_id"])
    assert page.fail_rows == 1 and "broken&amp;1" in (out / "qa.html").read_text()
    assert len(page.images) == 3
    for src in page.images:
        assert src.startswith("data:image/png;base64,")           # self-contained
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        img.load()
        assert img.size == (200, 200)
        assert np.asarray(img.convert("RGB")).std() > 10          # a picture, not a blank square
    header = re.findall(r"<th onclick='sortBy\(\d+\)'>([^<]+)</th>", (out / "qa.html").read_text())
    col = header.index("GTV_dose_mean_Gy")
    np.testing.assert_allclose([float(r["cells"][col]) for r in page.rows],
                               features["diag__GTV_dose_mean_Gy"], rtol=1e-12)


def _table(n=30, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n)]
    df = pd.DataFrame({
        "diag__GTV_area_mm2": rng.uniform(1300, 1700, n), "diag__GTV-heat_area_mm2": rng.uniform(1300, 1700, n),
        "diag__GTV_dose_mean_Gy": rng.uniform(61, 63, n), "diag__GTV_dose_max_Gy": rng.uniform(65, 67, n),
        "diag__GTV_D95_Gy": rng.uniform(57, 59, n), "diag__GTV_V50Gy_pct": rng.uniform(98, 100, n),
        "diag__GTV_dose_grid_coverage": np.ones(n)}, index=ids)
    return df


def test_flags_name_the_outliers_and_only_them():
    df = _table()
    df.loc["P003", "diag__GTV_area_mm2"] = 40.0            # far smaller
    df.loc["P007", "diag__GTV_dose_mean_Gy"] = 40.0        # far below the prescription
    df.loc["P011", "diag__GTV_dose_grid_coverage"] = 0.93
    df.loc["P013", ["diag__GTV_dose_max_Gy", "diag__GTV_dose_mean_Gy"]] = [6600.0, 6200.0]  # cGy
    got = flags(df, prescribed={pid: 60.0 for pid in df.index})
    flagged = {pid for pid, why in got.items() if why}
    assert flagged == {"P003", "P007", "P011", "P013"}
    assert "GTV area 40 mm² is far smaller" in got["P003"][0]
    assert got["P007"] == ["GTV dose mean 40.0 Gy is far below the prescription (60.0 Gy)"]
    assert got["P011"] == ["the dose grid covers 93.0 % of the GTV"]
    assert any("cGy" in w for w in got["P013"])
