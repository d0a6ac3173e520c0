"""Cohort extraction: every patient once, failures recorded, resumable, identical output."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from DoseRadiomicsLib import synth
from DoseRadiomicsLib.cohort import CohortLockError, patient_features, run_cohort, stored_stability

N = 6


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    synth.generate_cohort(N, seed=21, out_dir=d)
    return d


@pytest.fixture(scope="module")
def reference(cohort_dir, tmp_path_factory):
    """An uninterrupted single-process run: the output every other run must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    result = run_cohort(cohort_dir / "manifest.csv", out, workers=1, progress=False)
    return out, result


def test_uninterrupted_run_has_one_row_per_patient(reference, cohort_dir):
    out, r = reference
    ids = pd.read_csv(cohort_dir / "manifest.csv")["patient_id"].tolist()
    feats = pd.read_csv(out / "features.csv")
    assert feats["patient_id"].tolist() == ids and (r.n_done, r.n_skipped, r.n_failed) == (N, 0, 0)
    assert feats.columns[:2].tolist() == ["patient_id", "settings_hash"]
    assert any(c.startswith("GTV__original_") for c in feats.columns)
    assert any(c.startswith("50Gy-heat__") for c in feats.columns)
    assert feats["settings_hash"].nunique() == 1
    assert pd.read_csv(out / "failures.csv").empty and not (out / ".lock").exists()
    doc = json.loads((out / "patients" / f"{ids[0]}.json").read_text())
    assert patient_features(doc, out)["GTV__original_firstorder_Mean"] == feats.loc[0, "GTV__original_firstorder_Mean"]
    assert len(doc["inputs"]["ct"]["sha256"]) == 64 and doc["settings_hash"] == feats.loc[0, "settings_hash"]
    summary = json.loads((out / "cohort.json").read_text())
    assert summary["counts"]["extracted"] == N and summary["library_versions"]["pyradiomics"]
    # the stability screen: per patient in its record, per cohort beside features.csv
    side = json.loads((out / "feature_stability.json").read_text())
    assert side["patients_screened"] == ids and side["n_features"] == len([c for c in feats.columns if "__" in c
                                                                           and not c.startswith("diag__")])
    z_high = [v for k, v in side["features"].items() if "wavelet-HLH_firstorder_Mean" in k]
    assert z_high and all(v["share"] == len(v["unstable_in"]) / N for v in side["features"].values())
    assert set(stored_stability(doc, out)["unstable"]) == {k for k, v in side["features"].items()
                                                         if ids[0] in v["unstable_in"]}
    # nothing changed: a rerun extracts nobody and writes the same features
    before = (out / "features.csv").read_bytes()
    again = run_cohort(cohort_dir / "manifest.csv", out, workers=1, progress=False)
    assert (again.n_done, again.n_skipped) == (0, N) and again.seconds < r.seconds / 3
    assert (out / "features.csv").read_bytes() == before


def test_crash_after_some_patients_then_resume_gives_identical_output(reference, cohort_dir, tmp_path):
    ref_out, _ = reference
    done = []

    def crash_after_two(pid, status):
        done.append(pid)
        if len(done) == 2:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        run_cohort(cohort_dir / "manifest.csv", tmp_path, workers=1, progress=False,
                   on_patient_done=crash_after_two)
    assert len(list((tmp_path / "patients").glob("*.json"))) == 2 and not (tmp_path / ".lock").exists()
    r = run_cohort(cohort_dir / "manifest.csv", tmp_path, workers=1, progress=False)
    assert (r.n_done, r.n_skipped) == (N - 2, 2)
    assert (tmp_path / "features.csv").read_bytes() == (ref_out / "features.csv").read_bytes()


def test_failing_patients_are_recorded_and_removed_once_fixed(reference, cohort_dir, tmp_path):
    ref_out, _ = reference
    out = tmp_path / "out"
    shutil.copytree(ref_out, out)                          # everyone extracted already
    m = pd.read_csv(cohort_dir / "manifest.csv")
    bad = m.copy()
    bad.loc[1, "ct"] = "images/nobody/ct.nrrd"            # missing file
    garbage = tmp_path / "garbage_dose.nrrd"
    garbage.write_bytes(b"NRRD0004\nthis is not an image\n")
    bad.loc[3, "dose"] = str(garbage)                     # corrupt file
    bad_path = cohort_dir / "manifest_bad.csv"
    bad.to_csv(bad_path, index=False)
    r = run_cohort(bad_path, out, workers=1, progress=False)
    assert (r.n_done, r.n_skipped, r.n_failed) == (0, N - 2, 2)
    fails = pd.read_csv(out / "failures.csv")
    assert fails["patient_id"].tolist() == [m.patient_id[1], m.patient_id[3]]
    assert fails.loc[0, "kind"] == "InputError" and "does not exist" in fails.loc[0, "message"]
    assert fails.loc[0, "file"].endswith("nobody/ct.nrrd")
    assert fails.loc[1, "kind"] == "InputError" and fails.loc[1, "file"] == str(garbage)
    assert m.patient_id[3] in fails.loc[1, "message"]
    feats = pd.read_csv(out / "features.csv")
    assert feats["patient_id"].tolist() == [p for i, p in enumerate(m.patient_id) if i not in (1, 3)]
    assert not (out / "patients" / f"{m.patient_id[3]}.json").exists()   # stale result removed
    # the original files again: the two are extracted and leave failures.csv
    r = run_cohort(cohort_dir / "manifest.csv", out, workers=1, progress=False)
    assert (r.n_done, r.n_skipped, r.n_failed) == (2, N - 2, 0)
    assert pd.read_csv(out / "failures.csv").empty
    assert (out / "features.csv").read_bytes() == (ref_out / "features.csv").read_bytes()


def test_a_library_that_computes_differently_re_extracts_everyone(reference, cohort_dir, tmp_path, monkeypatch):
    """The settings hash holds no library version: resuming must still never reuse another library's
    features. A pyradiomics whose glcm Contrast is 1 % higher (same version string) extracts all again."""
    from changed_pyradiomics import glcm_contrast_plus_one_percent
    from DoseRadiomicsLib import fingerprint, training

    ref_out, _ = reference
    summary = json.loads((ref_out / "cohort.json").read_text())
    assert training._find_extraction_record(ref_out / "features.csv")[1] == summary["fingerprint"]
    assert len(summary["fingerprint"]["features"]) == 3 * 1595
    out = tmp_path / "out"
    shutil.copytree(ref_out, out)
    glcm_contrast_plus_one_percent(monkeypatch)
    fingerprint.clear_cache()
    try:
        r = run_cohort(cohort_dir / "manifest.csv", out, workers=1, progress=False)
    finally:
        monkeypatch.undo()
        fingerprint.clear_cache()
    assert (r.n_done, r.n_skipped, r.n_failed) == (N, 0, 0)
    new, ref = pd.read_csv(out / "features.csv"), pd.read_csv(ref_out / "features.csv")
    col = "GTV__original_glcm_Contrast"
    assert new[col].tolist() == pytest.approx((ref[col] * 1.01).tolist(), rel=1e-12)
    assert new["GTV__original_firstorder_Mean"].tolist() == ref["GTV__original_firstorder_Mean"].tolist()


def test_killed_parallel_run_resumes_with_identical_output(reference, cohort_dir, tmp_path):
    ref_out, _ = reference
    cmd = [sys.executable, "-m", "DoseRadiomicsLib.cli", "cohort-extract", "--manifest",
           str(cohort_dir / "manifest.csv"), "--out", str(tmp_path), "--workers", "2", "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "patients").glob("*.json")):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)                    # the run and its workers, mid-way
    proc.wait()
    n_before = len(list((tmp_path / "patients").glob("*.json")))
    assert 1 <= n_before < N and (tmp_path / ".lock").exists()   # a stale lock is left behind
    r = run_cohort(cohort_dir / "manifest.csv", tmp_path, workers=2, progress=False)
    assert r.n_skipped >= n_before and r.n_done + r.n_skipped == N and r.n_failed == 0
    assert (tmp_path / "features.csv").read_bytes() == (ref_out / "features.csv").read_bytes()


def test_a_second_run_on_the_same_folder_is_refused(cohort_dir, tmp_path):
    (tmp_path / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename,
                                                "started": "now"}))
    with pytest.raises(CohortLockError) as info:
        run_cohort(cohort_dir / "manifest.csv", tmp_path, workers=1, progress=False)
    assert f"process {os.getpid()}" in str(info.value) and ".lock" in str(info.value)
    assert not list((tmp_path / "patients").glob("*.json"))


def test_a_run_holding_the_os_lock_refuses_a_second_run(cohort_dir, tmp_path):
    """Two runs must never both take over one stale lock: the lock is an OS lock held for the run."""
    import fcntl
    import subprocess
    import sys

    import socket

    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    # The file names a dead process on this host, as a stale lock does, but a live run holds the OS
    # lock (it has just taken the stale lock over): a second run must be refused, not take over too.
    content = json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "started": "then"})
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(out / '.lock')!r}, os.O_CREAT | os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        f"os.write(fd, {content.encode()!r})\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        fd = os.open(out / ".lock", os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # the OS lock really is held
        os.close(fd)
        with pytest.raises(CohortLockError, match=f"process {int(dead.stdout)}"):
            run_cohort(cohort_dir / "manifest.csv", out, workers=1, progress=False)
        assert not list((out / "patients").glob("*.json")) if (out / "patients").exists() else True
    finally:
        holder.kill()
        holder.wait()
