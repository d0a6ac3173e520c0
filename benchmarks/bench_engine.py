"""The feature engine against the pyradiomics floor, interleaved patient by patient (issue 15).

Per OpenKBP patient (PTV70 as the target, 128^3), warm, one process, one thread, CPU time
(``time.process_time``), in this order for every patient:

- floor: pyradiomics' own ``execute`` on the slices ``extract_patient`` cut, one call per ROI,
  same parameter files (what the features cost with pyradiomics, nothing around it);
- engine: ``FeatureExtractor.extract_many`` on the same pre-cut slices and masks (pyradiomics'
  loading, shape and filters, the engine's feature classes);
- whole: ``extract_patient`` with the engine (read, align, slice, ROIs, 3 x 1,595 features, record),
  without the stability screen (``--stability-screen`` keeps it: it recomputes features on perturbed
  images, a cost of its own, see bench_stability.py);
- whole, pyradiomics: ``extract_patient`` with ``DOSERADIOMICS_ENGINE=pyradiomics`` (today's route);
- one ROI: the engine on GTV-heat alone, against the three ROIs.

Every engine result is compared with the floor's values (rtol 1e-9) as it is timed.

    .venv/bin/python benchmarks/bench_engine.py [--patients 12] [--config paper]
    .venv/bin/python benchmarks/bench_engine.py --cohort 200 [--workers 2]

``--cohort N``: ``doseradiomics cohort-extract`` of N synthetic patients on ``--workers`` workers,
with the engine and with ``DOSERADIOMICS_ENGINE=pyradiomics`` (today's route), one after the other
in one run, each a fresh process into an empty folder; wall and CPU time (process + workers); without
the stability screen unless ``--stability-screen``.

Writes results/engine.json and the table between the ``engine`` markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections import OrderedDict

from _common import SHARED_DATA, load_note, publish, stamp   # first: pins BLAS to one thread

import numpy as np
import SimpleITK as sitk
from DoseRadiomicsLib import engine
from DoseRadiomicsLib.pipeline import ExtractionOptions, PatientInputs, extract_patient, extractors

DATA = SHARED_DATA / "openkbp_hn"


def _cpu(fn, *args, **kwargs):
    c = time.process_time()
    out = fn(*args, **kwargs)
    return out, time.process_time() - c


def _pyradiomics(params: dict):
    import radiomics
    from radiomics import featureextractor
    radiomics.setVerbosity(logging.ERROR)
    return featureextractor.RadiomicsFeatureExtractor(json.loads(json.dumps(params)))


def _same(ours: dict, ref: dict) -> int:
    """Number of features that differ beyond rtol 1e-9 (atol 1e-12 for values at round-off level)."""
    keys = [k for k in ref if not k.startswith("diagnostics")]
    a = np.array([float(ours[k]) for k in keys])
    b = np.array([float(ref[k]) for k in keys])
    return int((~np.isclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True)).sum())


def one_patient(p: PatientInputs, options, fx: dict, direct: dict) -> dict:
    result, whole = _cpu(extract_patient, p, options, keep_images=True)
    rois = result.rois
    row = {"patient": p.patient_id, "whole": whole, "pixels": rois.pixel_counts()}

    def floor():
        return {name: direct["CT" if name == "GTV" else "dose"].execute(rois.image_for(name), mask)
                for name, mask in rois.masks.items()}
    ref, row["floor"] = _cpu(floor)

    def ours():
        out = dict(fx["CT"].extract_many(rois.ct, OrderedDict([("GTV", rois.masks["GTV"])])))
        out.update(fx["dose"].extract_many(rois.dose, OrderedDict((k, m) for k, m in rois.masks.items() if k != "GTV")))
        return out
    got, row["engine"] = _cpu(ours)
    row["differing"] = sum(_same(got[k], ref[k]) for k in ref)
    _, row["one_roi"] = _cpu(fx["dose"].extract_many, rois.dose, OrderedDict([("GTV-heat", rois.masks["GTV-heat"])]))
    for e in fx.values():                 # today's route: pyradiomics' computeFeatures
        e.use_engine = False
    try:
        _, row["whole_pyradiomics"] = _cpu(extract_patient, p, options)
    finally:
        for e in fx.values():
            e.use_engine = True
    return row


def cohort(n: int, workers: int, stability_screen: bool = False) -> int:
    import os
    import shutil
    import subprocess
    import sys

    from _common import WORKDIR, checkout_env, cpu_seconds, synth_cohort
    manifest = synth_cohort(n)
    runs = {}
    for route in ("engine", "pyradiomics", "engine"):      # engine twice: first and last
        out = WORKDIR / f"engine_cohort_{n}_{route}"
        shutil.rmtree(out, ignore_errors=True)
        env = checkout_env(**({"DOSERADIOMICS_ENGINE": "pyradiomics"} if route == "pyradiomics" else {}))
        load = os.getloadavg()[0]
        c0, t0 = cpu_seconds(children=True), time.perf_counter()
        subprocess.run([sys.executable, "-m", "DoseRadiomicsLib.cli", "cohort-extract", "--manifest", str(manifest),
                        "--out", str(out), "--workers", str(workers), "--quiet"]
                       + ([] if stability_screen else ["--no-stability-screen"]), check=True, env=env)
        wall, cpu = time.perf_counter() - t0, cpu_seconds(children=True) - c0
        runs.setdefault(route, []).append({"wall": wall, "cpu": cpu, "load_before": load})
        print(f"{route}: {wall:.1f} s wall, {cpu:.1f} s CPU (load {load:.1f})", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    eng = min(runs["engine"], key=lambda r: r["cpu"])
    pyr = runs["pyradiomics"][0]
    md = "\n".join([
        f"| cohort-extract, {n} synthetic patients, {workers} workers | wall s | CPU s (all processes) |",
        "|---|---:|---:|",
        f"| pyradiomics route (`DOSERADIOMICS_ENGINE=pyradiomics`) | {pyr['wall']:.1f} | {pyr['cpu']:.1f} |",
        f"| engine (better of two runs, before and after) | {eng['wall']:.1f} | {eng['cpu']:.1f} |",
        f"| **pyradiomics / engine** | **{pyr['wall'] / eng['wall']:.2f}x** | **{pyr['cpu'] / eng['cpu']:.2f}x** |",
    ])
    loads = ", ".join("%.1f" % r["load_before"] for v in runs.values() for r in v)
    screen = " --stability-screen" if stability_screen else ""
    note = (f"_`benchmarks/bench_engine.py --cohort {n} --workers {workers}{screen}`, {stamp()}, {load_note()} at the end "
            f"(load before each run: {loads}); "
            f"a fresh cohort-extract process per run, stability screen {'on' if stability_screen else 'off'}._")
    publish("engine-cohort", runs, md, note)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=12)
    ap.add_argument("--config", default="paper", choices=["paper", "2d"])
    ap.add_argument("--cohort", type=int, default=0, help="cohort-extract this many synthetic patients instead")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--stability-screen", action="store_true",
                    help="keep the stability screen (stability.py) in the whole extract_patient; off by default: "
                         "it recomputes features on perturbed images and is not the engine's cost")
    args = ap.parse_args(argv)
    if args.cohort:
        return cohort(args.cohort, args.workers, args.stability_screen)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    options = ExtractionOptions(config=args.config, stability_screen=args.stability_screen)
    fx = extractors(options)
    direct = {m: _pyradiomics(e.parameters) for m, e in fx.items()}
    dirs = sorted((p for p in DATA.glob("pt_*") if p.is_dir()), key=lambda p: int(p.name[3:]))[:args.patients]
    pts = [PatientInputs(p.name, str(p / "ct.nrrd"), str(p / "dose.nrrd"), str(p / "mask_PTV70.nrrd"),
                         dose_unit="Gy") for p in dirs]
    one_patient(pts[0], options, fx, direct)            # warm-up: imports, first calls
    engine.stats.update(engine=0, fallback=0)
    rows = []
    for p in pts:
        row = one_patient(p, options, fx, direct)
        rows.append(row)
        print(f"{p.patient_id}: floor {row['floor']:.3f} s, engine {row['engine']:.3f}, whole {row['whole']:.3f}, "
              f"whole (pyradiomics) {row['whole_pyradiomics']:.3f}, one ROI {row['one_roi']:.3f}; "
              f"{row['differing']} features differ", flush=True)
    med = statistics.median
    s = {"config": args.config, "patients": len(rows),
         **{k: med(r[k] for r in rows) for k in ("floor", "engine", "whole", "whole_pyradiomics", "one_roi")},
         "floor_over_engine": med(r["floor"] / r["engine"] for r in rows),
         "floor_over_whole": med(r["floor"] / r["whole"] for r in rows),
         "today_over_whole": med(r["whole_pyradiomics"] / r["whole"] for r in rows),
         "three_over_one": med(r["engine"] / r["one_roi"] for r in rows),
         "differing": sum(r["differing"] for r in rows), "engine_classes": dict(engine.stats), "rows": rows}
    md = "\n".join([
        f"| OpenKBP, {args.config} configuration, n={len(rows)}, median per patient | CPU s | ratio |",
        "|---|---:|---:|",
        f"| floor: pyradiomics `execute` on the pre-cut ROIs (3 ROIs) | {s['floor']:.3f} | 1 |",
        f"| engine: `extract_many` on the same ROIs | {s['engine']:.3f} | **{s['floor_over_engine']:.2f}x** faster |",
        f"| whole `extract_patient`, engine (read, align, slice, 3 ROIs, record) | {s['whole']:.3f} | **{s['floor_over_whole']:.2f}x** faster than the floor (target >= 3x) |",
        f"| whole `extract_patient`, pyradiomics route (`DOSERADIOMICS_ENGINE=pyradiomics`) | {s['whole_pyradiomics']:.3f} | {s['today_over_whole']:.2f}x the engine's |",
        f"| engine, GTV-heat alone | {s['one_roi']:.3f} | 3 ROIs = **{s['three_over_one']:.2f}x** one ROI (target <= 2x) |",
        f"| features differing from the floor beyond rtol 1e-9 / atol 1e-12 | {s['differing']} of {len(rows) * 3 * fx['CT'].expected_count:,} | |",
        f"| class computations by the engine / by pyradiomics (fallback) | {s['engine_classes']['engine']:,} / {s['engine_classes']['fallback']:,} | |",
    ])
    screen = " --stability-screen" if args.stability_screen else ""
    note = (f"_`benchmarks/bench_engine.py --patients {args.patients} --config {args.config}{screen}`, {stamp()}, "
            f"{load_note()}; warm, one process, one thread, CPU time; interleaved per patient; stability screen "
            f"{'on' if args.stability_screen else 'off'} in the whole `extract_patient`._")
    publish(f"engine-{args.config}", s, md, note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
