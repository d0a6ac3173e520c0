"""Fixtures shared by the library tests: where the public test data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# CI and developers have ../shared beside the repository; DOSERADIOMICS_SHARED_DATA overrides it.
SHARED_DATA = Path(os.environ.get("DOSERADIOMICS_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"test data folder {SHARED_DATA} is missing: put the project's shared/ beside the "
                    "repository or set DOSERADIOMICS_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def lung1(shared_data) -> dict:
    d = shared_data / "pyradiomics_lung1"
    return {"ct": d / "lung1_image.nrrd", "label": d / "lung1_label.nrrd"}


@pytest.fixture(scope="session")
def breast_rt(shared_data) -> dict:
    d = shared_data / "dicompyler_breast_rt"
    return {n: d / f"{n}.dcm" for n in ("ct.0", "rtss", "rtdose", "rtplan")}


@pytest.fixture(scope="session")
def openkbp(shared_data):
    """Return a function giving the folder of one OpenKBP patient, e.g. openkbp('pt_1')."""
    root = shared_data / "openkbp_hn"
    return lambda pid: root / pid
