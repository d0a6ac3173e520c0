"""Discovery on a list of files (a study's files in Slicer's DICOM database): the folder rules, applied to
exactly the files given, wherever they lie.

The exports are written from a real OpenKBP patient by make_exports.py (pydicom), then scattered over
folders as a DICOM database that links files in place may hold them.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from DoseRadiomicsLib import discovery
from DoseRadiomicsLib.errors import InputError
from DoseRadiomicsLib.pipeline import PatientInputs, load_patient
from DoseRadiomicsLib.readers import read_ct

import make_exports as mx


@pytest.fixture(scope="module")
def patient(openkbp):
    return mx.load_patient(openkbp("pt_10"))


@pytest.fixture(scope="module")
def export(patient, tmp_path_factory):
    return mx.Export(patient, roi_names=("GTV 1", "BODY")).write(tmp_path_factory.mktemp("export") / "pt")


def _scatter(folder, target):
    """Every file of ``folder`` copied to one of three folders in turn (CT slices split between two)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    out = []
    for i, p in enumerate(files):
        sub = target / ("a", "b", "c")[i % 3]
        sub.mkdir(parents=True, exist_ok=True)
        out.append(_copy(p, sub / p.name))
    return out


def _copy(src, dst):
    shutil.copyfile(src, dst)
    return dst


def test_a_scattered_file_list_gives_the_folders_choices_and_the_whole_ct(patient, export, tmp_path):
    by_folder = discovery.discover_patient(export)
    files = _scatter(export, tmp_path / "db")
    by_list = discovery.discover_files(files)
    assert by_list.ct_series_uid == by_folder.ct_series_uid
    assert len(by_list.ct_files) == len(by_folder.ct_files) == patient["ct"].shape[0]
    assert by_list.rtstruct.name == by_folder.rtstruct.name and [d.name for d in by_list.doses] == ["RD.plan.dcm"]
    assert by_list.record["ct"]["why"] == by_folder.record["ct"]["why"] == "the series the RTSTRUCT references"
    assert by_list.record["files_given"] == len(files)
    assert "a LOCALIZER (scout) image" in by_list.record["skipped"]
    # The CT series comes from exactly its files across the folders; its first file's folder alone holds a third.
    whole = read_ct(by_list.ct, files=by_list.ct_files)
    assert np.array_equal(sitk.GetArrayFromImage(whole.image), patient["ct"])
    assert whole.details["slices"] == patient["ct"].shape[0]
    assert read_ct(by_list.ct).details["slices"] < patient["ct"].shape[0]


def test_a_list_holding_one_of_two_plan_doses_is_not_ambiguous_and_both_are_listed(patient, export, tmp_path):
    second = mx.copy_dataset(export / "RD.plan.dcm", tmp_path / "RD.second.dcm")
    files = [p for p in export.rglob("*") if p.is_file()]
    assert discovery.discover_files(files).doses[0].name == "RD.plan.dcm"
    with pytest.raises(InputError, match=r"2 plan doses .*RD\.plan\.dcm.*RD\.second\.dcm.*--dose FILE"):
        discovery.discover_files(files + [second])


def test_a_file_the_list_names_but_that_is_gone_is_named(export, tmp_path):
    files = [p for p in export.rglob("*") if p.is_file()] + [tmp_path / "moved" / "CT.9.dcm"]
    with pytest.raises(InputError, match=r"1 of the \d+ files do not exist: .*CT\.9\.dcm.*import the study again"):
        discovery.discover_files(files)


def test_extract_patient_dir_reads_a_series_split_over_folders_whole(patient, export, tmp_path):
    """An export whose CT slices lie in two folders: ``--patient-dir`` reads every slice of the series,
    not only those beside its first file."""
    folder = tmp_path / "split"
    for i, p in enumerate(sorted(q for q in export.iterdir() if q.is_file())):
        sub = folder / ("CT_1" if p.name.startswith("CT.") and i % 2 else "CT_2" if p.name.startswith("CT.") else "RT")
        sub.mkdir(parents=True, exist_ok=True)
        _copy(p, sub / p.name)
    loaded = load_patient(PatientInputs("p", None, None, None, gtv_name="GTV 1", patient_dir=str(folder)))
    assert np.array_equal(sitk.GetArrayFromImage(loaded.ct.image), patient["ct"])
    assert loaded.record["discovery"]["ct"]["files"] == patient["ct"].shape[0]
