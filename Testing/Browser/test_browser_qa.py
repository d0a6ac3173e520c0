"""qa.html in a real headless Chromium (the cdp.py helper of this folder): the page renders, its
pictures decode, sorting works, no console error. Skips where cdp.py or Chromium is absent."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from DoseRadiomicsLib.qa import write_qa_sheet


def _table(n):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"diag__GTV_area_mm2": rng.uniform(1300, 1700, n), "diag__GTV_dose_mean_Gy": rng.uniform(61, 63, n),
                         "diag__GTV_dose_max_Gy": rng.uniform(65, 67, n), "diag__GTV_D95_Gy": rng.uniform(57, 59, n),
                         "diag__GTV_V50Gy_pct": rng.uniform(98, 100, n), "diag__GTV_dose_grid_coverage": np.ones(n)},
                        index=[f"P{i:03d}" for i in range(n)])


def test_qa_sheet_renders_in_chromium(tmp_path):
    """The page in a real browser: it renders, its pictures decode, sorting works, no console error.
    Uses the headless-Chromium helper of Testing/Browser (cdp.py)."""
    cdp = pytest.importorskip("cdp", reason="Testing/Browser/cdp.py (the headless Chromium helper) not on the path")
    if not cdp.find_chromium():
        pytest.skip("no Chromium on this machine (Testing/Browser/install_chromium.sh installs it)")
    df = _table(12)
    (tmp_path / "patients").mkdir()
    rng = np.random.default_rng(1)
    for pid in df.index:
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(buf, format="PNG")
        (tmp_path / "patients" / f"{pid}.png").write_bytes(buf.getvalue())
    df.loc["P002", "diag__GTV_dose_grid_coverage"] = 0.5
    page_path = write_qa_sheet(tmp_path, df)
    with cdp.Browser() as browser:
        page = browser.open(page_path.resolve().as_uri())
        state = page.evaluate("""(async () => {
            const imgs = [...document.images];
            await Promise.all(imgs.map(i => i.decode()));
            const before = [...document.querySelectorAll('#qa tbody tr')].map(r => r.cells[0].dataset.v);
            const ths = [...document.querySelectorAll('#qa th')];
            sortBy(ths.findIndex(t => t.textContent === 'GTV_dose_grid_coverage'));
            const after = [...document.querySelectorAll('#qa tbody tr')].map(r => r.cells[0].dataset.v);
            return {n: imgs.length, decoded: imgs.filter(i => i.naturalWidth === 200).length,
                    rows: before.length, first: after[0], flagged: document.querySelectorAll('tr.flagged').length};
        })()""")
        assert state == {"n": 12, "decoded": 12, "rows": 12, "first": "P002", "flagged": 1}
        shot = page.screenshot(tmp_path / "qa.png")
        assert Image.open(shot).size[0] > 100
        assert page.console_errors() == []
