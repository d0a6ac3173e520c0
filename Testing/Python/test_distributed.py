"""Cohort extraction on Dask: a two-worker LocalCluster writes the same files as the local run and
resumes the same; two runs sharing one scheduler with the same patient ids get their own results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("distributed")

from DoseRadiomicsLib import synth  # noqa: E402
from DoseRadiomicsLib.cli import build_parser  # noqa: E402
from DoseRadiomicsLib.cohort import run_cohort  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BadInputs"))
from make_corpus import write_tiny_cohort  # noqa: E402

N = 4


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    synth.generate_cohort(N, seed=41, out_dir=d)
    m = pd.read_csv(d / "manifest.csv")
    garbage = d / "garbage_dose.nrrd"
    garbage.write_bytes(b"NRRD0004\nthis is not an image\n")
    bad = m.copy()
    bad.loc[2, "dose"] = str(garbage)
    bad.to_csv(d / "manifest_bad.csv", index=False)
    return d / "manifest.csv", d / "manifest_bad.csv", m["patient_id"].tolist()


@pytest.fixture(scope="module")
def cluster():
    """A two-worker LocalCluster shared by the tests that need a scheduler of their own."""
    from dask.distributed import LocalCluster

    from DoseRadiomicsLib.cohort import THREAD_VARIABLES

    # make test pins the test processes' BLAS to one thread; the workers must pin themselves, so they
    # start here with another setting to override
    with pytest.MonkeyPatch.context() as mp:
        for k in THREAD_VARIABLES:
            mp.setenv(k, "2")
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                          host="127.0.0.1") as c:
            yield c


@pytest.fixture(scope="module")
def local_run(manifests, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    run_cohort(manifests[1], out, workers=1, progress=False)
    return out


def test_local_cluster_writes_what_the_local_run_writes_and_resumes_the_same(manifests, local_run, tmp_path):
    good, bad, ids = manifests
    r = run_cohort(bad, tmp_path, local_cluster=2, progress=False)
    assert (r.n_done, r.n_failed) == (N - 1, 1)
    for name in ("features.csv", "failures.csv"):
        assert (tmp_path / name).read_bytes() == (local_run / name).read_bytes(), name
    fails = pd.read_csv(tmp_path / "failures.csv")
    assert fails["patient_id"].tolist() == [ids[2]] and fails.loc[0, "kind"] == "InputError"
    engine = json.loads((tmp_path / "cohort.json").read_text())["engine"]
    assert engine == {"kind": "dask", "scheduler": None, "local_cluster": 2}
    # the file fixed and one result lost: only those two are extracted, on the cluster again
    (tmp_path / "patients" / f"{ids[0]}.json").unlink()
    r = run_cohort(good, tmp_path, local_cluster=2, progress=False)
    assert (r.n_done, r.n_skipped, r.n_failed) == (2, N - 2, 0)
    assert pd.read_csv(tmp_path / "failures.csv").empty
    reference = tmp_path.parent / "reference_good"
    run_cohort(good, reference, workers=1, progress=False)
    assert (tmp_path / "features.csv").read_bytes() == (reference / "features.csv").read_bytes()


def test_two_runs_on_one_scheduler_with_the_same_ids_get_their_own_results(cluster, tmp_path):
    """Another study with the same patient id, run on the same scheduler while the first run still
    holds its future (its result is being handled): with task keys made of the settings hash and the
    patient id, the scheduler hands the second run the first run's task, and its patient is lost."""
    first = write_tiny_cohort(tmp_path / "study_a", 1, seed=21)
    second = write_tiny_cohort(tmp_path / "study_b", 1, seed=22)    # the same id TINY01, other images
    runs = {}

    address = cluster.scheduler_address

    def start_the_other_study(pid, status):    # the first run's patient is done, its future still held
        runs["b"] = run_cohort(second, tmp_path / "out_b", scheduler=address, progress=False)

    runs["a"] = run_cohort(first, tmp_path / "out_a", scheduler=address, progress=False,
                           on_patient_done=start_the_other_study)
    assert "b" in runs and (runs["a"].n_done, runs["b"].n_done) == (1, 1)
    serial = {}
    for study, manifest in (("a", first), ("b", second)):
        serial[study] = run_cohort(manifest, tmp_path / f"serial_{study}", workers=1, progress=False)
        got = (tmp_path / f"out_{study}" / "features.csv").read_bytes()
        assert got == (tmp_path / f"serial_{study}" / "features.csv").read_bytes(), study
    # the two studies' images differ, so a mix-up could not go unseen
    a, b = (serial[s].features.iloc[0] for s in "ab")
    assert a["GTV__original_firstorder_Mean"] != b["GTV__original_firstorder_Mean"]


def test_dask_workers_are_pinned_to_one_thread_with_the_extractors_built(cluster):
    from dask.distributed import Client

    from DoseRadiomicsLib.cohort import worker_threads
    from DoseRadiomicsLib.distributed import PLUGIN_NAME, _worker_plugin
    from DoseRadiomicsLib.pipeline import ExtractionOptions

    with Client(cluster) as client:
        client.register_plugin(_worker_plugin(ExtractionOptions()), name=PLUGIN_NAME)
        infos = client.run(worker_threads)
    assert len(infos) == 2
    for info in infos.values():
        assert info["sitk_threads"] == 1 and info["radiomics_imported"]
        assert all(p["num_threads"] == 1 for p in info["threadpools"]), info["threadpools"]


def test_the_command_line_takes_a_scheduler_or_a_local_cluster():
    parser = build_parser()
    args = parser.parse_args(["cohort-extract", "--manifest", "m.csv", "--out", "o", "--scheduler",
                              "tcp://10.0.0.5:8786"])
    assert args.scheduler == "tcp://10.0.0.5:8786" and args.local_cluster is None
    args = parser.parse_args(["cohort-extract", "--manifest", "m.csv", "--out", "o", "--local-cluster", "2"])
    assert args.local_cluster == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["cohort-extract", "--manifest", "m.csv", "--out", "o", "--scheduler", "x",
                           "--local-cluster", "2"])
