"""The panel's "Find in folder..." and "From DICOM study": the library's discovery (the rules of
``extract --patient-dir``) in the Slicer module, on the real slicer-core scene.

The export is built from the real OpenKBP pt_10 by make_exports.py (pydicom, not our readers): CT
slices, a scout, the RTSTRUCT ('GTV 1', 'Spinal Cord'), the RTPLAN and three BEAM doses of that plan, all in the
CT's folder. Without Slicer's DICOM module (headless) the Logic reads the files with the library; the
features from its nodes must equal the command line's. With the DICOM module, Slicer's own
DICOMLib/DICOMUtils.py (read from the Slicer clone at v5.8.0 and v5.12.3) runs on the fakes of
dicom_database_fakes.py (ctkDICOMDatabase, ctkDICOMIndexer and the two DICOM plugins as documented).
"""

from __future__ import annotations

import csv
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import dicom_database_fakes as fakes
import qt_fakes
import slicer_standins
import widget_harness
from conftest import _make_slicer_session

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Python"))
import make_exports as mx  # noqa: E402

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="module")
def patient():
    import os
    root = Path(os.environ.get("DOSERADIOMICS_SHARED_DATA", SHARED)) / "openkbp_hn" / "pt_10"
    if not root.is_dir():
        pytest.fail(f"test data {root} is missing (put shared/ beside the repository or set DOSERADIOMICS_SHARED_DATA)")
    return mx.load_patient(root)


def _write_export(patient, folder, extra_plan_dose=False):
    e = mx.Export(patient, summation="BEAM")
    e.write_ct(folder)
    e.write_scout(folder / "CT.scout.dcm")
    # A clinic-style GTV name and a small second structure (a whole-body outline would only cost time).
    cord = np.zeros_like(patient["gtv"])
    cord[18:22, 90:94, 60:64] = 1
    e.write_rtstruct(folder / "RS.plan.dcm", masks={"GTV 1": patient["gtv"], "Spinal Cord": cord})
    e.write_rtplan(folder / "RP.plan.dcm")
    for i, part in enumerate(mx.beam_split(patient), start=1):
        e.write_rtdose(folder / f"RD.beam{i}.dcm", stored=part, summation="BEAM")
    if extra_plan_dose:
        e.write_rtdose(folder / "RD.plan_a.dcm", summation="PLAN")
        e.write_rtdose(folder / "RD.plan_b.dcm", summation="PLAN")
    return folder


@pytest.fixture(scope="module")
def export(patient, tmp_path_factory):
    return _write_export(patient, tmp_path_factory.mktemp("exports") / "OKBP10")


@pytest.fixture(scope="module")
def ambiguous(patient, tmp_path_factory):
    return _write_export(patient, tmp_path_factory.mktemp("ambiguous") / "OKBP10", extra_plan_dose=True)


@pytest.fixture(scope="module")
def cli_features(export, tmp_path_factory):
    """``doseradiomics extract --patient-dir`` on the export: its feature row and its discovery record."""
    import json
    from DoseRadiomicsLib.cli import main
    out = tmp_path_factory.mktemp("cli")
    assert main(["extract", "--patient-dir", str(export), "--gtv-name", "GTV 1", "--out", str(out),
                 "--no-png", "--quiet"]) == 0
    with open(out / "features.csv") as fh:
        row = next(csv.DictReader(fh))
    return row, json.loads((out / "extraction.json").read_text())["discovery"]


def test_folder_discovery_loads_the_clis_files_and_its_features_follow(logic, scene, export, cli_features):
    import slicer
    from DoseRadiomicsLib.pipeline import PatientInputs, load_patient

    row, cli_record = cli_features
    out = logic.discoverPatientFolder(export, gtvName="gtv1")  # case and spaces ignored, as --gtv-name
    for role in ("ct", "rtstruct", "rtdose", "refused_doses", "skipped", "plan_files"):
        assert out["discovery"][role] == cli_record[role], role
    assert out["discovery"]["rtdose"]["summation"] == "BEAM (3 summed)"
    assert "a LOCALIZER (scout) image" in out["discovery"]["skipped"]
    assert out["loadedWith"]["ct"] == out["loadedWith"]["dose"] == "DoseRadiomics readers"
    assert out["gtvName"] == "GTV 1"
    p = logic.getParameterNode()
    assert (p.ctVolume, p.doseVolume, p.gtvSegmentation) == (out["ct"], out["dose"], out["gtvSegmentation"])
    assert out["gtvSegmentation"].GetSegmentation().GetSegment(p.gtvSegmentId).GetName() == "GTV 1"
    assert "the series the RTSTRUCT references" in out["text"] and "BEAM (3 summed)" in out["text"]

    # The nodes hold what the command line read: the CT exactly, the summed dose on its own grid.
    loaded = load_patient(PatientInputs("p", None, None, None, gtv_name="GTV 1", patient_dir=str(export)))
    assert np.array_equal(slicer.util.arrayFromVolume(out["ct"]), sitk.GetArrayFromImage(loaded.ct.image))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(out["dose"]), sitk.GetArrayFromImage(loaded.dose.image))

    # The panel's steps on those nodes give the command line's features.
    aligned = logic.alignDose(out["ct"], out["dose"], out["gtvSegmentation"], out["gtvSegmentId"])
    rois = logic.makeDoseROIs(out["ct"], aligned, out["gtvSegmentation"], out["gtvSegmentId"], isodoseGy=(50.0,))
    _, features = logic.extractFeatures(out["ct"], aligned, rois)
    expected = {k: float(v) for k, v in row.items()
                if k not in ("patient_id", "settings_hash") and not k.startswith("diag__")}
    assert set(features) == set(expected)
    names = sorted(expected)
    np.testing.assert_allclose([features[k] for k in names], [expected[k] for k in names], rtol=1e-6, atol=1e-12)


def test_an_ambiguous_folder_gives_the_librarys_error_listing_the_candidates(logic, scene, ambiguous):
    from DoseRadiomicsLib import discovery
    from DoseRadiomicsLib.errors import InputError
    with pytest.raises(InputError) as cli:
        discovery.discover_patient(ambiguous)
    with pytest.raises(InputError) as panel:
        logic.discoverPatientFolder(ambiguous, gtvName="GTV 1")
    assert str(panel.value) == str(cli.value)
    assert "2 plan doses" in str(panel.value) and "RD.plan_a.dcm" in str(panel.value) and "RD.plan_b.dcm" in str(panel.value)
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0  # nothing half-loaded
    # Picking one, as --dose does, loads it.
    out = logic.discoverPatientFolder(ambiguous, gtvName="GTV 1", rtdose="RD.plan_b.dcm")
    assert out["discovery"]["rtdose"] == {"files": ["RD.plan_b.dcm"], "summation": "PLAN",
                                          "why": "picked by the user (--dose)"}


# ---------------------------------------------------------------------------------------------
# the panel


def _gui(monkeypatch, flavour):
    monkeypatch.setattr(slicer_standins, "CONNECT_GUI_FLAVOUR", flavour)
    env = widget_harness.install(monkeypatch, _make_slicer_session)
    harness = widget_harness.Harness(env.module, env.scene)
    harness.setup()
    harness.enter()
    return env, harness


def _close(env, harness):
    harness.close()
    assert not qt_fakes.SLOT_ERRORS, "a slot raised:\n" + "\n".join(t for _, t in qt_fakes.SLOT_ERRORS)
    assert env.app.overrideCursorDepth == 0, "a wait cursor was not restored"


def _pick_folder(monkeypatch, env, folder):
    """What the user does in the dialog: QFileDialog::getExistingDirectory returns the chosen folder."""
    monkeypatch.setattr(env.qt.QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder)))


@pytest.mark.parametrize("flavour", ["5.8", "5.12"])
def test_find_in_folder_button_fills_the_panel_and_says_why(monkeypatch, module, export, flavour):
    env, harness = _gui(monkeypatch, flavour)
    try:
        ui = harness.ui
        ui.gtvNameLineEdit.text = "GTV_1|glob:GTV*"  # the first rule matches nothing, the glob does
        p = harness.widget._parameterNode
        assert p.gtvName == "GTV_1|glob:GTV*"
        _pick_folder(monkeypatch, env, export)
        ui.findInFolderButton.click()
        assert p.ctVolume is not None and p.doseVolume is not None and p.gtvSegmentation is not None
        assert ui.ctSelector.currentNode() is p.ctVolume and ui.doseSelector.currentNode() is p.doseVolume
        assert ui.gtvSegmentSelector.currentNode() is p.gtvSegmentation
        assert p.gtvSegmentation.GetSegmentation().GetSegment(p.gtvSegmentId).GetName() == "GTV 1"
        assert "the series the RTSTRUCT references" in ui.discoveryLabel.text
        assert "BEAM (3 summed)" in ui.discoveryLabel.text
        assert "LOCALIZER" in ui.discoveryLabel.toolTip and "RD.beam1.dcm" in ui.discoveryLabel.text
        assert str(p.patientFolder) == str(export)
        assert "GTV 1" in ui.statusLabel.text
    finally:
        _close(env, harness)


def test_a_close_name_suggestion_and_an_ambiguity_reach_the_status(monkeypatch, module, export, ambiguous, caplog):
    env, harness = _gui(monkeypatch, "5.12")
    try:
        ui = harness.ui
        ui.gtvNameLineEdit.text = "GTV-1"
        _pick_folder(monkeypatch, env, export)
        ui.findInFolderButton.click()
        text = ui.statusLabel.text
        assert "no structure named 'GTV-1'" in text and "did you mean 'GTV 1'?" in text, text
        assert ui.discoveryLabel.text == text and "Traceback" not in text
        assert any("did you mean 'GTV 1'?" in r.getMessage() for r in caplog.records)  # the message box
        assert harness.widget._parameterNode.gtvSegmentation is None
        assert env.scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode") == 0  # CT and dose not left half-loaded

        ui.gtvNameLineEdit.text = "GTV 1"
        _pick_folder(monkeypatch, env, ambiguous)
        ui.findInFolderButton.click()
        assert "2 plan doses" in ui.statusLabel.text and "RD.plan_a.dcm" in ui.statusLabel.text
        assert "--dose FILE" in ui.statusLabel.text

        _pick_folder(monkeypatch, env, "")  # the dialog cancelled: nothing happens
        ui.findInFolderButton.click()
        assert "2 plan doses" in ui.statusLabel.text

        ui.fromDicomStudyButton.click()  # no DICOM database headless: said, not raised
        assert "DICOM database is not open" in ui.statusLabel.text
    finally:
        _close(env, harness)


# ---------------------------------------------------------------------------------------------
# with Slicer's DICOM module: Slicer's DICOMUtils on the documented CTK and plugin APIs


def _dicom_module(monkeypatch, tag):
    import slicer
    env = widget_harness.install(monkeypatch, _make_slicer_session)  # qt/ctk for DICOMUtils' imports
    utils = fakes.slicer_dicomutils(tag, monkeypatch)
    if utils is None:
        pytest.skip(f"no Slicer clone at {fakes.SLICER_CLONE} to read DICOMUtils.py {tag} from")
    package = types.ModuleType("DICOMLib")
    package.DICOMUtils = utils
    monkeypatch.setitem(sys.modules, "DICOMLib", package)
    monkeypatch.setitem(sys.modules, "DICOMLib.DICOMUtils", utils)
    monkeypatch.setattr(env.ctk, "ctkDICOMIndexer", fakes.ctkDICOMIndexer, raising=False)
    database = fakes.FakeDICOMDatabase()
    monkeypatch.setattr(slicer, "dicomDatabase", database, raising=False)
    monkeypatch.setattr(slicer.modules, "dicomPlugins", {"DICOMScalarVolumePlugin": fakes.ScalarVolumePlugin,
                                                         "DicomRtImportExportPlugin": fakes.RtPlugin}, raising=False)
    yield types.SimpleNamespace(env=env, database=database, tag=tag)
    env.scene.Clear(0)


@pytest.fixture(params=["v5.8.0", "v5.12.3"])
def dicom_module(request, monkeypatch, module):
    yield from _dicom_module(monkeypatch, request.param)


@pytest.fixture
def dicom_module_newest(monkeypatch, module):
    """For what does not depend on the DICOMUtils release (run once)."""
    yield from _dicom_module(monkeypatch, "v5.12.3")


def test_the_database_fake_answers_as_ctkdicomdatabase_documents(export):
    """The fake on its own, against pydicom's reading of the same files (no DoseRadiomics code)."""
    import pydicom
    database, indexer = fakes.FakeDICOMDatabase(), fakes.ctkDICOMIndexer()
    indexer.addDirectory(database, str(export))
    indexer.waitForImportFinished()
    dicom = sorted(str(p) for p in export.iterdir() if p.suffix == ".dcm")
    assert sorted(indexer.imported) == dicom  # the README.txt is not DICOM
    (patient,) = database.patients()
    (study,) = database.studiesForPatient(patient)
    series = database.seriesForStudy(study)
    files = sorted(f for s in series for f in database.filesForSeries(s))
    assert files == dicom and database.nameForPatient(patient) == "Test^Patient"
    for f in (dicom[0], str(export / "RD.beam2.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        assert database.fileValue(f, "0020,000D") == study == ds.StudyInstanceUID
        assert database.seriesForFile(f) == ds.SeriesInstanceUID and database.studyForSeries(ds.SeriesInstanceUID) == study
        assert database.fileForInstance(ds.SOPInstanceUID) == f and database.instanceForFile(f) == ds.SOPInstanceUID
        assert database.fileValue(f, "0008,0060") == ds.Modality
    assert database.fileValue(dicom[0], "0020,0032").count("\\") == 2  # multi-valued: backslash-separated
    assert database.fileValue(dicom[0], "300a,0002") == "" and database.filesForSeries("1.2.3") == []
    assert len(database.filesForSeries(series[0], hits=1)) == 1


def test_with_the_dicom_module_the_folder_is_imported_and_loaded_by_its_plugins(dicom_module, export):
    import slicer
    from DoseRadiomicsLib import discovery, mrml_bridge, readers
    logic = dicom_module.env.module.DoseRadiomicsLogic()
    assert logic.dicomModuleAvailable()
    out = logic.discoverPatientFolder(export, gtvName="GTV 1")
    found = discovery.discover_patient(export)
    database = dicom_module.database

    # Imported: the study's series are in the database, found again through it.
    study = found.headers["ct"].get("StudyInstanceUID")
    assert found.ct_series_uid in database.seriesForStudy(str(study))
    assert out["loadedWith"]["ct"] == out["loadedWith"]["dose"] == "DICOM module"
    assert logic.seriesInstanceUid(out["ct"]) == found.ct_series_uid and logic.modality(out["ct"]) == "CT"
    # SlicerRT's three beam doses are in the scene; the panel's dose is their sum in Gy, as the library sums.
    beams = [n for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
             if n.GetAttribute("DicomRtImport.DoseVolume") == "1" and logic.modality(n) == "RTDOSE"]
    assert len(beams) == 3 and out["dose"] not in beams
    summed = discovery.read_doses(found.doses)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(out["dose"]), sitk.GetArrayFromImage(summed.image),
                               rtol=1e-6, atol=1e-6)
    assert logic.doseUnit(out["dose"]) == "Gy"
    # The GTV is the library's rasterisation on the CT node's grid; SlicerRT's structure set is beside it.
    ct = readers.read_ct(found.ct, files=found.ct_files)
    mask = mrml_bridge.mask_from_segment(out["gtvSegmentation"], out["gtvSegmentId"], out["ct"])
    assert np.array_equal(sitk.GetArrayFromImage(mask), sitk.GetArrayFromImage(readers.read_gtv(found.rtstruct, ct, name="GTV 1")))
    assert len(out["structureSet"]) == 1 and out["structureSet"][0] is not out["gtvSegmentation"]

    # "From DICOM study" with that CT selected: the same discovery on the study's files in the database.
    again = logic.discoverStudy(logic.studyForPanel(out["ct"]), gtvName="GTV 1")
    for role in ("ct", "rtstruct", "rtdose"):
        assert again["discovery"][role] == out["discovery"][role], role
    assert again["discovery"]["files_given"] == len([p for p in export.rglob("*") if p.name.endswith(".dcm")])


def test_a_study_is_needed_when_the_database_holds_several(dicom_module, export, ambiguous):
    from DoseRadiomicsLib.errors import InputError
    logic = dicom_module.env.module.DoseRadiomicsLogic()
    utils = sys.modules["DICOMLib.DICOMUtils"]
    assert utils.importDicom(str(export)) and utils.importDicom(str(ambiguous))
    with pytest.raises(InputError, match=r"holds 2 studies: 'RT planning' of Test\^Patient .*select a CT"):
        logic.studyForPanel(None)
    uid = dicom_module.database.studiesForPatient(dicom_module.database.patients()[0])[0]
    files = logic.studyFiles(uid)
    assert files and all(Path(f).parent in (export, ambiguous) for f in files)
    with pytest.raises(InputError, match="has no files of study 1.2.3"):
        logic.studyFiles("1.2.3")


def test_from_dicom_study_button_loads_the_databases_only_study(dicom_module_newest, export):
    env = dicom_module_newest.env
    assert sys.modules["DICOMLib.DICOMUtils"].importDicom(str(export))  # what the DICOM module's Import does
    harness = widget_harness.Harness(env.module, env.scene)
    harness.setup()
    harness.enter()
    try:
        ui = harness.ui
        ui.gtvNameLineEdit.text = "re:gtv\\s*1"
        ui.fromDicomStudyButton.click()
        p = harness.widget._parameterNode
        assert p.ctVolume is not None and harness.widget.logic.modality(p.ctVolume) == "CT"
        assert p.gtvSegmentation.GetSegmentation().GetSegment(p.gtvSegmentId).GetName() == "GTV 1"
        assert "BEAM (3 summed)" in ui.discoveryLabel.text and "ct: DICOM module" in ui.discoveryLabel.toolTip
        assert ui.doseSelector.currentNode() is p.doseVolume
    finally:
        _close(env, harness)
