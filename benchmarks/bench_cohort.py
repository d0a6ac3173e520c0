"""Cohort extraction of synthetic cohorts with 1 and 2 workers: wall time, CPU time, speed-up.

Each run is ``doseradiomics cohort-extract`` as a user starts it (a fresh process, its own imports and
worker start-up, every patient extracted into an empty folder), timed from outside; CPU time is that
of the process and its workers (``RUSAGE_CHILDREN``). The machine's load average is recorded with
each run: wall times hold only on a quiet machine.

    .venv/bin/python benchmarks/bench_cohort.py [--sizes 220 2000] [--workers 1 2] [--limit-s 1800]

A run that exceeds ``--limit-s`` is stopped; its rate (patients done per second so far) is reported
and the full-cohort time extrapolated from it, marked as such. Writes results/cohort.json and the
table between the ``cohort`` markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from _common import RESULTS, WORKDIR, checkout_env, cpu_seconds, load_note, publish, stamp, synth_cohort


def run_once(manifest, n: int, workers: int, limit_s: float) -> dict:
    out = WORKDIR / f"cohort_{n}_w{workers}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "DoseRadiomicsLib.cli", "cohort-extract", "--manifest", str(manifest),
           "--out", str(out), "--workers", str(workers), "--quiet"]
    load_before = os.getloadavg()[0]
    cpu0 = cpu_seconds(children=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, start_new_session=True, env=checkout_env())
    try:
        proc.wait(timeout=limit_s)
        finished = proc.returncode == 0
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
        finished = False
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(children=True) - cpu0
    done = len(list((out / "patients").glob("*.json")))
    row = {"patients": n, "workers": workers, "finished": finished, "done": done, "wall_s": wall,
           "cpu_s": cpu, "load_before": load_before, "load_after": os.getloadavg()[0]}
    if finished:
        row["features_csv_rows"] = sum(1 for _ in open(out / "features.csv")) - 1
    else:
        row["extrapolated_wall_s"] = wall / max(done, 1) * n
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(row), flush=True)
    return row


def table(rows: list) -> str:
    lines = ["| cohort | workers | wall s | CPU s (all processes) | CPU s / workers (idle-machine wall, lower bound) | "
             "wall s per patient | speed-up 1 -> 2 (wall) | load avg during |", "|---:|---:|---:|---:|---:|---:|---:|---|"]
    by = {(r["patients"], r["workers"]): r for r in rows}
    for r in rows:
        wall = r["wall_s"] if r["finished"] else r["extrapolated_wall_s"]
        mark = "" if r["finished"] else f" (extrapolated from {r['done']} patients in {r['wall_s']:.0f} s)"
        one = by.get((r["patients"], 1))
        speed = ""
        if r["workers"] == 2 and one:
            one_wall = one["wall_s"] if one["finished"] else one["extrapolated_wall_s"]
            speed = f"{one_wall / wall:.2f}x"
        # workers killed at the time limit are never waited for: their CPU time is not counted
        cpu_known = r["finished"] or r["workers"] == 1
        cpu = f"{r['cpu_s']:.0f}" if cpu_known else "n/a (stopped)"
        per_worker = f"{r['cpu_s'] / r['workers']:.0f}" if cpu_known else "n/a"
        lines.append(f"| {r['patients']} | {r['workers']} | {wall:.0f}{mark} | {cpu} | {per_worker} | "
                     f"{wall / r['patients']:.3f} | {speed} | {r['load_before']:.1f} -> {r['load_after']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[220, 2000])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--limit-s", type=float, default=1800.0)
    ap.add_argument("--keep", action="store_true", help="keep the results of other cohort sizes in the table")
    args = ap.parse_args(argv)
    rows = []
    previous = RESULTS / "cohort.json"
    if args.keep and previous.is_file():      # add to the rows of other sizes measured before
        rows = [r for r in json.loads(previous.read_text()) if r["patients"] not in args.sizes]
    for n in args.sizes:
        manifest = synth_cohort(n)
        for w in args.workers:
            rows.append(run_once(manifest, n, w, args.limit_s))
    md = table(rows)
    note = (f"_`benchmarks/bench_cohort.py --sizes {' '.join(map(str, args.sizes))} --workers "
            f"{' '.join(map(str, args.workers))}" + (" --keep" if args.keep else "") + f"`, {stamp()}, {load_note()} at the end; synthetic cohorts "
            "(`doseradiomics synth --seed 2025`, 96x96x20 CT), paper configuration, 3 ROIs; each run a fresh "
            "`cohort-extract` into an empty folder, start-up included._")
    publish("cohort", rows, md, note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
