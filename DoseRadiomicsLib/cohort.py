"""Cohort extraction: every patient of a manifest, in parallel, resumable, failures recorded.

``doseradiomics cohort-extract --manifest M --out DIR [--workers N]`` writes

- ``DIR/patients/<id>.json`` as each patient finishes (atomically: temp file + rename), holding the
  feature values (in the order of a column list stored once, ``DIR/columns/<id>.json``), the
  extraction record (slice, ROIs, alignment, dose statistics, timings, versions; the pyradiomics
  parameters live once in ``cohort.json``) and an input fingerprint (sha256 of the CT, dose and GTV
  files' bytes, the GTV name/label, the dose unit and the settings hash);
- ``DIR/failures.csv`` (patient_id, kind, file, message): patients that failed; the run goes on;
- ``DIR/features.csv``: one row per extracted patient in manifest order, columns ``patient_id``,
  ``settings_hash``, then the features (diagnostics ``diag__*`` first, then ``<ROI>__<feature>``);
- ``DIR/cohort.json``: settings (with both pyradiomics parameter sets), counts, timings, the engine
  and library versions;
- ``DIR/patients/<id>.png``: the worker's thumbnail of the patient's slice, and ``DIR/qa.html``, the
  cohort QA sheet built from them and the diagnostics at the end (:mod:`DoseRadiomicsLib.qa`).

Patients run one after another (``workers=1``), in a pool of worker processes on this machine
(``workers=N``: spawned once, one thread each, pyradiomics imported once per worker) or on a Dask
cluster (``scheduler=`` address, or ``local_cluster=N``; see :mod:`DoseRadiomicsLib.distributed`).
Every engine runs the same per-patient step and writes the same files.

A rerun skips patients whose fingerprint is unchanged (a file whose name, size, mtime, ctime and inode
are those recorded is not re-hashed: replacing a file changes its ctime or inode even when size and
mtime are set back) and whose stored ``compatibility`` digest (:func:`fingerprint.digest`: the built-in
phantom's features, bit for bit) is this installation's: the settings hash holds no library version, so
after a library change the patients are extracted again rather than mixed; a worker whose digest differs
from the run's (a Dask worker with other libraries) has its patients recorded as failures.
``cohort.json`` holds the run's full fingerprint, which ``train`` stores in the model file. An input is
checked to be a regular file or a folder of at most :data:`MAX_FOLDER_FILES` files before it is hashed;
a killed run resumes and loses nothing; failed patients are tried again. ``DIR/.lock`` keeps two runs
from writing to one folder (a lock left by a dead process on this machine is taken over). A pool worker
that dies fails its own patient only (the pool is rebuilt); pool workers exit within a second when their
run is killed (:func:`_die_with_parent`; a local Dask cluster's workers do so by distributed's own
watch of their parent); SIGTERM stops a run like Ctrl-C (``doseradiomics`` exits 143, the lock released).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import hashlib
import json
import logging
import multiprocessing
import os
import socket
import stat
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import __version__
from .errors import DoseRadiomicsError, InputError, OutputError
from .fileio import (atomic_write_text, check_output_folder, csv_cell_value, csv_safe_cell, ensure_folder, jsonable,
                     output_error)
from .pipeline import write_features_csv
from .progress import ProgressBar, format_duration

log = logging.getLogger(__name__)

PATIENT_SCHEMA = "doseradiomics-cohort-patient/2"
FAILURE_COLUMNS = ["patient_id", "kind", "file", "message"]
#: failures.csv is rewritten at most this often during a run (and once at its end): rewriting it
#: after every failure made 10,000 failing patients cost minutes. A killed run loses nothing by it:
#: failed patients are tried again on the next run.
FAILURES_WRITE_INTERVAL_S = 2.0
#: Most files an input folder (a DICOM series) may hold before it is refused unhashed.
MAX_FOLDER_FILES = 10_000
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")


class CohortLockError(DoseRadiomicsError):
    """Another cohort run is writing to the same output folder."""


@dataclass
class CohortResult:
    """What :func:`run_cohort` did. ``features``: one row per extracted patient (manifest order)."""

    features: pd.DataFrame
    failures: pd.DataFrame
    n_done: int
    n_skipped: int
    n_failed: int
    seconds: float
    out_dir: Path | None = None


# --------------------------------------------------------------------------- fingerprints

def input_files(path: str, patient=None) -> list:
    """The regular files of an input (itself, or a DICOM folder's files, sorted), checked before any
    is opened: a device (/dev/zero), a FIFO or a socket would hang the hash, and a folder of more
    than :data:`MAX_FOLDER_FILES` files (``/usr``) is not a DICOM series."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        raise InputError(f"the input cannot be read ({os.strerror(exc.errno) if exc.errno else exc})",
                         patient=patient, path=p) from None
    if stat.S_ISREG(mode):
        return [p]
    if not stat.S_ISDIR(mode):
        raise InputError("the input is not a regular file or a folder (a device, FIFO or socket)",
                         patient=patient, path=p, hint="give the image file or the DICOM series folder")
    files = []
    for q in p.rglob("*"):
        if q.is_file():           # regular files only (is_file follows links, refuses devices)
            files.append(q)
            if len(files) > MAX_FOLDER_FILES:
                raise InputError(f"the input folder holds more than {MAX_FOLDER_FILES:,} files; it is not "
                                 "one DICOM series", patient=patient, path=p,
                                 hint="give the folder of the patient's CT series only")
    return sorted(files)


def _file_digest(path: str, patient=None) -> str:
    """sha256 of an input's bytes (streamed; a folder's files with their relative names)."""
    h = hashlib.sha256()
    p = Path(path)
    for q in input_files(path, patient):
        if p.is_dir():  # a DICOM series folder: names matter as well as bytes
            h.update(str(q.relative_to(p)).encode() + b"\0")
        with open(q, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _file_stat(path: str, patient=None) -> list:
    """Per file: relative name, size, mtime, ctime and inode. Replacing a file (even by one of equal
    size with an older mtime, as ``cp -p`` or ``rsync -t`` leave it) changes its ctime or inode,
    which no user tool can set back, so a matching stat is a safe reason to reuse the stored sha256."""
    p = Path(path)
    out = []
    for q in input_files(path, patient):
        s = q.stat()
        out.append([str(q.relative_to(p)) if q != p else "", s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino])
    return out


def input_roles(inputs) -> tuple:
    """The inputs whose bytes decide a patient's result: the export folder (it holds every file the
    discovery may choose) or the CT, dose and GTV files."""
    return ("patient_dir",) if getattr(inputs, "patient_dir", None) else ("ct", "dose", "gtv")


def input_fingerprint(inputs, settings_hash: str, digests: dict | None = None) -> tuple:
    """(fingerprint, per-file info) of a patient's inputs under ``settings_hash``.

    ``digests`` (role -> sha256) skips re-reading files already hashed.
    """
    files = {}
    for role in input_roles(inputs):
        path = getattr(inputs, role)
        stat_now = _file_stat(path, inputs.patient_id)   # validates the path before any hashing
        digest = (digests or {}).get(role) or _file_digest(path, inputs.patient_id)
        files[role] = {"path": str(path), "sha256": digest, "stat": stat_now}
    payload = {"settings_hash": settings_hash, "patient_id": inputs.patient_id,
               "files": {r: f["sha256"] for r, f in files.items()},
               "gtv_name": inputs.gtv_name, "gtv_label": inputs.gtv_label, "dose_unit": inputs.dose_unit}
    if getattr(inputs, "patient_dir", None):  # the picks inside the folder decide too
        payload["picks"] = [inputs.ct, inputs.dose, inputs.gtv]
    fp = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return fp, files


def _unchanged(previous: dict | None, inputs, settings_hash: str, out_dir=None, compatibility=None) -> bool:
    """True when a stored patient result still matches the inputs and settings (and is complete), and,
    with ``compatibility`` (:func:`fingerprint.digest`), was computed by an installation that computes
    the reference features bit for bit as this one (the settings hash holds no library version)."""
    if not previous or previous.get("schema") != PATIENT_SCHEMA or previous.get("settings_hash") != settings_hash:
        return False
    if compatibility is not None and previous.get("compatibility") != compatibility:
        return False
    if out_dir is not None and patient_features(previous, out_dir) is None:
        return False      # its column list is missing or does not fit: extract again
    old = previous.get("inputs", {})
    digests = {}
    for role in input_roles(inputs):
        info = old.get(role) or {}
        try:
            if info.get("stat") == _file_stat(getattr(inputs, role)):
                digests[role] = info.get("sha256")  # the very same files: trust the stored digest
        except (OSError, DoseRadiomicsError):
            return False
    fp, _ = input_fingerprint(inputs, settings_hash, digests)
    return fp == previous.get("fingerprint")


# --------------------------------------------------------------------------- files

def patient_json_path(out_dir, patient_id: str) -> Path:
    return Path(out_dir) / "patients" / f"{patient_id}.json"


def columns_path(out_dir, columns_id: str) -> Path:
    return Path(out_dir) / "columns" / f"{columns_id}.json"


def _store_columns(out_dir, columns: list) -> str:
    """Write the column list once (named by its own hash, so concurrent workers write the same file)."""
    text = json.dumps(columns, separators=(",", ":"))
    columns_id = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = columns_path(out_dir, columns_id)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    return columns_id


def _read_columns(out_dir, columns_id, cache: dict) -> list | None:
    if columns_id not in cache:
        try:
            cache[columns_id] = json.loads(columns_path(out_dir, columns_id).read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            cache[columns_id] = None
    return cache[columns_id]


def patient_features(doc: dict, out_dir, cache: dict | None = None) -> dict | None:
    """The feature row (column -> value, NaN for a null) of a stored patient; None if unreadable."""
    columns = _read_columns(out_dir, doc.get("columns"), {} if cache is None else cache)
    values = doc.get("values")
    if columns is None or not isinstance(values, list) or len(values) != len(columns):
        return None
    return {c: float("nan") if v is None else v for c, v in zip(columns, values)}


def _slim_stability(screen: dict, columns: list) -> dict:
    """The stability screen's record as a patient file keeps it: the unstable features as indices into
    the stored column list and their largest relative change (3 digits), not ~1,000 names with a change
    per perturbation (which doubled the file); :func:`stored_stability` gives the full form back."""
    index = {c: i for i, c in enumerate(columns)}
    unstable = screen.get("unstable") or {}
    kept = [(index[n], max(ch.values(), default=0.0)) for n, ch in unstable.items() if n in index]
    slim = {k: v for k, v in screen.items() if k != "unstable"}
    slim["unstable_columns"] = [i for i, _ in kept]
    slim["unstable_max_change"] = [float(f"{c:.3g}") for _, c in kept]
    return slim


def stored_stability(doc: dict, out_dir, cache: dict | None = None) -> dict | None:
    """A stored patient's stability record with ``unstable`` as feature name -> {"max": change}."""
    screen = (doc.get("record") or {}).get("stability")
    if not isinstance(screen, dict) or "unstable_columns" not in screen:
        return screen
    columns = _read_columns(out_dir, doc.get("columns"), {} if cache is None else cache)
    if columns is None:
        return None
    full = {k: v for k, v in screen.items() if k not in ("unstable_columns", "unstable_max_change")}
    full["unstable"] = {columns[i]: {"max": c} for i, c in zip(screen["unstable_columns"], screen["unstable_max_change"])}
    return full


def _read_patient_json(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None  # absent or unreadable: extract again


def _read_failures(path: Path) -> dict:
    """The previous run's failures. The file is ours (UTF-8) but may have been re-saved by a
    spreadsheet (BOM, CRLF, Windows-1252): read what can be read; anything else is dropped, since
    failed patients are tried again and the file is rewritten."""
    if not path.is_file():
        return {}
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
            rows = ({k: csv_cell_value(v) if isinstance(v, str) else v for k, v in r.items()}
                    for r in csv.DictReader(fh))
            return {r["patient_id"]: r for r in rows if r.get("patient_id")}
    except (OSError, csv.Error):
        return {}


def _write_failures(path: Path, failures: dict, order: list) -> None:
    rank = {pid: i for i, pid in enumerate(order)}
    rows = sorted(failures.values(), key=lambda r: (rank.get(r["patient_id"], len(rank)), r["patient_id"]))
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FAILURE_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: csv_safe_cell(r.get(k, "")) for k in FAILURE_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def _failure(pid: str, exc: BaseException) -> dict:
    if isinstance(exc, DoseRadiomicsError):
        return {"patient_id": pid, "kind": exc.kind, "file": exc.path or "", "message": str(exc)}
    return {"patient_id": pid, "kind": type(exc).__name__, "file": "",
            "message": f"patient {pid}: unexpected error: {exc}"}


# --------------------------------------------------------------------------- lock

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _try_os_lock(fd: int) -> bool:
    """Take an exclusive, non-blocking OS lock on ``fd``; the OS drops it when the process dies."""
    try:
        if os.name == "nt":
            import msvcrt
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _read_lock(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def _refuse(out_dir: Path, lock: Path, other: dict):
    raise CohortLockError(
        f"another cohort-extract (process {other.get('pid', '?')} on {other.get('host', '?')}, started "
        f"{other.get('started', '?')}) is writing to this folder", path=out_dir,
        hint=f"wait for it to finish, or use another --out; if no such run exists, delete {lock}")


@contextmanager
def _folder_lock(out_dir: Path, say):
    """One cohort run per output folder.

    The run holds an OS lock on ``.lock`` for its whole life, so two runs can never both take over
    a stale lock; the file also names the owner, so a lock held by a live process (or by a run on
    another host, which cannot be checked) is refused with who holds it.
    """
    lock = out_dir / ".lock"
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            raise output_error(exc, lock, "the run's lock file cannot be created") from None
        if not _try_os_lock(fd):
            other = _read_lock(fd)
            os.close(fd)
            _refuse(out_dir, lock, other)
        try:   # a finishing run may have removed the file between our open and our lock
            current = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if not current:
            os.close(fd)
            continue
        other = _read_lock(fd)
        pid, host = other.get("pid"), other.get("host")
        if other and (host != me["host"] or not isinstance(pid, int) or _pid_alive(pid)):
            os.close(fd)
            _refuse(out_dir, lock, other)
        if other:
            say(f"cohort-extract: taking over a stale lock left by process {pid} (no longer running)")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode("utf-8"))
        break
    try:
        yield
    finally:
        if os.name == "nt":   # Windows cannot remove an open file
            os.close(fd)
            lock.unlink(missing_ok=True)
        else:
            lock.unlink(missing_ok=True)
            os.close(fd)


# --------------------------------------------------------------------------- workers

@contextmanager
def _single_threaded_children():
    """Spawned workers inherit these: 2 workers then use 2 cores, not 2 x all cores."""
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    os.environ.update({k: "1" for k in THREAD_VARIABLES})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def pin_threads() -> None:
    """One thread for SimpleITK/ITK and for numpy's BLAS/OpenMP pools in this process."""
    os.environ.update({k: "1" for k in THREAD_VARIABLES})   # for anything started later
    import SimpleITK as sitk
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        pass


@contextmanager
def _one_thread_here():
    """This process on one thread while it extracts, as a pool worker is (:func:`pin_threads`), restored
    afterwards: a multi-threaded BLAS gives other last digits in some features (glcm MCC's eigenvalues,
    seen with numpy 1.26's OpenBLAS), and the run's bytes must not depend on the number of workers."""
    import SimpleITK as sitk
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            yield
        else:
            with threadpool_limits(1):
                yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def _serial_results(todo: list, options, settings_hash: str, out: Path, task=None):
    """The patients extracted one after another in this process (one thread, as a worker).

    ``task`` (default :func:`_extract_one`): the per-patient step, ``task(item, options, settings_hash,
    out_dir) -> result dict``; every engine takes it, so other per-patient jobs (``robustness``) run
    on the same engines."""
    task = task or _extract_one
    with _one_thread_here():
        for p in todo:
            yield task(p, options, settings_hash, str(out))


def worker_threads() -> dict:
    """What a worker runs with: the thread variables, SimpleITK's thread count and the BLAS/OpenMP pools."""
    import SimpleITK as sitk
    info = {"pid": os.getpid(), "env": {k: os.environ.get(k) for k in THREAD_VARIABLES},
            "sitk_threads": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(), "threadpools": []}
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = [{"api": p.get("internal_api"), "num_threads": p.get("num_threads")}
                               for p in threadpool_info()]
    except ImportError:
        pass
    info["radiomics_imported"] = "radiomics" in sys.modules
    return info


def init_worker(options=None) -> None:
    """A worker's start: pin threads to one, import pyradiomics, build the extractors and compute
    the compatibility digest once, so that no patient pays for them."""
    pin_threads()
    if options is not None:
        from .fingerprint import digest
        from .pipeline import extractors
        extractors(options)
        digest(options)


_init_worker = init_worker   # the earlier name

#: How often a pool worker checks that the run that started it is still alive (seconds).
PARENT_CHECK_INTERVAL_S = 0.5


def _die_with_parent() -> None:
    """A pool worker whose parent run died (killed, so the pool could not stop it) exits at once:
    it must not go on writing into the folder without the run's lock."""
    import threading

    parent = os.getppid()

    def watch():
        while True:
            time.sleep(PARENT_CHECK_INTERVAL_S)
            if os.getppid() != parent:   # re-parented: the run is gone
                os._exit(1)

    threading.Thread(target=watch, name="doseradiomics-parent-watch", daemon=True).start()


def _pool_worker_start(options=None) -> None:
    _die_with_parent()
    init_worker(options)


def _extract_one(inputs, options, settings_hash: str, out_dir: str) -> dict:
    """Extract one patient and write its JSON (in the worker, so it is on disk as soon as it is done)."""
    from .fingerprint import digest
    from .pipeline import extract_patient

    t0 = time.perf_counter()
    pid = inputs.patient_id
    try:
        fingerprint, files = input_fingerprint(inputs, settings_hash)
        compatibility = digest(options)     # this worker's installation (once per process)
        result = extract_patient(inputs, options)
        if result.record.get("settings_hash") != settings_hash:
            raise DoseRadiomicsError(f"the extraction's settings hash {result.record.get('settings_hash')} "
                                     f"differs from the run's {settings_hash}", patient=pid)
        try:  # the QA sheet's picture, drawn here so that the sheet itself reads no image
            from .qa import thumbnail_path
            from .render import render_thumbnail_png

            render_thumbnail_png(result.rois, thumbnail_path(out_dir, pid))
        except Exception as exc:  # noqa: BLE001 - a picture that cannot be drawn costs no features
            log.warning("patient %s: no QA thumbnail (%s)", pid, exc)
        columns_id = _store_columns(out_dir, list(result.features))
        record = {k: v for k, v in result.record.items() if k != "parameters"}   # once, in cohort.json
        if isinstance(record.get("stability"), dict):
            record["stability"] = _slim_stability(record["stability"], list(result.features))
        doc = {"schema": PATIENT_SCHEMA, "patient_id": pid, "settings_hash": settings_hash,
               "fingerprint": fingerprint, "compatibility": compatibility, "inputs": files, "seconds": round(time.perf_counter() - t0, 3),
               "record": record, "columns": columns_id, "values": list(result.features.values())}
        atomic_write_text(patient_json_path(out_dir, pid), json.dumps(jsonable(doc), separators=(",", ":")))
        return {"patient_id": pid, "status": "done", "seconds": time.perf_counter() - t0}
    except Exception as exc:  # noqa: BLE001 - any failure is this patient's, recorded, and the run goes on
        return {"patient_id": pid, "status": "failed", "failure": _failure(pid, exc),
                "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- the run

def collect_features(manifest_ids: list, out_dir, settings_hash: str) -> pd.DataFrame:
    """The stored features of ``manifest_ids`` under ``settings_hash`` as one table (manifest order)."""
    rows, columns, seen, cache = [], [], set(), {}
    for pid in manifest_ids:
        doc = _read_patient_json(patient_json_path(out_dir, pid))
        if not doc or doc.get("schema") != PATIENT_SCHEMA or doc.get("settings_hash") != settings_hash:
            continue
        features = patient_features(doc, out_dir, cache)
        if features is None:
            continue
        for c in features:
            if c not in seen:
                seen.add(c)
                columns.append(c)
        rows.append((doc, features))
    cols = ["patient_id", "settings_hash"] + columns
    nan = float("nan")
    data = [[d["patient_id"], d["settings_hash"]] + [f.get(c, nan) for c in columns] for d, f in rows]
    return pd.DataFrame(data, columns=cols)


def _write_features_csv(path: Path, df: pd.DataFrame) -> None:
    if len(df):
        # the single-patient writer: full float precision, so a resumed run writes the same bytes
        columns = list(df.columns)      # rows as dicts, without DataFrame.to_dict's per-cell boxing
        write_features_csv(path, [dict(zip(columns, row)) for row in df.itertuples(index=False, name=None)])
    else:
        atomic_write_text(path, ",".join(df.columns) + "\n")


def _worker_died(pid: str, exc: BaseException) -> dict:
    return {"patient_id": pid, "status": "failed", "seconds": None,
            "failure": {"patient_id": pid, "kind": "WorkerDied", "file": "",
                        "message": f"patient {pid}: the worker process died (out of memory?): {exc}; "
                                   "rerun to retry"}}


def worker_pool(workers: int, options=None) -> cf.ProcessPoolExecutor:
    """``workers`` spawned processes, each pinned to one thread and with pyradiomics loaded once."""
    ctx = multiprocessing.get_context("spawn")
    with _single_threaded_children():
        return cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_pool_worker_start,
                                      initargs=(options,))


def _pool_results(todo: list, options, settings_hash: str, out: Path, workers: int, task=None):
    """Each patient's result dict from a pool of spawned, single-threaded worker processes.

    A worker that dies (killed, out of memory) breaks the whole pool and every unfinished patient's
    future with it, but only its own patient may fail: the pool is rebuilt and the unfinished
    patients resubmitted; after a second break the rest run one at a time, where a break names
    exactly the patient that caused it.
    """
    task = task or _extract_one
    pending = {p.patient_id: p for p in todo}
    breaks = 0
    while pending:
        pool = worker_pool(min(workers, len(pending)) if breaks < 2 else 1, options)
        broke = False
        try:
            if breaks < 2:
                futures = {pool.submit(task, p, options, settings_hash, str(out)): p
                           for p in pending.values()}
                for fut in cf.as_completed(futures):
                    try:
                        result = fut.result()
                    except cf.process.BrokenProcessPool:
                        broke = True
                        continue
                    pending.pop(futures[fut].patient_id, None)
                    yield result
                breaks += broke
            else:   # one at a time: a break is this patient's own
                while pending and not broke:
                    p = next(iter(pending.values()))
                    try:
                        result = pool.submit(task, p, options, settings_hash, str(out)).result()
                    except cf.process.BrokenProcessPool as exc:
                        result, broke = _worker_died(p.patient_id, exc), True
                    pending.pop(p.patient_id)
                    yield result
        except BaseException:
            _stop_pool(pool)
            raise
        pool.shutdown(wait=not broke)


def _stop_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Stop a pool now (Ctrl-C, SIGTERM): cancelling its futures is not enough, since the patients already
    handed to the workers would run on, and the interpreter's exit would wait for them; a stopped worker
    leaves at most a temporary file (every write is atomic)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def run_cohort(manifest_path, out_dir, options=None, workers: int = 1, progress: bool = True,
               on_patient_done=None, scheduler: str | None = None,
               local_cluster: int | None = None) -> CohortResult:
    """Extract every patient of the manifest into ``out_dir``; see the module docstring.

    ``workers`` > 1 runs patients in that many processes (spawned, one thread each; a script calling
    this with workers > 1 needs the usual ``if __name__ == "__main__":`` guard). ``scheduler`` (a Dask
    scheduler address, e.g. ``tcp://10.0.0.5:8786``) or ``local_cluster`` (that many single-threaded
    Dask worker processes on this machine) run the patients on Dask instead; the output folder and the
    input files must then be reachable under the same paths from every worker.
    ``on_patient_done(patient_id, status)`` is called in this process after each patient (status
    'done', 'failed' or 'skipped').
    """
    from .environment import library_versions
    from .fingerprint import compute as compute_fingerprint, digest
    from .manifest import read_manifest
    from .pipeline import ExtractionOptions, extractors, options_settings_hash

    t_start = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    options = options or ExtractionOptions()
    manifest = read_manifest(manifest_path)
    out = Path(out_dir)
    check_output_folder(out)   # before the extraction, not after it
    ensure_folder(out / "patients")
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    settings_hash = options_settings_hash(options)
    compatibility = digest(options)
    patients = manifest.patients()
    order = [p.patient_id for p in patients]
    workers = max(1, int(workers))

    with _folder_lock(out, say):
        for folder in (out, out / "patients", out / "columns"):   # half-written files of a killed run
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
        failures_path = out / "failures.csv"
        failures = {k: v for k, v in _read_failures(failures_path).items() if k in set(order)}
        missing = manifest.missing_files()
        bar = ProgressBar(len(patients), "cohort-extract", enabled=progress)
        n_done = n_skipped = n_failed = 0
        seconds_per_patient = []
        todo = []
        written = {"dirty": not failures_path.exists(), "at": time.monotonic()}

        def save_failures(now: bool = False):
            if written["dirty"] and (now or time.monotonic() - written["at"] >= FAILURES_WRITE_INTERVAL_S):
                _write_failures(failures_path, failures, order)
                written.update(dirty=False, at=time.monotonic())

        def finish(pid, status, failure=None, seconds=None):
            nonlocal n_done, n_skipped, n_failed
            if status == "failed" and failure.get("kind") == OutputError.__name__:
                # the output folder failed, not the patient: every other patient would fail alike
                raise OutputError(failure["message"])
            if status == "failed":
                n_failed += 1
                failures[pid] = failure
                patient_json_path(out, pid).unlink(missing_ok=True)  # stale features must not survive
                written["dirty"] = True
                save_failures()
                bar.message(f"cohort-extract: {failure['message']}")
            elif status in ("done", "skipped"):
                if pid in failures:
                    del failures[pid]
                    written["dirty"] = True
                    save_failures()
                if status == "done":
                    n_done += 1
                    if seconds is not None:
                        seconds_per_patient.append(seconds)
                else:
                    n_skipped += 1
            bar.update(worked=status != "skipped", failed=status == "failed", note=pid)
            if on_patient_done is not None:
                on_patient_done(pid, status)

        for p in patients:
            if p.patient_id in missing:
                finish(p.patient_id, "failed", _failure(p.patient_id, missing[p.patient_id]))
            elif _unchanged(_read_patient_json(patient_json_path(out, p.patient_id)), p, settings_hash, out,
                            compatibility):
                finish(p.patient_id, "skipped")
            else:
                todo.append(p)
        save_failures(now=True)

        dask = scheduler is not None or local_cluster is not None
        engine = ({"kind": "dask", "scheduler": scheduler, "local_cluster": local_cluster} if dask
                  else {"kind": "processes" if workers > 1 and len(todo) > 1 else "this process",
                        "workers": min(workers, max(len(todo), 1))})
        if todo:
            where = (f"on the Dask cluster at {scheduler}" if scheduler is not None else
                     f"on a local Dask cluster of {local_cluster} worker(s)" if dask else
                     f"with {min(workers, len(todo))} worker(s)")
            say(f"cohort-extract: {len(todo)} patient(s) to extract {where}, "
                f"{n_skipped} unchanged, {len(missing)} with missing files")
        if dask and todo:
            from .distributed import dask_results
            results = dask_results(todo, options, settings_hash, out, scheduler=scheduler,
                                   local_workers=local_cluster, say=say)
        elif workers == 1 or len(todo) <= 1:
            results = _serial_results(todo, options, settings_hash, out)
        else:
            results = _pool_results(todo, options, settings_hash, out, workers)
        try:
            for r in results:
                finish(r["patient_id"], r["status"], r.get("failure"), r["seconds"])
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()      # a generator's finally: shuts its pool or cluster down
        bar.close()
        # A worker elsewhere (Dask) whose libraries compute differently: its patients are not mixed in.
        for pid in order:
            doc = _read_patient_json(patient_json_path(out, pid))
            if doc and doc.get("settings_hash") == settings_hash and doc.get("compatibility") != compatibility:
                n_failed += 1
                failures[pid] = {"patient_id": pid, "kind": "IncompatibleWorker", "file": "",
                                 "message": f"patient {pid}: extracted by a worker whose libraries compute the "
                                            f"reference features differently from this installation "
                                            f"(fingerprint {doc.get('compatibility')} vs {compatibility}); "
                                            "give every worker the same environment and rerun"}
                patient_json_path(out, pid).unlink(missing_ok=True)
        save_failures(now=True)

        features = collect_features(order, out, settings_hash)
        _write_features_csv(out / "features.csv", features)
        from .pipeline import feature_columns
        from .stability import SIDECAR, cohort_sidecar_text   # which features are unstable, per patient
        atomic_write_text(out / SIDECAR, cohort_sidecar_text(out, order, settings_hash,
                                                             feature_columns(features.columns)))
        failures_df = pd.DataFrame([failures[k] for k in order if k in failures], columns=FAILURE_COLUMNS)
        t_qa = time.perf_counter()
        from .qa import write_qa_sheet

        prescribed = (manifest.df["prescribed_dose"].to_dict() if "prescribed_dose" in manifest.df else None)
        write_qa_sheet(out, features, failures_df, prescribed, title=f"cohort QA: {manifest.path.name}")
        qa_seconds = time.perf_counter() - t_qa
        elapsed = time.perf_counter() - t_start
        summary = {
            "doseradiomics_version": __version__,
            "manifest": str(manifest.path),
            "settings_hash": settings_hash,
            "options": options.to_dict(),
            "fingerprint": compute_fingerprint(options),    # train stores it in the model file
            "parameters": {m: e.parameters for m, e in extractors(options).items()},
            "workers": workers,
            "engine": engine,
            "counts": {"patients": len(order), "extracted": n_done, "unchanged": n_skipped,
                       "failed": n_failed, "in_features_csv": int(len(features))},
            "timings_s": {"total": round(elapsed, 3), "qa_sheet": round(qa_seconds, 3),
                          "extraction_per_patient_mean": round(sum(seconds_per_patient) / len(seconds_per_patient), 3)
                          if seconds_per_patient else None},
            "started": started,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "library_versions": library_versions(),
        }
        atomic_write_text(out / "cohort.json", json.dumps(summary, indent=2))
    say(f"cohort-extract: {len(features)} of {len(order)} patients in {out / 'features.csv'} "
        f"({n_done} extracted, {n_skipped} unchanged, {n_failed} failed"
        + (f": see {out / 'failures.csv'}" if n_failed else "") + f") in {format_duration(elapsed)}")
    return CohortResult(features=features, failures=failures_df, n_done=n_done, n_skipped=n_skipped,
                        n_failed=n_failed, seconds=elapsed, out_dir=out)


# --------------------------------------------------------------------------- command line

def register_cli(subparsers) -> None:
    """Add the ``cohort-extract`` subcommand."""
    from .pipeline import add_extraction_options

    p = subparsers.add_parser(
        "cohort-extract", help="features of every patient in a manifest, in parallel, resumable",
        description="Runs the single-patient extraction for every row of a cohort manifest (CSV/TSV with "
                    "patient_id, ct, dose, gtv, ...). Each patient is saved in OUT/patients/<id>.json as it "
                    "finishes; a rerun skips patients whose files and settings are unchanged and resumes an "
                    "interrupted run. Failing patients are listed in OUT/failures.csv and the run goes on. "
                    "Writes OUT/features.csv (one row per patient) OUT/feature_stability.json (which features are numerically unstable in which patients) and OUT/cohort.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--manifest", required=True, help="cohort manifest (CSV or TSV); paths relative to it")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                   help="patients extracted in parallel (processes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    d = p.add_argument_group("running on a Dask cluster (instead of --workers)")
    g = d.add_mutually_exclusive_group()
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786; every worker must "
                        "see the manifest's files and --out under the same paths (a shared filesystem)")
    g.add_argument("--local-cluster", type=int, metavar="N",
                   help="start a Dask cluster of N single-threaded worker processes on this machine")
    add_extraction_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Run ``cohort-extract`` from parsed arguments (failed patients are listed, not fatal: exit 0)."""
    from .pipeline import options_from_args

    run_cohort(args.manifest, args.out, options_from_args(args), workers=args.workers,
               progress=not args.quiet, scheduler=args.scheduler, local_cluster=args.local_cluster)
    return 0
