"""cohort-extract of one synthetic cohort by an older commit and by this checkout, interleaved, in one run.

Answers "is the old figure still the baseline?": the same manifest, the same interpreter, the same
machine state, one fresh ``cohort-extract`` process per run, CPU time of the process and its workers
(``RUSAGE_CHILDREN``). The old commit is checked out beforehand as a worktree, e.g.

    git worktree add /tmp/old 3f26383
    .venv/bin/python benchmarks/bench_cohort_commits.py MANIFEST --old /tmp/old \\
        --runs old,engine,engine+screen,old [--workers 2]

Run names: ``old`` (the old checkout as it was: its defaults), ``engine`` (this checkout,
``--no-stability-screen``), ``engine+screen`` (this checkout's default, the screen on),
``pyradiomics`` (this checkout, ``DOSERADIOMICS_ENGINE=pyradiomics``, no screen). Prints one JSON
line per run; nothing is written to the README (the figures go into its text by hand, with the load).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from _common import REPO, checkout_env, cpu_seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest")
    ap.add_argument("--old", required=True, help="a checkout (worktree) of the old commit")
    ap.add_argument("--runs", default="old,engine,engine+screen,old")
    ap.add_argument("--workers", default="2")
    args = ap.parse_args(argv)
    for name in args.runs.split(","):
        code = args.old if name == "old" else str(REPO)
        # the old checkout alone on the path; this one by checkout_env, as every benchmark child
        env = dict(os.environ, PYTHONPATH=args.old) if name == "old" else \
            checkout_env(**({"DOSERADIOMICS_ENGINE": "pyradiomics"} if name == "pyradiomics" else {}))
        extra = [] if name in ("old", "engine+screen") else ["--no-stability-screen"]
        out = tempfile.mkdtemp(prefix=f"cohort_{name.replace('+', '_')}_")
        load = os.getloadavg()[0]
        c0, t0 = cpu_seconds(children=True), time.perf_counter()
        subprocess.run([sys.executable, "-m", "DoseRadiomicsLib.cli", "cohort-extract", "--manifest", args.manifest,
                        "--out", out, "--workers", args.workers, "--quiet"] + extra, check=True, env=env, cwd=code)
        row = {"run": name, "wall_s": round(time.perf_counter() - t0, 1),
               "cpu_s": round(cpu_seconds(children=True) - c0, 1), "load_before": round(load, 1),
               "load_after": round(os.getloadavg()[0], 1)}
        print(json.dumps(row), flush=True)
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
