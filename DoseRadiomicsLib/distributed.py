"""Cohort extraction on a Dask distributed cluster: the same per-patient step as the local run.

``doseradiomics cohort-extract --manifest M --out DIR --scheduler tcp://HOST:8786`` sends each
patient to a worker of a running cluster; ``--local-cluster N`` starts N single-threaded worker
processes on this machine instead. Each worker runs :func:`cohort._extract_one`, which reads the
patient's files and writes ``DIR/patients/<id>.json`` itself, so:

- every worker must see the manifest's files and ``DIR`` under the same paths (a shared filesystem,
  e.g. NFS), and run the same DoseRadiomics, pyradiomics and Python versions (the settings hash and
  each patient's recorded library versions show it);
- resuming, ``failures.csv``, ``features.csv`` and ``cohort.json`` are the local run's, written by
  the process that called ``cohort-extract``; a worker that dies marks its patient failed
  (``WorkerDied``) and the run goes on.

Each worker is pinned to one thread (SimpleITK, BLAS/OpenMP) and builds the pyradiomics extractors
once, by a worker plugin, so that a patient pays for neither. See docs/distributed.md for running a
multi-node cluster.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from .errors import DoseRadiomicsError

PLUGIN_NAME = "doseradiomics-extraction"


def _setup_worker(options) -> None:
    from .cohort import init_worker
    init_worker(options)


def _worker_plugin(options):
    """A Dask worker plugin: one thread per library, extractors built before the first patient."""
    from distributed import WorkerPlugin

    class ExtractionWorkerSetup(WorkerPlugin):
        idempotent = False

        def __init__(self, options):
            self.options = options

        def setup(self, worker):
            _setup_worker(self.options)

    return ExtractionWorkerSetup(options)


def _client(scheduler: str | None, local_workers: int | None, say):
    """A connected Client, and the LocalCluster it owns (None for an external scheduler)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:
        raise DoseRadiomicsError("running on a Dask cluster needs the dask and distributed packages",
                                 hint="pip install dask distributed (the same versions on every node)") from exc
    from .cohort import _single_threaded_children

    if scheduler is not None:
        try:
            return Client(scheduler, timeout="30s"), None
        except (OSError, TimeoutError) as exc:
            raise DoseRadiomicsError(f"cannot reach the Dask scheduler at {scheduler}: {exc}",
                                     hint="start it with `dask scheduler` and check the address and port") from exc
    n = int(local_workers)
    if n < 1:
        raise DoseRadiomicsError(f"--local-cluster needs at least one worker, got {n}")
    with _single_threaded_children():     # worker processes inherit one-thread BLAS/OpenMP/ITK
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               host="127.0.0.1", silence_logs=logging.ERROR)
    say(f"cohort-extract: local Dask cluster with {n} worker(s) at {cluster.scheduler_address}")
    return Client(cluster), cluster


def dask_results(todo: list, options, settings_hash: str, out: Path, scheduler: str | None = None,
                 local_workers: int | None = None, say=lambda _m: None, task=None):
    """Each patient's result dict (as :func:`cohort._extract_one`, or ``task``, returns it), as patients finish.

    A generator: closing it (or an error in the caller) cancels what is left and shuts down the
    cluster it started.
    """
    from dask.distributed import as_completed
    from distributed.scheduler import KilledWorker

    from .cohort import _extract_one, _worker_died

    task = task or _extract_one
    client, cluster = _client(scheduler, local_workers, say)
    futures = {}
    try:
        client.register_plugin(_worker_plugin(options), name=PLUGIN_NAME)
        # keys unique per run: two runs on one scheduler with the same ids (another study) must
        # never be handed each other's results
        run = uuid.uuid4().hex
        for p in todo:
            fut = client.submit(task, p, options, settings_hash, str(out), pure=False,
                                key=f"doseradiomics-{run}-{settings_hash}-{p.patient_id}", retries=0)
            futures[fut.key] = (fut, p)
        for fut in as_completed([f for f, _ in futures.values()]):
            p = futures[fut.key][1]
            try:
                yield fut.result()
            except KilledWorker as exc:
                yield _worker_died(p.patient_id, exc)
            finally:
                fut.release()
    finally:
        for fut, _ in futures.values():
            if not fut.done():
                fut.cancel()
        client.close()
        if cluster is not None:
            cluster.close()
