"""Cohort runs that cannot keep stale results, hang on hostile paths or lose patients (issue 12, Build 3).

- input fingerprints by content: a CT replaced by one of equal size and an older mtime is re-extracted;
- a device, a FIFO and a huge folder as inputs fail their patient at once (no hash of /dev/zero);
- 10,000 failing manifest rows cost seconds (failures.csv is written in bulk, not per failure);
- a failures.csv re-saved by a spreadsheet (BOM, CRLF, Windows-1252) does not stop a rerun, and
  cells a spreadsheet would run as formulas are written quoted;
- patient ids: NFC-normalised (composed and decomposed spellings are one patient), invisible
  characters refused, a length limit, no leading = + - @;
- a worker that dies fails its own patient only (the pool is rebuilt);
- a killed (SIGKILL) cohort-extract leaves no worker running (process pool and local Dask cluster) and
  nothing written after it; SIGTERM ends a run like Ctrl-C: message, lock
  released, exit 143.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DoseRadiomicsLib import cohort
from DoseRadiomicsLib.cohort import run_cohort
from DoseRadiomicsLib.errors import ManifestError
from DoseRadiomicsLib.manifest import read_manifest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BadInputs"))
from make_corpus import tiny_arrays, write_tiny_cohort, write_tiny_patient  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HEADER = "patient_id,ct,dose,gtv,gtv_label,dose_unit\n"


def _row(pid, paths) -> str:
    return f"{pid},{paths['ct']},{paths['dose']},{paths['gtv']},1,Gy\n"


# ----------------------------------------------------------------------------- fingerprints

def test_a_replaced_ct_of_equal_size_and_older_mtime_is_extracted_again(tmp_path):
    ct, dose, gtv = tiny_arrays(11)
    paths = write_tiny_patient(tmp_path / "p", arrays=(ct, dose, gtv))
    raw = tmp_path / "p" / "ct_raw.nrrd"   # uncompressed: a changed voxel keeps the size
    img = sitk.ReadImage(str(paths["ct"]))
    sitk.WriteImage(img, str(raw), useCompression=False)
    paths["ct"] = raw
    (tmp_path / "m.csv").write_text(HEADER + _row("P1", paths))
    first = run_cohort(tmp_path / "m.csv", tmp_path / "out", progress=False)
    assert first.n_done == 1
    size, old = raw.stat().st_size, raw.stat().st_mtime_ns
    data = raw.read_bytes()
    start = data.index(b"\n\n") + 2      # the raw voxels follow the NRRD header
    voxels = np.frombuffer(data[start:], dtype=sitk.GetArrayViewFromImage(img).dtype).copy().reshape(ct.shape)
    voxels[gtv != 0] += 40                # the tumour's texture changed, the file's size did not
    raw.write_bytes(data[:start] + voxels.tobytes())
    os.utime(raw, ns=(old - 10**10, old - 10**10))   # an older mtime, as cp -p leaves it
    assert raw.stat().st_size == size
    second = run_cohort(tmp_path / "m.csv", tmp_path / "out", progress=False)
    assert (second.n_done, second.n_skipped) == (1, 0)
    a, b = first.features.iloc[0], second.features.iloc[0]
    assert a["GTV__original_firstorder_Mean"] != b["GTV__original_firstorder_Mean"]
    # and an untouched input is skipped, not re-hashed into a different answer
    third = run_cohort(tmp_path / "m.csv", tmp_path / "out", progress=False)
    assert (third.n_done, third.n_skipped) == (0, 1)


def test_devices_fifos_and_huge_folders_fail_their_patient_at_once(tmp_path):
    good = write_tiny_patient(tmp_path / "p", seed=2)
    fifo = tmp_path / "ct.fifo"
    os.mkfifo(fifo)
    huge = tmp_path / "huge"
    huge.mkdir()
    for i in range(cohort.MAX_FOLDER_FILES + 1):
        (huge / f"{i}").touch()
    rows = [("ZERO", "/dev/zero"), ("FIFO", str(fifo)), ("HUGE", str(huge))]
    (tmp_path / "m.csv").write_text(HEADER + "".join(_row(pid, {**good, "ct": ct}) for pid, ct in rows))
    t0 = time.perf_counter()
    result = run_cohort(tmp_path / "m.csv", tmp_path / "out", progress=False)
    assert time.perf_counter() - t0 < 60
    assert result.n_failed == 3
    f = result.failures.set_index("patient_id")
    assert "not a regular file or a folder" in f.loc["ZERO", "message"]
    assert "not a regular file or a folder" in f.loc["FIFO", "message"]
    assert "more than 10,000 files" in f.loc["HUGE", "message"]
    assert set(f["kind"]) == {"InputError"}


# ----------------------------------------------------------------------------- failures.csv

def test_ten_thousand_failing_rows_take_seconds(tmp_path, capsys):
    lines = [HEADER] + [f"X{i:05d},missing/ct{i}.nrrd,missing/d{i}.nrrd,missing/g{i}.nrrd,1,Gy\n"
                        for i in range(10_000)]
    (tmp_path / "m.csv").write_text("".join(lines))
    t0, c0 = time.perf_counter(), time.process_time()
    result = run_cohort(tmp_path / "m.csv", tmp_path / "out", progress=False)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    with capsys.disabled():
        print(f"\n10,000 failing manifest rows: {seconds:.1f} s ({cpu:.1f} s of this process's CPU; load "
              f"{os.getloadavg()[0]:.0f})")
    assert result.n_failed == 10_000
    with open(tmp_path / "out" / "failures.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 10_000 and rows[0]["patient_id"] == "X00000" and rows[-1]["patient_id"] == "X09999"
    # 486 s before (rewritten after every failure); CPU, not wall time: the machine may be shared
    assert cpu < 30, (seconds, cpu)


def test_a_failures_csv_resaved_by_a_spreadsheet_does_not_stop_a_rerun(tmp_path):
    good = write_tiny_patient(tmp_path / "p", seed=4)
    (tmp_path / "m.csv").write_text(HEADER + _row("GOOD", good) +
                                    "BAD,missing.nrrd,missing.nrrd,missing.nrrd,1,Gy\n")
    out = tmp_path / "out"
    run_cohort(tmp_path / "m.csv", out, progress=False)
    text = (out / "failures.csv").read_text(encoding="utf-8")
    # Excel's "CSV" on Windows: a BOM-less cp1252 file with CRLF, plus a non-ASCII note
    (out / "failures.csv").write_bytes(("\ufeff" + text.replace("\n", "\r\n")).encode("utf-8")
                                       + "BAD2,x,,caf\u00e9 \u2013 note\r\n".encode("cp1252"))
    again = run_cohort(tmp_path / "m.csv", out, progress=False)
    assert (again.n_skipped, again.n_failed) == (1, 1)
    assert list(again.failures["patient_id"]) == ["BAD"]
    assert (out / "failures.csv").read_bytes().startswith(b"patient_id,kind,file,message\n")


def test_formula_like_cells_are_written_quoted(tmp_path):
    path = tmp_path / "failures.csv"
    cohort._write_failures(path, {"P1": {"patient_id": "P1", "kind": "InputError", "file": "=cmd|' /C calc'!A0",
                                         "message": "@SUM(1+1)"}}, ["P1"])
    rows = list(csv.DictReader(open(path, newline="", encoding="utf-8")))
    assert rows[0]["file"] == "'=cmd|' /C calc'!A0" and rows[0]["message"] == "'@SUM(1+1)"


# ----------------------------------------------------------------------------- patient ids

def _manifest(tmp_path, *ids) -> Path:
    p = tmp_path / "ids.csv"
    p.write_text(HEADER + "".join(f"{i},ct.nrrd,dose.nrrd,gtv.nrrd,1,Gy\n" for i in ids), encoding="utf-8")
    return p


def test_ids_differing_only_by_unicode_normalisation_are_one_patient(tmp_path):
    composed, decomposed = "Jos\u00e9", "Jose\u0301"
    with pytest.raises(ManifestError, match="already used in row 1"):
        read_manifest(_manifest(tmp_path, composed, decomposed))
    assert read_manifest(_manifest(tmp_path, decomposed)).patient_ids == [composed]


@pytest.mark.parametrize("pid,needle", [
    ("P\u200b001", "invisible characters (U+200B)"),
    ("P\u202e001", "invisible characters (U+202E)"),
    ("P" * 65, "65 characters"),
    ("\U0001F600" * 55, "220 bytes"),
    ("=1+2", "formula"), ("+1", "formula"), ("-1", "formula"), ("@A1", "formula"),
])
def test_unsafe_patient_ids_are_refused_at_manifest_read(pid, needle, tmp_path):
    with pytest.raises(ManifestError) as info:
        read_manifest(_manifest(tmp_path, pid))
    assert needle in str(info.value) and "row 1" in str(info.value)


def test_a_64_character_id_runs(tmp_path):
    assert read_manifest(_manifest(tmp_path, "P" * 64)).patient_ids == ["P" * 64]


# ----------------------------------------------------------------------------- workers

def dies_on_bad(inputs, options, settings_hash, out_dir):
    """Stands in for the extraction in the pool's workers: the patient BAD kills its worker."""
    if inputs.patient_id == "BAD":
        os._exit(1)
    time.sleep(0.2)
    return {"patient_id": inputs.patient_id, "status": "done", "seconds": 0.2}


def test_a_dead_worker_fails_only_its_own_patient(tmp_path, monkeypatch):
    from DoseRadiomicsLib.pipeline import PatientInputs

    monkeypatch.setattr(cohort, "_extract_one", dies_on_bad)
    todo = [PatientInputs(patient_id=pid, ct="c", dose="d", gtv="g")
            for pid in ("A", "B", "BAD", "C", "D", "E")]
    results = {r["patient_id"]: r for r in cohort._pool_results(todo, None, "h", tmp_path, 2)}
    assert set(results) == {"A", "B", "BAD", "C", "D", "E"}
    assert results["BAD"]["status"] == "failed" and results["BAD"]["failure"]["kind"] == "WorkerDied"
    assert all(results[p]["status"] == "done" for p in "ABCDE"), results


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


def _descendants(pid: int) -> set:
    """Every live process below ``pid`` (read from /proc)."""
    children = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat_file.read_text()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(stat_file.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


ENGINES = {"process pool": ["--workers", "2"],
           "local Dask cluster": ["--local-cluster", "1"]}


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_a_killed_cohort_extract_leaves_no_worker_and_no_later_write(engine, tmp_path):
    """SIGKILL, so the run cannot stop its workers: they must exit by themselves (pool workers by
    cohort._die_with_parent; without it this fails: the pool's workers survived, and went on writing).
    A local Dask cluster's workers exit by distributed's own watch of their parent (process.py)."""
    if engine == "local Dask cluster":
        pytest.importorskip("distributed")
    manifest = write_tiny_cohort(tmp_path / "c", 8, seed=9)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "DoseRadiomicsLib.cli", "cohort-extract", "--manifest",
                             str(manifest), "--out", str(out), "--quiet", "--config", "2d", *ENGINES[engine]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 240
    while not list((out / "patients").glob("*.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    workers = _descendants(proc.pid)      # the workers are extracting: one patient is written
    assert proc.poll() is None and workers, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if _alive(w)], "a worker outlived its run"
    written = snapshot = sorted(p.name for p in (out / "patients").glob("*.json"))
    time.sleep(2.0)       # longer than a tiny patient takes: a surviving writer would show
    assert sorted(p.name for p in (out / "patients").glob("*.json")) == snapshot
    assert len(written) < 8, "the run was not cut short: nothing was tested"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_ends_a_run_like_ctrl_c(tmp_path, workers):
    """SIGTERM to the parent alone (as a batch system sends it): the run stops now, workers included
    (with a pool, the patients already handed to the workers once ran on and the parent waited for them)."""
    manifest = write_tiny_cohort(tmp_path / "c", 12, seed=8)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "DoseRadiomicsLib.cli", "cohort-extract", "--manifest",
                             str(manifest), "--out", str(out), "--workers", workers, "--quiet", "--config", "2d"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 240
    while not list((out / "patients").glob("*.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    workers_seen = _descendants(proc.pid) if Path("/proc").is_dir() else set()
    assert proc.poll() is None, "the run ended before the signal: nothing was tested"
    at_signal = {p.name for p in (out / "patients").glob("*.json")}
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    # at most a patient whose last rename raced the signal; not the ones the workers were busy with
    assert len({p.name for p in (out / "patients").glob("*.json")} - at_signal) <= 1
    deadline = time.time() + 10
    while any(_alive(w) for w in workers_seen) and time.time() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers_seen if _alive(w)], "a worker outlived the terminated run"
    written = sorted(p.name for p in (out / "patients").glob("*.json"))
    assert len(written) < 12, "the run went on to the end after SIGTERM"
    time.sleep(1.0)
    assert sorted(p.name for p in (out / "patients").glob("*.json")) == written
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    assert not (out / ".lock").exists()
    assert not list(out.rglob(".*.tmp"))
