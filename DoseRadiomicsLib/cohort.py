"""Cohort extraction: every patient of a manifest, in parallel, resumable, failures recorded.

``doseradiomics cohort-extract --manifest M --out DIR [--workers N]`` writes

- ``DIR/patients/<id>.json`` as each patient finishes (atomically: temp file + rename), holding the
  features row, the extraction record and an input fingerprint (sha256 of the CT, dose and GTV
  files' bytes, the GTV name/label, the dose unit and the settings hash);
- ``DIR/failures.csv`` (patient_id, kind, file, message): patients that failed; the run goes on;
- ``DIR/features.csv``: one row per extracted patient in manifest order, columns ``patient_id``,
  ``settings_hash``, then the features (diagnostics ``diag__*`` first, then ``<ROI>__<feature>``);
- ``DIR/cohort.json``: settings, counts, timings and library versions.

A rerun skips patients whose fingerprint is unchanged (a file whose size and modification time are
those recorded is not re-hashed); a killed run resumes and loses nothing; failed patients are tried
again. ``DIR/.lock`` keeps two runs from writing to one folder (a lock left by a dead process on this
machine is taken over).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import hashlib
import json
import multiprocessing
import os
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import __version__
from .errors import DoseRadiomicsError
from .fileio import atomic_write_text, jsonable
from .pipeline import write_features_csv
from .progress import ProgressBar, format_duration

PATIENT_SCHEMA = "doseradiomics-cohort-patient/1"
FAILURE_COLUMNS = ["patient_id", "kind", "file", "message"]
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

def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    p = Path(path)
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for q in files:
        if p.is_dir():  # a DICOM series folder: names matter as well as bytes
            h.update(str(q.relative_to(p)).encode() + b"\0")
        with open(q, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _file_stat(path: str) -> list:
    p = Path(path)
    if p.is_dir():
        st = [q.stat() for q in p.rglob("*") if q.is_file()]
        return [sum(s.st_size for s in st), max((s.st_mtime_ns for s in st), default=0), len(st)]
    s = p.stat()
    return [s.st_size, s.st_mtime_ns, 1]


def input_fingerprint(inputs, settings_hash: str, digests: dict | None = None) -> tuple:
    """(fingerprint, per-file info) of a patient's inputs under ``settings_hash``.

    ``digests`` (role -> sha256) skips re-reading files already hashed.
    """
    files = {}
    for role in ("ct", "dose", "gtv"):
        path = getattr(inputs, role)
        digest = (digests or {}).get(role) or _file_digest(path)
        files[role] = {"path": str(path), "sha256": digest, "stat": _file_stat(path)}
    payload = {"settings_hash": settings_hash, "patient_id": inputs.patient_id,
               "files": {r: f["sha256"] for r, f in files.items()},
               "gtv_name": inputs.gtv_name, "gtv_label": inputs.gtv_label, "dose_unit": inputs.dose_unit}
    fp = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return fp, files


def _unchanged(previous: dict | None, inputs, settings_hash: str) -> bool:
    """True when a stored patient result still matches the inputs and settings."""
    if not previous or previous.get("schema") != PATIENT_SCHEMA or previous.get("settings_hash") != settings_hash:
        return False
    old = previous.get("inputs", {})
    digests = {}
    for role in ("ct", "dose", "gtv"):
        info = old.get(role) or {}
        try:
            if info.get("stat") == _file_stat(getattr(inputs, role)):
                digests[role] = info.get("sha256")  # same size and mtime: trust the stored digest
        except OSError:
            return False
    fp, _ = input_fingerprint(inputs, settings_hash, digests)
    return fp == previous.get("fingerprint")


# --------------------------------------------------------------------------- files

def patient_json_path(out_dir, patient_id: str) -> Path:
    return Path(out_dir) / "patients" / f"{patient_id}.json"


def _read_patient_json(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None  # absent or unreadable: extract again


def _read_failures(path: Path) -> dict:
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["patient_id"]: r for r in csv.DictReader(fh)}


def _write_failures(path: Path, failures: dict, order: list) -> None:
    rank = {pid: i for i, pid in enumerate(order)}
    rows = sorted(failures.values(), key=lambda r: (rank.get(r["patient_id"], len(rank)), r["patient_id"]))
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FAILURE_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in FAILURE_COLUMNS})
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


@contextmanager
def _folder_lock(out_dir: Path, say):
    lock = out_dir / ".lock"
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for _attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                other = json.loads(lock.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                other = {}
            pid, host = other.get("pid"), other.get("host")
            if host == me["host"] and isinstance(pid, int) and not _pid_alive(pid):
                say(f"cohort-extract: taking over a stale lock left by process {pid} (no longer running)")
                lock.unlink(missing_ok=True)
                continue
            raise CohortLockError(
                f"another cohort-extract (process {pid} on {host}, started {other.get('started', '?')}) "
                "is writing to this folder", path=out_dir,
                hint=f"wait for it to finish, or use another --out; if no such run exists, delete {lock}")
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


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


def _init_worker() -> None:
    import SimpleITK as sitk
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        pass


def _extract_one(inputs, options, settings_hash: str, out_dir: str) -> dict:
    """Extract one patient and write its JSON (in the worker, so it is on disk as soon as it is done)."""
    from .pipeline import extract_patient

    t0 = time.perf_counter()
    pid = inputs.patient_id
    try:
        fingerprint, files = input_fingerprint(inputs, settings_hash)
        result = extract_patient(inputs, options)
        if result.record.get("settings_hash") != settings_hash:
            raise DoseRadiomicsError(f"the extraction's settings hash {result.record.get('settings_hash')} "
                                     f"differs from the run's {settings_hash}", patient=pid)
        doc = {"schema": PATIENT_SCHEMA, "patient_id": pid, "settings_hash": settings_hash,
               "fingerprint": fingerprint, "inputs": files, "seconds": round(time.perf_counter() - t0, 3),
               "features": dict(result.features), "record": result.record}
        atomic_write_text(patient_json_path(out_dir, pid), json.dumps(jsonable(doc), separators=(",", ":")))
        return {"patient_id": pid, "status": "done", "seconds": time.perf_counter() - t0}
    except Exception as exc:  # noqa: BLE001 - any failure is this patient's, recorded, and the run goes on
        return {"patient_id": pid, "status": "failed", "failure": _failure(pid, exc),
                "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- the run

def collect_features(manifest_ids: list, out_dir, settings_hash: str) -> pd.DataFrame:
    """The stored features of ``manifest_ids`` under ``settings_hash`` as one table (manifest order)."""
    rows, columns, seen = [], [], set()
    for pid in manifest_ids:
        doc = _read_patient_json(patient_json_path(out_dir, pid))
        if not doc or doc.get("settings_hash") != settings_hash:
            continue
        for c in doc["features"]:
            if c not in seen:
                seen.add(c)
                columns.append(c)
        rows.append(doc)
    cols = ["patient_id", "settings_hash"] + columns
    data = [[d["patient_id"], d["settings_hash"]]
            + [float("nan") if d["features"].get(c) is None else d["features"][c] for c in columns] for d in rows]
    return pd.DataFrame(data, columns=cols)


def _write_features_csv(path: Path, df: pd.DataFrame) -> None:
    if len(df):
        # the single-patient writer: full float precision, so a resumed run writes the same bytes
        write_features_csv(path, df.to_dict("records"))
    else:
        atomic_write_text(path, ",".join(df.columns) + "\n")


def run_cohort(manifest_path, out_dir, options=None, workers: int = 1, progress: bool = True,
               on_patient_done=None) -> CohortResult:
    """Extract every patient of the manifest into ``out_dir``; see the module docstring.

    ``workers`` > 1 runs patients in that many processes (spawned, one thread each; a script calling
    this with workers > 1 needs the usual ``if __name__ == "__main__":`` guard). ``on_patient_done(patient_id, status)`` is
    called in this process after each patient (status 'done', 'failed' or 'skipped').
    """
    from .environment import library_versions
    from .manifest import read_manifest
    from .pipeline import ExtractionOptions, options_settings_hash

    t_start = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    options = options or ExtractionOptions()
    manifest = read_manifest(manifest_path)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DoseRadiomicsError("the output path exists and is not a folder", path=out)
    (out / "patients").mkdir(parents=True, exist_ok=True)
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    settings_hash = options_settings_hash(options)
    patients = manifest.patients()
    order = [p.patient_id for p in patients]
    workers = max(1, int(workers))

    with _folder_lock(out, say):
        for tmp in (out / "patients").glob(".*.tmp"):  # half-written files of a killed run
            tmp.unlink(missing_ok=True)
        failures_path = out / "failures.csv"
        failures = {k: v for k, v in _read_failures(failures_path).items() if k in set(order)}
        missing = manifest.missing_files()
        bar = ProgressBar(len(patients), "cohort-extract", enabled=progress)
        n_done = n_skipped = n_failed = 0
        seconds_per_patient = []
        todo = []

        def finish(pid, status, failure=None, seconds=None):
            nonlocal n_done, n_skipped, n_failed
            if status == "failed":
                n_failed += 1
                failures[pid] = failure
                patient_json_path(out, pid).unlink(missing_ok=True)  # stale features must not survive
                _write_failures(failures_path, failures, order)
                bar.message(f"cohort-extract: {failure['message']}")
            elif status in ("done", "skipped"):
                if pid in failures:
                    del failures[pid]
                    _write_failures(failures_path, failures, order)
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
            elif _unchanged(_read_patient_json(patient_json_path(out, p.patient_id)), p, settings_hash):
                finish(p.patient_id, "skipped")
            else:
                todo.append(p)
        if not failures_path.exists():
            _write_failures(failures_path, failures, order)

        if todo:
            say(f"cohort-extract: {len(todo)} patient(s) to extract with {min(workers, len(todo))} worker(s), "
                f"{n_skipped} unchanged, {len(missing)} with missing files")
        if workers == 1 or len(todo) <= 1:
            for p in todo:
                r = _extract_one(p, options, settings_hash, str(out))
                finish(r["patient_id"], r["status"], r.get("failure"), r["seconds"])
        elif todo:
            ctx = multiprocessing.get_context("spawn")
            with _single_threaded_children():
                pool = cf.ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx,
                                              initializer=_init_worker)
            try:
                futures = {pool.submit(_extract_one, p, options, settings_hash, str(out)): p for p in todo}
                for fut in cf.as_completed(futures):
                    p = futures[fut]
                    try:
                        r = fut.result()
                    except cf.process.BrokenProcessPool as exc:
                        r = {"patient_id": p.patient_id, "status": "failed", "seconds": None,
                             "failure": {"patient_id": p.patient_id, "kind": "WorkerDied", "file": "",
                                         "message": f"patient {p.patient_id}: the worker process died "
                                                    f"(out of memory?): {exc}; rerun to retry"}}
                    finish(r["patient_id"], r["status"], r.get("failure"), r["seconds"])
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
        bar.close()

        features = collect_features(order, out, settings_hash)
        _write_features_csv(out / "features.csv", features)
        failures_df = pd.DataFrame([failures[k] for k in order if k in failures], columns=FAILURE_COLUMNS)
        elapsed = time.perf_counter() - t_start
        summary = {
            "doseradiomics_version": __version__,
            "manifest": str(manifest.path),
            "settings_hash": settings_hash,
            "options": options.to_dict(),
            "workers": workers,
            "counts": {"patients": len(order), "extracted": n_done, "unchanged": n_skipped,
                       "failed": n_failed, "in_features_csv": int(len(features))},
            "timings_s": {"total": round(elapsed, 3),
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
                    "Writes OUT/features.csv (one row per patient) and OUT/cohort.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--manifest", required=True, help="cohort manifest (CSV or TSV); paths relative to it")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                   help="patients extracted in parallel (processes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_extraction_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Run ``cohort-extract`` from parsed arguments (failed patients are listed, not fatal: exit 0)."""
    from .pipeline import options_from_args

    run_cohort(args.manifest, args.out, options_from_args(args), workers=args.workers,
                        progress=not args.quiet)
    return 0
