"""Cohort extraction on a two-worker Dask LocalCluster: same files as the local run, same resume."""

from __future__ import annotations

import json

import pandas as pd
import pytest

pytest.importorskip("distributed")

from DoseRadiomicsLib import synth  # noqa: E402
from DoseRadiomicsLib.cli import build_parser  # noqa: E402
from DoseRadiomicsLib.cohort import run_cohort  # noqa: E402

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


def test_dask_workers_are_pinned_to_one_thread_with_the_extractors_built():
    from dask.distributed import Client, LocalCluster

    from DoseRadiomicsLib.cohort import worker_threads
    from DoseRadiomicsLib.distributed import PLUGIN_NAME, _worker_plugin
    from DoseRadiomicsLib.pipeline import ExtractionOptions

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster) as client:
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
