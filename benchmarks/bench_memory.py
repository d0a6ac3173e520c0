"""Peak memory of one worker extracting a 512x512x200 CT patient (issue target: at most 1.5 GB).

Writes a synthetic patient in NRRD (int16 CT 512x512x200 at 0.98x0.98x2.5 mm, float32 dose on a
2.5 mm grid covering the CT, UInt8 GTV), then runs the cohort worker's step (``cohort._extract_one``:
fingerprint, read, align, slice, 3 ROIs x 1,595 features, patient JSON) in a fresh process and reports
its peak resident set size (``VmHWM`` of /proc/self/status) after the imports and after the patient, and the largest
Python-side allocation seen by ``tracemalloc``.

    .venv/bin/python benchmarks/bench_memory.py

Writes results/memory.json and the table between the ``memory`` markers of benchmarks/README.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# _common first: it pins BLAS/OpenMP threads before numpy loads
from _common import REPO, WORKDIR, checkout_env, load_note, publish, stamp
import numpy as np


CT_SIZE = (512, 512, 200)          # x, y, z voxels
CT_SPACING = (0.977, 0.977, 2.5)   # mm
DOSE_SPACING = (2.5, 2.5, 2.5)


def write_patient(folder):
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    paths = {k: folder / f"{k}.nrrd" for k in ("ct", "dose", "gtv")}
    if all(p.is_file() for p in paths.values()):
        return paths
    rng = np.random.default_rng(512)
    nx, ny, nz = CT_SIZE
    z, y, x = np.ogrid[0:nz, 0:ny, 0:nx]
    # body ellipse of soft tissue, lungs, noise; tumour of ~3 cm at the centre
    body = ((x - nx / 2) / 220.0) ** 2 + ((y - ny / 2) / 160.0) ** 2 <= 1
    ct = np.full((nz, ny, nx), -1000, np.int16)
    ct[np.broadcast_to(body, ct.shape)] = 40
    lung = (((np.abs(x - nx / 2) - 110) / 80.0) ** 2 + ((y - ny / 2) / 110.0) ** 2 <= 1)
    ct[np.broadcast_to(lung, ct.shape)] = -850
    r = np.sqrt(((x - 300) * CT_SPACING[0]) ** 2 + ((y - 250) * CT_SPACING[1]) ** 2
                + ((z - nz / 2) * CT_SPACING[2]) ** 2)
    gtv = (r <= 16.0).astype(np.uint8)
    ct[gtv.astype(bool)] = 30
    ct += rng.normal(0, 12, ct.shape).astype(np.int16)
    img = sitk.GetImageFromArray(ct)
    img.SetSpacing(CT_SPACING)
    sitk.WriteImage(img, str(paths["ct"]))
    mask = sitk.GetImageFromArray(gtv)
    mask.CopyInformation(img)
    sitk.WriteImage(mask, str(paths["gtv"]))
    del ct, gtv, img, mask
    # dose: 66 Gy plateau around the tumour with a 6 mm fall-off, on a 2.5 mm grid over the CT
    dsize = [int(round(CT_SIZE[i] * CT_SPACING[i] / DOSE_SPACING[i])) for i in range(3)]
    dz, dy, dx = np.ogrid[0:dsize[2], 0:dsize[1], 0:dsize[0]]
    cx, cy, cz = 300 * CT_SPACING[0], 250 * CT_SPACING[1], nz / 2 * CT_SPACING[2]
    rd = np.sqrt((dx * DOSE_SPACING[0] - cx) ** 2 + (dy * DOSE_SPACING[1] - cy) ** 2
                 + (dz * DOSE_SPACING[2] - cz) ** 2)
    dose = (66.0 / (1.0 + np.exp((rd - 28.0) / 3.0))).astype(np.float32)
    dimg = sitk.GetImageFromArray(dose)
    dimg.SetSpacing(DOSE_SPACING)
    dimg.SetMetaData("dose_unit", "Gy")
    sitk.WriteImage(dimg, str(paths["dose"]))
    return paths


CHILD = textwrap.dedent("""
    import json, sys, tempfile, tracemalloc
    from pathlib import Path

    def peak_kb():
        # VmHWM: this process image's peak RSS (ru_maxrss would carry over the parent's peak across fork/exec)
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    sys.path.insert(0, {repo!r})
    from DoseRadiomicsLib import cohort
    from DoseRadiomicsLib.pipeline import ExtractionOptions, PatientInputs, options_settings_hash
    options = ExtractionOptions()
    cohort.init_worker(options)                  # what a worker does at start
    h = options_settings_hash(options)
    after_imports = peak_kb()
    tracemalloc.start()
    p = PatientInputs("BIG", {ct!r}, {dose!r}, {gtv!r}, dose_unit="Gy")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "patients").mkdir()
        r = cohort._extract_one(p, options, h, tmp)
    _, traced_peak = tracemalloc.get_traced_memory()
    print(json.dumps({{"status": r["status"], "failure": r.get("failure"), "seconds": r["seconds"],
                      "maxrss_after_imports_kb": after_imports,
                      "maxrss_kb": peak_kb(),
                      "tracemalloc_peak_bytes": traced_peak}}))
""")


def main() -> int:
    paths = write_patient(WORKDIR / "big_patient")
    code = CHILD.format(repo=str(REPO), **{k: str(v) for k, v in paths.items()})
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=checkout_env())
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["status"] == "done", res
    res["input_bytes"] = {k: v.stat().st_size for k, v in paths.items()}
    gb = 1024 ** 2      # VmHWM is in KiB
    md = "\n".join([
        "| 512x512x200 CT + dose + GTV, one worker | value |", "|---|---:|",
        f"| peak RSS after imports (pyradiomics, extractors) | {res['maxrss_after_imports_kb'] / gb:.2f} GB |",
        f"| peak RSS after the patient | **{res['maxrss_kb'] / gb:.2f} GB** (target <= 1.5 GB) |",
        f"| peak Python-side allocation (tracemalloc; numpy arrays included, ITK buffers not) | "
        f"{res['tracemalloc_peak_bytes'] / 1024 ** 3:.2f} GB |",
        f"| wall s for the patient | {res['seconds']:.1f} |",
    ])
    note = f"_`benchmarks/bench_memory.py`, {stamp()}, {load_note()}._"
    publish("memory", res, md, note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
