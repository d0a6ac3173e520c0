"""``train`` with Harrell's bootstrap optimism correction: 220 patients x 4,785 features, 2 workers.

Issue 13's target: 200 replicates with 2 workers in under 5 minutes. Each run is ``doseradiomics
train`` as a user starts it (a fresh process, start-up and worker spawning included), timed from
outside; CPU time is that of the process and its workers (``RUSAGE_CHILDREN``). The features are the
synthetic demo cohort's (``synth --n 220 --seed 2025``, paper configuration, 3 ROIs), extracted once
under ``$DOSERADIOMICS_BENCH_DIR`` (resumed if an extraction was interrupted).

    .venv/bin/python benchmarks/bench_bootstrap.py [--replicates 200] [--workers 2] [--baseline] [--republish]

``--baseline`` also times ``train`` without the bootstrap (the same command, ``--bootstrap 0``), so
the table shows what the replicates cost. Writes results/bootstrap.json and the table between the
``bootstrap`` markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _common import RESULTS, WORKDIR, checkout_env, cpu_seconds, load_note, publish, stamp, synth_cohort


def features_table(manifest, workers: int):
    out = WORKDIR / "features_220_2025"
    csv = out / "features.csv"
    if not csv.is_file():
        subprocess.run([sys.executable, "-m", "DoseRadiomicsLib.cli", "cohort-extract", "--manifest",
                        str(manifest), "--out", str(out), "--workers", str(workers), "--quiet"],
                       check=True, env=checkout_env())
    return csv


def run_train(features, manifest, replicates: int, workers: int) -> dict:
    model = WORKDIR / f"model_boot{replicates}_w{workers}.json"
    cmd = [sys.executable, "-m", "DoseRadiomicsLib.cli", "train", "--features", str(features), "--manifest",
           str(manifest), "--out", str(model), "--seed", "2025", "--repeated-splits", "0",
           "--bootstrap", str(replicates), "--workers", str(workers), "--loco", "off"]
    truth = manifest.parent / "ground_truth.csv"
    if truth.is_file():  # the synthetic cohort's oracle AUC beside the estimates (costs nothing)
        cmd += ["--ground-truth", str(truth)]
    load_before = os.getloadavg()[0]
    cpu0 = cpu_seconds(children=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=checkout_env())
    wall = time.perf_counter() - t0
    row = {"replicates": replicates, "workers": workers, "wall_s": wall,
           "cpu_s": cpu_seconds(children=True) - cpu0, "load_before": load_before,
           "load_after": os.getloadavg()[0]}
    data = json.loads(model.read_text())
    boot = (data.get("internal_validation") or {}).get("bootstrap")
    if boot:
        comb = boot["summary"]["combined"]
        row.update(completed=boot["completed"], auc_apparent=comb["auc"]["apparent"],
                   auc_corrected=comb["auc"]["corrected"], slope_corrected=comb["calibration_slope"]["corrected"],
                   auc_validation=data["evaluation"]["validation"]["combined"]["auc"])
    oracle = (data.get("ground_truth") or {}).get("oracle_auc")
    if oracle is not None:
        row["auc_oracle"] = oracle
    print(json.dumps(row), flush=True)
    return row


def table(rows: list) -> str:
    lines = ["| replicates | workers | wall s | CPU s (all processes) | CPU s per replicate | combined AUC: apparent / "
             "corrected / split validation / oracle | corrected calibration slope | load avg during |",
             "|---:|---:|---:|---:|---:|---|---:|---|"]
    base = next((r for r in rows if r["replicates"] == 0), None)
    for r in rows:
        auc = "–"
        if "auc_corrected" in r:
            oracle = f"{r['auc_oracle']:.3f}" if "auc_oracle" in r else "–"
            auc = f"{r['auc_apparent']:.3f} / {r['auc_corrected']:.3f} / {r['auc_validation']:.3f} / {oracle}"
        slope = f"{r['slope_corrected']:.3f}" if "slope_corrected" in r else "–"
        per = f"{(r['cpu_s'] - base['cpu_s']) / r['replicates']:.1f}" if base and r["replicates"] else "–"
        lines.append(f"| {r['replicates']} | {r['workers']} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {per} | {auc} | "
                     f"{slope} | {r['load_before']:.1f} -> {r['load_after']:.1f} |")
    boot = [r for r in rows if r["replicates"]]
    if base and boot:
        r = boot[-1]
        per = (r["cpu_s"] - base["cpu_s"]) / r["replicates"]
        par = min(2, r["workers"])  # the target's 2 workers on 2 cores, whatever this run used
        lines += ["", f"Extrapolated to 200 replicates with 2 workers on 2 idle cores (CPU time of train without "
                  f"the bootstrap + 200 x {per:.1f} CPU-s per replicate / {par}): "
                  f"{(base['cpu_s'] + 200 * per / par) / 60:.1f} min (target: under 5)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicates", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--baseline", action="store_true", help="also time train without the bootstrap")
    ap.add_argument("--republish", action="store_true",
                    help="no runs: rewrite the README table from results/bootstrap.json")
    args = ap.parse_args(argv)
    if args.republish:
        rows = json.loads((RESULTS / "bootstrap.json").read_text())
        args.replicates = max(r["replicates"] for r in rows)
        args.workers = rows[-1]["workers"]
        args.baseline = any(r["replicates"] == 0 for r in rows)
    else:
        manifest = synth_cohort(220)
        features = features_table(manifest, args.workers)
        rows = []
        if args.baseline:
            rows.append(run_train(features, manifest, 0, args.workers))
        rows.append(run_train(features, manifest, args.replicates, args.workers))
    note = (f"_`benchmarks/bench_bootstrap.py --replicates {args.replicates} --workers {args.workers}"
            + (" --baseline" if args.baseline else "") + f"`, {stamp()}, {load_note()} at the end; "
            "`doseradiomics train --seed 2025 --repeated-splits 0 --loco off --bootstrap N --workers W` on the "
            "synthetic demo cohort (220 patients x 4,785 features), start-up included; target (issue 13): "
            "200 replicates, 2 workers, under 5 minutes._")
    publish("bootstrap", rows, table(rows), note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
