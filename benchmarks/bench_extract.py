"""Time `extract` (3 ROIs) on the 40 OpenKBP patients against pyradiomics used the naive way.

Ours: the whole single-patient pipeline (read, align, slice, ROIs, 3 x 1,595 features), warm,
one process, one core. Naive: pyradiomics' own `execute` on the full 3D CT and dose volumes with a
mask holding only the chosen slice's ROI pixels, same image types, classes and bin widths, no
pre-cropping (its default) -- what a user gets by handing pyradiomics the volumes. The naive route is
slow, so it runs on the first --naive-patients patients only.

    .venv/bin/python benchmarks/bench_extract.py [--patients 40] [--naive-patients 5]

Prints a table and writes benchmarks/results/extract.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from DoseRadiomicsLib.pipeline import ExtractionOptions, PatientInputs, extract_patient, extractors  # noqa: E402

DATA = Path(os.environ.get("DOSERADIOMICS_SHARED_DATA", REPO.parent / "shared" / "data")) / "openkbp_hn"


def naive_pyradiomics(patient_dir: Path, result, options) -> float:
    """pyradiomics on the full volumes with a one-slice mask per ROI; returns seconds."""
    import radiomics
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)
    ct = sitk.ReadImage(str(patient_dir / "ct.nrrd"))
    dose = sitk.ReadImage(str(patient_dir / "dose.nrrd"))
    k = result.rois.section.index
    ex = extractors(options)
    t0 = time.perf_counter()
    for name, mask2d in result.rois.masks.items():
        modality = "CT" if name == "GTV" else "dose"
        params = json.loads(json.dumps(ex[modality].parameters))
        params["setting"]["preCrop"] = False          # pyradiomics' default
        extractor = featureextractor.RadiomicsFeatureExtractor(params)
        full = np.zeros(sitk.GetArrayViewFromImage(ct).shape, np.uint8)
        full[k] = sitk.GetArrayFromImage(mask2d)[0]
        mask = sitk.GetImageFromArray(full)
        mask.CopyInformation(ct)
        out = extractor.execute(ct if modality == "CT" else dose, mask)
        n = sum(1 for key in out if not key.startswith("diagnostics"))
        assert n == ex[modality].expected_count, f"naive route gave {n} features"
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=40)
    ap.add_argument("--naive-patients", type=int, default=5)
    args = ap.parse_args(argv)
    patients = sorted((p for p in DATA.glob("pt_*") if p.is_dir()), key=lambda p: int(p.name[3:]))[:args.patients]
    options = ExtractionOptions()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)

    def inputs(p):
        return PatientInputs(p.name, str(p / "ct.nrrd"), str(p / "dose.nrrd"), str(p / "mask_PTV70.nrrd"),
                             dose_unit="Gy")
    extract_patient(inputs(patients[0]), options)     # warm-up: imports, pyradiomics' first call
    ours, stages, naive = [], [], []
    for i, p in enumerate(patients):
        t0 = time.perf_counter()
        result = extract_patient(inputs(p), options)
        ours.append(time.perf_counter() - t0)
        stages.append(result.record["timings_s"])
        if i < args.naive_patients:
            naive.append((ours[-1], naive_pyradiomics(p, result, options)))
        print(f"{p.name:7s} ours {ours[-1]:6.2f} s" + (f"   naive {naive[-1][1]:7.2f} s" if i < args.naive_patients else ""),
              flush=True)
    ratios = [n / o for o, n in naive]
    summary = {
        "patients": len(ours),
        "median_s_per_patient": statistics.median(ours),
        "mean_s_per_patient": statistics.fmean(ours),
        "max_s_per_patient": max(ours),
        "median_stage_s": {k: statistics.median(s[k] for s in stages) for k in stages[0]},
        "naive_patients": len(naive),
        "naive_median_s_per_patient": statistics.median(n for _, n in naive) if naive else None,
        "naive_over_ours_median_ratio": statistics.median(ratios) if ratios else None,
        "cpu": os.cpu_count(),
    }
    print("\n| measure | value |\n|---|---|")
    print(f"| patients (OpenKBP, PTV70, 3 ROIs x 1,595 features) | {summary['patients']} |")
    print(f"| ours: median s per patient (one core) | {summary['median_s_per_patient']:.2f} |")
    print(f"| ours: median s per stage | " + ", ".join(f"{k} {v:.3f}" for k, v in summary["median_stage_s"].items()) + " |")
    if naive:
        print(f"| naive pyradiomics (full volumes, one-slice mask): median s per patient, first {len(naive)} | "
              f"{summary['naive_median_s_per_patient']:.2f} |")
        print(f"| naive / ours, median ratio | {summary['naive_over_ours_median_ratio']:.1f}x |")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "extract.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
