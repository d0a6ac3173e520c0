"""One patient, 3 ROIs: ours against pyradiomics the naive way and on the pre-cut slice; 3 ROIs vs 1.

Per patient, warm, one process, one thread, CPU time (``time.process_time``) and wall time:

- ours: ``extract_patient`` (read, align, slice, ROIs, 3 x 1,595 features, record);
- floor: pyradiomics' own ``execute`` on the slices we cut (same parameter files), once per ROI:
  the cost of the features alone, which no pipeline around pyradiomics can undercut;
- naive: pyradiomics on the full CT and dose volumes with a mask holding only the slice's ROI,
  no pre-cropping (its default), what a user gets by handing pyradiomics the volumes (slow: first
  ``--naive-patients`` patients only);
- ROIs: the features of GTV-heat alone against all three ROIs, with the paper's parameters
  (``preCrop: true``) and with ``preCrop: false`` (where the dose slice's filters are shared).

Patients: the OpenKBP set (PTV70 as the target, 128^3) when the shared data are there, and the
synthetic cohort (96x96x20).

    .venv/bin/python benchmarks/bench_extract.py [--patients 40] [--synth 40] [--naive-patients 5]

Writes results/extract.json and the table between the ``extract`` markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

# _common first: it pins BLAS/OpenMP threads before numpy loads
from _common import SHARED_DATA, load_note, publish, stamp, synth_cohort
import numpy as np
import SimpleITK as sitk
import yaml

from DoseRadiomicsLib.extraction import FeatureExtractor
from DoseRadiomicsLib.pipeline import ExtractionOptions, PatientInputs, extract_patient, extractors

DATA = SHARED_DATA / "openkbp_hn"


def timed(fn, *args, **kwargs):
    c, w = time.process_time(), time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.process_time() - c, time.perf_counter() - w


def _pyradiomics(params: dict):
    import radiomics
    from radiomics import featureextractor
    radiomics.setVerbosity(logging.ERROR)
    return featureextractor.RadiomicsFeatureExtractor(json.loads(json.dumps(params)))


def floor(result, options) -> tuple:
    """pyradiomics' execute on our pre-cut slices, per ROI (CPU s, wall s)."""
    ex = extractors(options)
    direct = {m: _pyradiomics(e.parameters) for m, e in ex.items()}
    c, w = time.process_time(), time.perf_counter()
    for name, mask in result.rois.masks.items():
        modality = "CT" if name == "GTV" else "dose"
        out = direct[modality].execute(result.rois.image_for(name), mask)
        assert sum(1 for k in out if not k.startswith("diagnostics")) == ex[modality].expected_count
    return time.process_time() - c, time.perf_counter() - w


def naive(inputs: PatientInputs, result, options) -> tuple:
    """pyradiomics on the full volumes with a one-slice mask per ROI, no pre-crop (CPU s, wall s)."""
    ct = sitk.ReadImage(inputs.ct)
    dose = sitk.ReadImage(inputs.dose)
    if not (dose.GetSize() == ct.GetSize() and np.allclose(dose.GetOrigin(), ct.GetOrigin())
            and np.allclose(dose.GetSpacing(), ct.GetSpacing())):
        dose = sitk.Resample(dose, ct, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    k = result.rois.section.index
    ex = extractors(options)
    c, w = time.process_time(), time.perf_counter()
    for name, mask2d in result.rois.masks.items():
        modality = "CT" if name == "GTV" else "dose"
        params = json.loads(json.dumps(ex[modality].parameters))
        params["setting"]["preCrop"] = False          # pyradiomics' default
        full = np.zeros(sitk.GetArrayViewFromImage(ct).shape, np.uint8)
        full[k] = sitk.GetArrayFromImage(mask2d)[0]
        mask = sitk.GetImageFromArray(full)
        mask.CopyInformation(ct)
        out = _pyradiomics(params).execute(ct if modality == "CT" else dose, mask)
        assert sum(1 for key in out if not key.startswith("diagnostics")) == ex[modality].expected_count
    return time.process_time() - c, time.perf_counter() - w


def roi_costs(result, dose_fx: dict) -> dict:
    """CPU s per dose extractor: GTV-heat alone; all 3 ROIs (dose ROIs together + GTV on CT); the dose
    ROIs one pyradiomics call each against extract_many (what sharing the filters saves)."""
    rois = result.rois
    ct_fx = extractors(ExtractionOptions())["CT"]
    dose_masks = OrderedDict((k, m) for k, m in rois.masks.items() if k != "GTV")
    _, gtv, _ = timed(ct_fx.extract_many, rois.ct, OrderedDict([("GTV", rois.masks["GTV"])]))
    out = {}
    for label, fx in dose_fx.items():
        _, one, _ = timed(fx.extract_many, rois.dose, OrderedDict([("GTV-heat", rois.masks["GTV-heat"])]))
        _, together, _ = timed(fx.extract_many, rois.dose, dose_masks)
        _, separate, _ = timed(lambda: [fx.extract(rois.dose, m, roi=k) for k, m in dose_masks.items()])
        out[label] = {"one_roi": one, "three_rois": together + gtv, "dose_separate": separate,
                      "dose_together": together}
    return out


def run(patients: list, label: str, options, n_naive: int, dose_fx: dict) -> dict:
    extract_patient(patients[0], options)             # warm-up: imports, pyradiomics' first call
    rows = []
    for i, p in enumerate(patients):
        result, cpu, wall = timed(extract_patient, p, options, keep_images=True)
        row = {"patient": p.patient_id, "ours_cpu": cpu, "ours_wall": wall}
        row["floor_cpu"], row["floor_wall"] = floor(result, options)
        if i < n_naive:
            row["naive_cpu"], row["naive_wall"] = naive(p, result, options)
        row["rois"] = roi_costs(result, dose_fx)
        rows.append(row)
        print(f"{label} {p.patient_id}: ours {cpu:.2f} s CPU, floor {row['floor_cpu']:.2f}"
              + (f", naive {row['naive_cpu']:.2f}" if 'naive_cpu' in row else ""), flush=True)
    med = statistics.median
    s = {"label": label, "patients": len(rows),
         "ours_cpu": med(r["ours_cpu"] for r in rows), "ours_wall": med(r["ours_wall"] for r in rows),
         "floor_cpu": med(r["floor_cpu"] for r in rows),
         "ours_over_floor": med(r["ours_cpu"] / r["floor_cpu"] for r in rows)}
    nv = [r for r in rows if "naive_cpu" in r]
    if nv:
        s.update(naive_patients=len(nv), naive_cpu=med(r["naive_cpu"] for r in nv),
                 naive_over_ours=med(r["naive_cpu"] / r["ours_cpu"] for r in nv))
    for key in dose_fx:
        s[f"three_over_one_{key}"] = med(r["rois"][key]["three_rois"] / r["rois"][key]["one_roi"] for r in rows)
        s[f"sharing_gain_{key}"] = med(r["rois"][key]["dose_separate"] / r["rois"][key]["dose_together"]
                                       for r in rows)
    s["rows"] = rows
    return s


def table(summaries: list) -> str:
    cols = " | ".join(s["label"] for s in summaries)
    lines = [f"| per patient, median, CPU s (one core) | {cols} |", "|---|" + "---:|" * len(summaries)]

    def line(name, fn):
        lines.append(f"| {name} | " + " | ".join(fn(s) for s in summaries) + " |")
    line("ours: `extract` (read, align, slice, 3 ROIs x 1,595 features)", lambda s: f"{s['ours_cpu']:.3f}")
    line("floor: pyradiomics on our pre-cut slices, per ROI", lambda s: f"{s['floor_cpu']:.3f}")
    line("**ours / floor**", lambda s: f"**{s['ours_over_floor']:.2f}x**")
    line("naive: pyradiomics on the full volumes, one-slice mask",
         lambda s: f"{s['naive_cpu']:.2f} (first {s['naive_patients']})" if "naive_cpu" in s else "-")
    line("**naive / ours** (issue 2: >= 5x)", lambda s: f"**{s['naive_over_ours']:.1f}x**" if "naive_cpu" in s else "-")
    line("3 ROIs / 1 ROI (GTV-heat), paper parameters, preCrop true (issue 6: <= 2x)",
         lambda s: f"{s['three_over_one_precrop']:.2f}x")
    line("3 ROIs / 1 ROI (GTV-heat), preCrop false (dose filters shared)",
         lambda s: f"{s['three_over_one_noprecrop']:.2f}x")
    line("dose ROIs one call each / together (extract_many), preCrop true",
         lambda s: f"{s['sharing_gain_precrop']:.2f}x")
    line("dose ROIs one call each / together (extract_many), preCrop false",
         lambda s: f"{s['sharing_gain_noprecrop']:.2f}x")
    line("ours, wall s (load-dependent)", lambda s: f"{s['ours_wall']:.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=40, help="OpenKBP patients (0: none)")
    ap.add_argument("--synth", type=int, default=40, help="synthetic patients (0: none)")
    ap.add_argument("--naive-patients", type=int, default=5)
    args = ap.parse_args(argv)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    options = ExtractionOptions()
    dose_params = extractors(options)["dose"].parameters
    with tempfile.TemporaryDirectory() as tmp:
        no_precrop = json.loads(json.dumps(dose_params))
        no_precrop["setting"]["preCrop"] = False
        path = Path(tmp) / "dose_noprecrop.yaml"
        path.write_text(yaml.safe_dump(no_precrop))
        dose_fx = {"precrop": extractors(options)["dose"], "noprecrop": FeatureExtractor(path)}
        summaries = []
        if args.patients and DATA.is_dir():
            dirs = sorted((p for p in DATA.glob("pt_*") if p.is_dir()), key=lambda p: int(p.name[3:]))
            kbp = [PatientInputs(p.name, str(p / "ct.nrrd"), str(p / "dose.nrrd"), str(p / "mask_PTV70.nrrd"),
                                 dose_unit="Gy") for p in dirs[:args.patients]]
            summaries.append(run(kbp, f"OpenKBP 128^3 (n={len(kbp)})", options, args.naive_patients, dose_fx))
        if args.synth:
            from DoseRadiomicsLib.manifest import read_manifest
            syn = read_manifest(synth_cohort(220)).patients()[:args.synth]
            summaries.append(run(syn, f"synthetic 96x96x20 (n={len(syn)})", options, args.naive_patients, dose_fx))
    md = table(summaries)
    note = (f"_`benchmarks/bench_extract.py --patients {args.patients} --synth {args.synth} --naive-patients "
            f"{args.naive_patients}`, {stamp()}, {load_note()}; warm, one process, one thread._")
    publish("extract", summaries, md, note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
