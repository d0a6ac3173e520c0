"""``doseradiomics robustness``: N patients x the 10 default perturbations with 2 workers, timed.

The run is the command as a user starts it (a fresh process, worker start-up included, an empty output
folder), timed from outside; CPU time is that of the process and its workers (``RUSAGE_CHILDREN``).

    .venv/bin/python benchmarks/bench_robustness.py [--features-dir DIR --manifest M] [--sample 50]
        [--workers 2] [--keep OUT]

Without ``--features-dir`` a synthetic cohort of ``--sample`` patients is generated and extracted first
(``cohort-extract --workers 2``, not timed here: ``bench_cohort.py`` times it). ``--keep OUT`` keeps the
robustness output in OUT (e.g. for ``train --min-icc``). Writes results/robustness.json and the table
between the ``robustness`` markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import WORKDIR, checkout_env, cpu_seconds, load_note, publish, stamp, synth_cohort


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features-dir", help="a finished cohort-extract folder (default: a synthetic cohort)")
    ap.add_argument("--manifest", help="its manifest")
    ap.add_argument("--sample", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", help="keep the robustness output in this folder")
    args = ap.parse_args()
    if args.features_dir:
        features, manifest = Path(args.features_dir), Path(args.manifest)
        cohort = f"the cohort-extract folder {features}"
    else:
        manifest = synth_cohort(args.sample)
        features = WORKDIR / f"features_{args.sample}"
        cohort = f"synthetic, {args.sample} patients (seed 2025)"
        if not (features / "cohort.json").is_file():
            subprocess.run([sys.executable, "-m", "DoseRadiomicsLib.cli", "cohort-extract", "--manifest",
                            str(manifest), "--out", str(features), "--workers", "2", "--quiet"],
                           check=True, env=checkout_env())
    out = Path(args.keep) if args.keep else WORKDIR / "robustness"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "DoseRadiomicsLib.cli", "robustness", "--manifest", str(manifest),
           "--features-dir", str(features), "--out", str(out), "--sample", str(args.sample),
           "--workers", str(args.workers), "--quiet"]
    load_before = os.getloadavg()[0]
    cpu0 = cpu_seconds(children=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=checkout_env())
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(children=True) - cpu0
    record = json.loads((out / "robustness.json").read_text())
    n, k = record["counts"]["patients"], len(record["perturbations"])
    row = {"cohort": cohort, "features_dir": str(features), "patients": n, "perturbations": k,
           "workers": args.workers, "wall_s": wall, "cpu_s": cpu, "cpu_s_per_patient": cpu / n,
           "cpu_s_per_perturbed_extraction": cpu / (n * k), "failed": record["counts"]["failed"],
           "features": record["icc"]["features"], "icc_at_least_0_75": record["icc"]["at_least_0.75"],
           "load_before": load_before, "load_after": os.getloadavg()[0], "date": stamp()}
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    md = ("| patients x perturbations | workers | wall s | CPU s (all processes) | CPU s per patient | "
          "CPU s per perturbed extraction | features with ICC(3,1) >= 0.75 |\n|---:|---:|---:|---:|---:|---:|---:|\n"
          f"| {n} x {k} | {args.workers} | {wall:.0f} | {cpu:.0f} | {cpu / n:.1f} | {cpu / (n * k):.2f} | "
          f"{row['icc_at_least_0_75']} of {row['features']} |")
    note = (f"`{' '.join(['benchmarks/bench_robustness.py'] + sys.argv[1:])}` on {cohort}, {stamp()}, "
            f"{load_note()} (load {load_before:.1f} before). Wall time holds only on a quiet machine.")
    publish("robustness", row, md, note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
