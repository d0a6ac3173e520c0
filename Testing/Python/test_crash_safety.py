"""Crash safety of cohort-extract: SIGKILL at random points, resume, identical output; one writer.

Six trials (seeded; each a two-worker run and its resume, the suite's longest test):
``doseradiomics cohort-extract --workers 2`` runs in its own process group on
eight tiny synthetic patients plus one bad patient (so failures.csv has content); at a random point
(during start-up, or a random fraction of a second after a random number of patients were saved)
the whole group is killed with SIGKILL, then the run is resumed; features.csv and failures.csv must be
byte-identical to the uninterrupted run's, and the folder must hold nothing else (no temp files,
no stale patient results, no lock). A second run started while one is writing is refused with a
lock message and exit code 1, and does not disturb the first.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from DoseRadiomicsLib import cli
from DoseRadiomicsLib.cohort import run_cohort

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BadInputs"))
from make_corpus import tiny_arrays, write_tiny_cohort, write_tiny_patient  # noqa: E402

N_GOOD = 8
TRIALS = 6
SEED = 20250301


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("crash cohort")
    manifest = write_tiny_cohort(d, N_GOOD, seed=1)
    ct, dose, gtv = tiny_arrays(99)
    write_tiny_patient(d / "images" / "ZERO", arrays=(ct, dose * 0, gtv))  # fails: 0 Gy everywhere
    with open(manifest, "a", encoding="utf-8") as fh:
        fh.write("ZERO,images/ZERO/ct.nrrd,images/ZERO/dose.nrrd,images/ZERO/gtv.nrrd,1,Gy\n")
    return manifest


def _command(manifest, out) -> list:
    return [sys.executable, "-m", "DoseRadiomicsLib.cli", "cohort-extract", "--manifest", str(manifest),
            "--out", str(out), "--workers", "2", "--quiet"]


def _saved(out: Path) -> int:
    folder = out / "patients"
    return len(list(folder.glob("*.json"))) if folder.is_dir() else 0


def _listing(out: Path) -> list:
    """The names of every file in the output folder (contents differ only in timings)."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def reference(cohort, tmp_path_factory):
    """The uninterrupted run (the command, 2 workers), timed; a second run meanwhile is refused."""
    out = tmp_path_factory.mktemp("reference")
    t0 = time.perf_counter()
    proc = subprocess.Popen(_command(cohort, out), start_new_session=True, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / ".lock").exists() and proc.poll() is None:
        time.sleep(0.02)
    assert (out / ".lock").exists(), "the first run never took the lock"
    second = subprocess.run(_command(cohort, out), capture_output=True, text=True, timeout=120)
    _, stderr = proc.communicate(timeout=180)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, stderr
    return out, seconds, second


def test_a_second_run_on_the_same_folder_is_refused_and_harmless(reference, cohort, tmp_path):
    out, _, second = reference
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert "another cohort-extract" in second.stderr and "is writing to this folder" in second.stderr
    assert "use another --out" in second.stderr
    # the first run was not disturbed: same result as a single-process run in a fresh folder
    alone = run_cohort(cohort, tmp_path / "alone", workers=1, progress=False)
    assert (alone.n_done, alone.n_failed) == (N_GOOD, 1)
    for name in ("features.csv", "failures.csv"):
        assert (out / name).read_bytes() == (tmp_path / "alone" / name).read_bytes(), name
    assert _listing(out) == _listing(tmp_path / "alone")


def test_sigkill_at_random_points_then_resume_gives_identical_output(reference, cohort, tmp_path):
    ref_out, ref_seconds, _ = reference
    expected = {n: (ref_out / n).read_bytes() for n in ("features.csv", "failures.csv")}
    rng = random.Random(SEED)
    trials, differences = [], []
    for trial in range(TRIALS):
        out = tmp_path / f"trial{trial}"
        # where to kill: during start-up (k = 0: a random fraction of the start-up time), or once k
        # patients are saved plus a random fraction of a second (k = N_GOOD: while the tables are
        # written), so every stage of a run gets hit and no trial waits for nothing
        k = rng.randint(0, N_GOOD)
        extra = rng.uniform(0.0, 0.4)
        proc = subprocess.Popen(_command(cohort, out), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.perf_counter()
        if k == 0:
            time.sleep(rng.uniform(0.05, 0.5) * ref_seconds)
        else:
            while proc.poll() is None and _saved(out) < k and time.perf_counter() - t0 < 120:
                time.sleep(0.01)
            time.sleep(extra)
        delay = time.perf_counter() - t0
        finished_first = proc.poll() is not None
        if not finished_first:
            os.killpg(proc.pid, signal.SIGKILL)  # the run and its workers, wherever they are
        proc.wait()
        done_before = _saved(out)
        result = run_cohort(cohort, out, workers=1, progress=False)  # resume
        trials.append((round(delay, 2), done_before, finished_first, result.n_skipped, result.n_done))
        for name, data in expected.items():
            if (out / name).read_bytes() != data:
                differences.append(f"trial {trial}: {name} differs")
        if _listing(out) != _listing(ref_out):
            differences.append(f"trial {trial}: files {sorted(set(_listing(out)) ^ set(_listing(ref_out)))}")
        assert result.n_skipped == done_before and result.n_skipped + result.n_done == N_GOOD
    print(f"\n{TRIALS} SIGKILL trials (delay s, patients done when killed, finished before the kill, "
          f"skipped on resume, extracted on resume): {trials}; differences: {differences or 'none'}")
    assert not differences, differences
    # the trials did hit the run at different stages, not all before or after the work
    assert len({t[1] for t in trials}) >= 3, trials


def test_a_stale_lock_of_a_dead_run_is_taken_over(cohort, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import json
    import socket
    (out / ".lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                           "started": "2025-01-01T00:00:00"}))
    assert cli.main(["cohort-extract", "--manifest", str(cohort), "--out", str(out), "--workers", "1"]) == 0
    assert "taking over a stale lock" in capsys.readouterr().err
    assert not (out / ".lock").exists()
