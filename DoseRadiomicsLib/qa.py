"""``qa.html``: one self-contained page to check a cohort's extraction by eye, patient by patient.

Built by ``cohort-extract`` at the end of the run from what the run computed already: the
diagnostics columns of ``features.csv`` (areas, GTV dose mean, D95, V<iso>, coverage), the
failures, and the thumbnails the workers drew next to each patient's JSON (``patients/<id>.png``,
the zoom panel of ``slice.png``). No image is read and nothing is extracted again, so the page for
thousands of patients takes seconds. The table sorts by any column (click its header) and can show
the flagged patients only. Flags (each says why):

- an ROI area far from the cohort's: log-area more than :data:`AREA_MAD` robust standard deviations
  (1.4826 x MAD) from the cohort's median (with at least 10 patients);
- a GTV dose mean below :data:`PRESCRIPTION_FRACTION` of the manifest's ``prescribed_dose``
  (without one: of the cohort's median GTV dose mean);
- a dose-grid coverage of the GTV below 1;
- a dose that looks like cGy: a GTV dose maximum above :data:`CGY_SUSPECT_GY`.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .fileio import atomic_write_text

AREA_MAD = 3.0
PRESCRIPTION_FRACTION = 0.8
CGY_SUSPECT_GY = 150.0
D = "diag__"


def thumbnail_path(out_dir, patient_id: str) -> Path:
    return Path(out_dir) / "patients" / f"{patient_id}.png"


def _num(x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return v if math.isfinite(v) else float("nan")


def flags(features: pd.DataFrame, prescribed: dict | None = None) -> dict:
    """patient_id -> list of reasons the patient deserves a look (see the module docstring)."""
    out = {pid: [] for pid in features.index}
    areas = [c for c in features.columns if c.startswith(D) and c.endswith("_area_mm2")]
    if len(features) >= 10:
        for c in areas:
            logs = np.log(features[c].astype(float).clip(lower=1e-6))
            med = float(np.nanmedian(logs))
            mad = 1.4826 * float(np.nanmedian(np.abs(logs - med)))
            if mad <= 0:
                continue
            roi = c[len(D):-len("_area_mm2")]
            for pid, v in logs.items():
                z = (v - med) / mad
                if abs(z) > AREA_MAD:
                    out[pid].append(f"{roi} area {features.at[pid, c]:.0f} mm² is far "
                                    f"{'larger' if z > 0 else 'smaller'} than the cohort's (median "
                                    f"{math.exp(med):.0f} mm²)")
    mean_col = D + "GTV_dose_mean_Gy"
    if mean_col in features:
        cohort = float(np.nanmedian(features[mean_col].astype(float)))
        for pid, v in features[mean_col].astype(float).items():
            rx = _num((prescribed or {}).get(pid))
            ref, what = (rx, "the prescription") if not math.isnan(rx) else (cohort, "the cohort's median")
            if v < PRESCRIPTION_FRACTION * ref:
                out[pid].append(f"GTV dose mean {v:.1f} Gy is far below {what} ({ref:.1f} Gy)")
    cov = D + "GTV_dose_grid_coverage"
    if cov in features:
        for pid, v in features[cov].astype(float).items():
            if v < 1.0 - 1e-9:
                out[pid].append(f"the dose grid covers {100 * v:.1f} % of the GTV")
    mx = D + "GTV_dose_max_Gy"
    if mx in features:
        for pid, v in features[mx].astype(float).items():
            if v > CGY_SUSPECT_GY:
                out[pid].append(f"GTV dose maximum {v:.0f} Gy: is the dose in cGy?")
    return out


_STYLE = """
body{font:13px system-ui,sans-serif;margin:16px;color:#222}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;vertical-align:middle}
th{background:#eee;cursor:pointer;position:sticky;top:0}td.id,td.flags{text-align:left}
tr.flagged td.flags{color:#b00020}td.flags{max-width:260px}img{display:block;width:160px;height:160px;image-rendering:pixelated}
.fail{color:#b00020}.note{color:#555}
"""
_SCRIPT = """
function sortBy(i){const tb=document.querySelector('#qa tbody');const rows=[...tb.rows];
const th=document.querySelectorAll('#qa th')[i];const dir=th.dataset.dir==='1'?-1:1;th.dataset.dir=dir;
rows.sort((a,b)=>{const x=a.cells[i].dataset.v,y=b.cells[i].dataset.v;const nx=parseFloat(x),ny=parseFloat(y);
if(!isNaN(nx)&&!isNaN(ny))return dir*(nx-ny);return dir*String(x).localeCompare(String(y));});
rows.forEach(r=>tb.appendChild(r));}
function onlyFlagged(on){document.querySelectorAll('#qa tbody tr').forEach(r=>{
r.style.display=(on&&!r.classList.contains('flagged'))?'none':'';});}
"""


def write_qa_sheet(out_dir, features: pd.DataFrame, failures: pd.DataFrame | None = None,
                   prescribed: dict | None = None, path=None, title: str = "cohort QA") -> Path:
    """Write ``qa.html`` (default ``OUT/qa.html``) from the run's features table (indexed by patient id
    or with a ``patient_id`` column), its failures and the workers' thumbnails."""
    out_dir = Path(out_dir)
    path = Path(path) if path else out_dir / "qa.html"
    df = features.set_index("patient_id") if "patient_id" in features.columns else features
    diag = [c for c in df.columns if c.startswith(D)]
    shown = [c for c in diag if c.endswith("_area_mm2")] + [
        D + c for c in ("GTV_dose_mean_Gy", "GTV_D95_Gy") if D + c in df] + [
        c for c in diag if c.startswith(D + "GTV_V") and c.endswith("Gy_pct")] + [
        c for c in (D + "GTV_dose_grid_coverage", D + "slice_index", D + "slice_position_mm") if c in df]
    why = flags(df[diag], prescribed) if len(df) else {}
    head = ["patient", "flags", "picture", *[c[len(D):] for c in shown]]
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p class='note'>{len(df)} patients extracted, {sum(1 for v in why.values() if v)} flagged"
             f", {0 if failures is None else len(failures)} failed. Click a column header to sort. "
             "Pictures: the largest cross-section (CT W400/L40, dose wash, ROI outlines; a second ROI on the "
             "same outline is drawn dashed).</p>",
             "<label><input type='checkbox' onchange='onlyFlagged(this.checked)'> flagged patients only</label>"]
    if failures is not None and len(failures):
        parts.append("<h2>Failures</h2><table><tr><th>patient</th><th>kind</th><th>message</th></tr>")
        for _, f in failures.iterrows():
            parts.append(f"<tr class='fail'><td class='id'>{html.escape(str(f.get('patient_id', '')))}</td>"
                         f"<td>{html.escape(str(f.get('kind', '')))}</td>"
                         f"<td class='id'>{html.escape(str(f.get('message', '')))}</td></tr>")
        parts.append("</table><h2>Patients</h2>")
    parts.append("<table id='qa'><thead><tr>" + "".join(
        f"<th onclick='sortBy({i})'>{html.escape(h)}</th>" for i, h in enumerate(head)) + "</tr></thead><tbody>")
    for pid, row in df.iterrows():
        pid = str(pid)
        thumb = thumbnail_path(out_dir, pid)
        if thumb.is_file():
            data = base64.b64encode(thumb.read_bytes()).decode("ascii")
            pic = f"<img loading='lazy' alt='slice of {html.escape(pid)}' src='data:image/png;base64,{data}'>"
        else:
            pic = "<span class='note'>no picture</span>"
        reasons = why.get(pid, [])
        cells = [f"<td class='id' data-v='{html.escape(pid)}'>{html.escape(pid)}</td>",
                 f"<td class='flags' data-v='{len(reasons)}'>{html.escape('; '.join(reasons))}</td>",
                 f"<td data-v='{len(reasons)}'>{pic}</td>"]
        for c in shown:
            v = _num(row[c])
            text = "" if math.isnan(v) else (f"{v:.3f}" if c.endswith("coverage") else f"{v:.1f}")
            cells.append(f"<td data-v='{'' if math.isnan(v) else repr(v)}'>{text}</td>")
        parts.append(f"<tr{' class=flagged' if reasons else ''}>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table></body></html>")
    atomic_write_text(path, "\n".join(parts))
    return path
