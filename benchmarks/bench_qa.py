"""The cohort QA sheet (qa.html) for 220 and 2,000 patients: build time, page size, browser load time.

The thumbnails are real: the largest cross-section of 20 OpenKBP patients (CT, dose, PTV70 as the
GTV) drawn by :func:`render_thumbnail_png` as the cohort workers draw them (their drawing time is
measured too: it is spent in the workers, in parallel), then reused cyclically so that the page of
N patients holds N pictures of realistic size. The diagnostics are drawn at random around realistic
values (the sheet reads them from features.csv; their values do not change its cost). The browser
figure is the time headless Chromium takes to load the page and decode every picture (when
Testing/Browser/cdp.py and Chromium are there).

    .venv/bin/python benchmarks/bench_qa.py [--sizes 220 2000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time

# _common first: it pins BLAS/OpenMP threads before numpy loads
from _common import REPO, SHARED_DATA, WORKDIR, load_note, publish, stamp
import numpy as np
import pandas as pd



def thumbnails(folder, n=20) -> list:
    from DoseRadiomicsLib.crosssection import largest_cross_section
    from DoseRadiomicsLib.pipeline import PatientInputs, load_patient
    from DoseRadiomicsLib.render import render_thumbnail_png
    from DoseRadiomicsLib.rois import make_rois

    folder.mkdir(parents=True, exist_ok=True)
    out, seconds = [], []
    for d in sorted((SHARED_DATA / "openkbp_hn").glob("pt_*"))[:n]:
        lp = load_patient(PatientInputs(d.name, str(d / "ct.nrrd"), str(d / "dose.nrrd"), str(d / "mask_PTV70.nrrd"),
                                        dose_unit="Gy"))
        rois = make_rois(lp.ct.image, lp.dose_on_ct, lp.gtv, largest_cross_section(lp.gtv), isodose_gy=(50.0,))
        t0 = time.perf_counter()
        out.append(render_thumbnail_png(rois, folder / f"{d.name}.png"))
        seconds.append(time.perf_counter() - t0)
    return out, seconds


def diagnostics(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "patient_id": [f"P{i:05d}" for i in range(n)],
        "diag__slice_index": rng.integers(20, 100, n), "diag__slice_position_mm": rng.normal(0, 50, n),
        "diag__GTV_area_mm2": rng.lognormal(7.3, 0.5, n), "diag__GTV-heat_area_mm2": rng.lognormal(7.3, 0.5, n),
        "diag__50Gy-heat_area_mm2": rng.lognormal(8.5, 0.4, n), "diag__GTV_dose_mean_Gy": rng.normal(62, 2, n),
        "diag__GTV_dose_max_Gy": rng.normal(66, 2, n), "diag__GTV_D95_Gy": rng.normal(58, 2, n),
        "diag__GTV_V50Gy_pct": rng.uniform(95, 100, n), "diag__GTV_dose_grid_coverage": np.ones(n)})


def browser_seconds(page) -> float | None:
    sys.path.insert(0, str(REPO / "Testing" / "Browser"))
    try:
        import cdp
    except ImportError:
        return None
    if not cdp.find_chromium():
        return None
    with cdp.Browser(timeout=300) as b:
        t0 = time.perf_counter()
        p = b.open(page.resolve().as_uri())
        n = p.evaluate("(async () => { const i=[...document.images]; i.forEach(x => x.loading='eager');"
                       " await Promise.all(i.map(x => x.decode())); return i.length; })()")
        seconds = time.perf_counter() - t0
        assert p.console_errors() == [], p.console_errors()
    return seconds, n


def main() -> None:
    from DoseRadiomicsLib.qa import write_qa_sheet

    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[220, 2000])
    args = ap.parse_args()
    pics, draw = thumbnails(WORKDIR / "qa_thumbs")
    results = {"thumbnail_draw_s_median": float(np.median(draw)),
               "thumbnail_bytes_median": int(np.median([p.stat().st_size for p in pics])), "sizes": {}}
    rows = []
    for n in args.sizes:
        out = WORKDIR / f"qa_{n}"
        shutil.rmtree(out, ignore_errors=True)
        (out / "patients").mkdir(parents=True)
        df = diagnostics(n)
        for i, pid in enumerate(df["patient_id"]):
            shutil.copy(pics[i % len(pics)], out / "patients" / f"{pid}.png")
        t0 = time.perf_counter()
        page = write_qa_sheet(out, df, prescribed={pid: 60.0 for pid in df["patient_id"]})
        build = time.perf_counter() - t0
        size = page.stat().st_size
        br = browser_seconds(page)
        results["sizes"][n] = {"build_s": build, "bytes": size, "browser_load_and_decode_s": br and br[0]}
        rows.append(f"| {n:,} | {build:.2f} s | {size / 1e6:.1f} MB | "
                    + (f"{br[0]:.1f} s ({br[1]:,} pictures)" if br else "not measured") + " |")
    md = ("| patients | build qa.html | page size | Chromium: load + decode every picture |\n|---|---|---|---|\n"
          + "\n".join(rows) + f"\n\nThumbnails: {results['thumbnail_draw_s_median']:.2f} s each to draw (in the "
          f"workers), {results['thumbnail_bytes_median'] / 1e3:.0f} kB each (median of 20 OpenKBP patients).")
    publish("qa-sheet", results, md, f"`python benchmarks/bench_qa.py`, {stamp()}, {load_note()}.")


if __name__ == "__main__":
    main()
