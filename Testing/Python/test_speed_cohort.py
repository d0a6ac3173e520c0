"""Cohort speed work keeps behaviour: pinned single-threaded workers, slim patient files, same output."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from DoseRadiomicsLib import synth
from DoseRadiomicsLib.cohort import (THREAD_VARIABLES, columns_path, patient_features, run_cohort,
                                     worker_pool, worker_threads)
from DoseRadiomicsLib.pipeline import ExtractionOptions

N = 4


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    synth.generate_cohort(N, seed=33, out_dir=d)
    out = tmp_path_factory.mktemp("serial")
    return d / "manifest.csv", out, run_cohort(d / "manifest.csv", out, workers=1, progress=False)


def test_pool_workers_run_one_thread_and_have_pyradiomics_loaded_before_the_first_patient(monkeypatch):
    for k in THREAD_VARIABLES:  # make test pins the test process to one thread: the workers must pin themselves
        monkeypatch.setenv(k, "2")
    with worker_pool(2, ExtractionOptions()) as pool:
        infos = [f.result() for f in [pool.submit(worker_threads) for _ in range(4)]]
    for info in infos:
        assert info["sitk_threads"] == 1
        assert all(info["env"][k] == "1" for k in THREAD_VARIABLES)
        assert all(p["num_threads"] == 1 for p in info["threadpools"]), info["threadpools"]
        assert info["radiomics_imported"]          # imported by the initializer, not by a patient
    assert any(p["api"] in ("openblas", "mkl", "blis") for info in infos for p in info["threadpools"])


def test_patient_file_is_slim_and_keeps_what_a_reviewer_needs(cohort):
    manifest, out, result = cohort
    feats = pd.read_csv(out / "features.csv")
    pid = feats.loc[0, "patient_id"]
    path = out / "patients" / f"{pid}.json"
    doc = json.loads(path.read_text())
    assert path.stat().st_size < 120_000                  # was ~310 KB with the column names inline
    record = doc["record"]
    for key in ("cross_section", "roi_pixels", "alignment", "gtv_dose_statistics", "timings_s",
                "library_versions", "settings_hash", "inputs"):
        assert key in record, key
    assert "parameters" not in record
    summary = json.loads((out / "cohort.json").read_text())
    assert set(summary["parameters"]) == {"CT", "dose"}
    assert summary["parameters"]["dose"]["setting"]["binWidth"] == 0.5
    row = patient_features(doc, out)
    assert list(row) == list(feats.columns[2:])
    assert row["GTV__original_firstorder_Mean"] == feats.loc[0, "GTV__original_firstorder_Mean"]
    assert row["diag__slice_index"] == record["cross_section"]["index"]


def test_two_workers_write_the_same_bytes_and_a_lost_column_list_means_extracting_again(cohort, tmp_path):
    manifest, serial, _ = cohort
    r = run_cohort(manifest, tmp_path, workers=2, progress=False)
    assert (r.n_done, r.n_failed) == (N, 0)
    assert (tmp_path / "features.csv").read_bytes() == (serial / "features.csv").read_bytes()
    doc = json.loads(next((tmp_path / "patients").glob("*.json")).read_text())
    columns_path(tmp_path, doc["columns"]).unlink()      # the values alone cannot be read back
    again = run_cohort(manifest, tmp_path, workers=1, progress=False)
    assert (again.n_done, again.n_skipped) == (N, 0)
    assert (tmp_path / "features.csv").read_bytes() == (serial / "features.csv").read_bytes()
