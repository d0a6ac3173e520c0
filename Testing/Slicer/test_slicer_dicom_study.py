"""The panel's guess of CT, dose and GTV after the DICOM module (with SlicerRT) loaded studies.

The scenes are built as Slicer's DICOM plugins and SlicerRT build them (``dicom_study_scene``: the
same subject-hierarchy items, UIDs and attributes, on the real slicer-core classes). Study A is the
bundled patient dressed as a DICOM study: its CT, an RTDOSE in cGy (the bundled Gy dose x 100, as
SlicerRT leaves a CGY RTDOSE: DoseGridScaling applied, unit on the study item) and an RTSTRUCT whose
GTV is named "GTV_p". Other studies, frames of reference and a picture of the dose are put in the
scene before it, where a first-node guess would take them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import dicom_study_scene as dss

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Python"))
from make_rt_fixtures import save_dicom_file  # noqa: E402  (pydicom 3 and 2.x: Slicer <= 5.10)

A = dss.Study("PAT-A", "Patient^A", "1.2.826.0.1.3680043.10.543.1", "1.2.826.0.1.3680043.10.543.1.9")
B = dss.Study("PAT-B", "Patient^B", "1.2.826.0.1.3680043.10.543.2", "1.2.826.0.1.3680043.10.543.2.9")
CT_A_SERIES = A.study_uid + ".3"
CT_B_SERIES = B.study_uid + ".3"


def _masks(ctNode, sample_paths):
    from DoseRadiomicsLib import mrml_bridge
    grid = mrml_bridge.image_from_volume_node(ctNode)
    gtv = sitk.Cast(sitk.ReadImage(str(sample_paths["gtv"])) != 0, sitk.sitkUInt8)
    gtv.CopyInformation(grid)
    ptv = sitk.BinaryDilate(gtv, [2, 2, 1])
    body = sitk.Cast(grid > -500, sitk.sitkUInt8)
    return gtv, ptv, body


def _dose_gy(sample_paths) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(sample_paths["dose"]), sitk.sitkFloat32))


def _study_a(logic, sample_paths, dose_units="CGY", roi_names=("BODY", "GTV_p", "PTV_70")):
    ct = logic.loadVolume(sample_paths["ct"], "A CT")
    dss.add_ct_series(ct, A, CT_A_SERIES, [CT_A_SERIES + f".{k}" for k in range(1, 4)])
    factor = {"CGY": 100.0}.get(dose_units, 1.0)
    dose = dss.add_rtdose(_dose_gy(sample_paths) * factor, ct, A, A.study_uid + ".5", A.study_uid + ".5.1",
                          dose_units=dose_units, name="A RTDOSE")
    gtv, ptv, body = _masks(ct, sample_paths)
    masks = dict(zip(("BODY", "GTV_p", "PTV_70"), (body, gtv, ptv)))
    rois = [(name, masks.get(name, gtv)) for name in roi_names]
    rtstruct = dss.add_rtstruct(rois, ct, A, A.study_uid + ".4", A.study_uid + ".4.1",
                                referenced_series_uid=CT_A_SERIES, name="A RTSTRUCT")
    return ct, dose, rtstruct


def _study_b(with_dose: bool, with_ct: bool = True):
    """Another patient on its own small grid and frame of reference: CT (+ dose), RTSTRUCT with 'GTV'."""
    import slicer
    ct = slicer.util.addVolumeFromArray(np.full((6, 24, 24), -800, np.int16), name="B CT")
    ct.SetOrigin(100.0, 100.0, 100.0)
    out = {"ct": ct}
    if with_ct:
        dss.add_ct_series(ct, B, CT_B_SERIES, [CT_B_SERIES + ".1"])
    if with_dose:
        out["dose"] = dss.add_rtdose(np.full((6, 24, 24), 60.0), ct, B, B.study_uid + ".5",
                                     B.study_uid + ".5.1", dose_units="GY", name="B RTDOSE")
    mask = sitk.Image(24, 24, 6, sitk.sitkUInt8)
    mask[10:14, 10:14, 2:4] = 1
    from DoseRadiomicsLib import mrml_bridge
    mask.CopyInformation(mrml_bridge.image_from_volume_node(ct))
    out["rtstruct"] = dss.add_rtstruct([("GTV", mask)], ct, B, B.study_uid + ".4", B.study_uid + ".4.1",
                                       referenced_series_uid=CT_B_SERIES, name="B RTSTRUCT")
    return out


def _picture():
    from DoseRadiomicsLib import mrml_bridge
    rgb = np.zeros((40, 60, 3))
    rgb[..., 0] = np.linspace(0, 1, 60)
    return mrml_bridge.picture_volume_node(rgb, "dose-map picture")


def test_one_study_gives_its_ct_dose_rtstruct_and_gtv(logic, scene, sample_paths):
    picture = _picture()  # first volume in the scene: a first-node guess would take it as the CT
    ct, dose, rtstruct = _study_a(logic, sample_paths)
    guess = logic.guessInputs(gtvName="gtv_p")
    assert guess["ct"] is ct and guess["dose"] is dose and guess["segmentation"] is rtstruct
    assert rtstruct.GetSegmentation().GetSegment(guess["segmentId"]).GetName() == "GTV_p"
    assert guess["frameOfReferenceUid"] == A.frame_uid
    assert logic.frameOfReferenceUid(rtstruct) == A.frame_uid  # through the CT series it references
    assert logic.frameOfReferenceUid(dose) is None  # SlicerRT records none; no DICOM database headless
    assert guess["doseUnit"] == "cGy"
    assert any("cGy" in n for n in guess["notes"])
    assert picture not in (guess["ct"], guess["dose"])
    assert logic.guessCtAndDose() == (ct, dose)


def test_a_cgy_dose_is_aligned_in_gy(logic, scene, sample_paths):
    import slicer
    ct, dose, rtstruct = _study_a(logic, sample_paths, dose_units="CGY")
    guess = logic.guessInputs(gtvName="GTV_p")
    aligned = logic.alignDose(guess["ct"], guess["dose"], guess["segmentation"], guess["segmentId"])
    # The bundled dose file is in Gy and on the CT grid: the aligned dose must equal it.
    np.testing.assert_allclose(slicer.util.arrayFromVolume(aligned), _dose_gy(sample_paths), rtol=1e-5, atol=1e-4)
    assert "cGy" in logic.describeAlignment()
    assert aligned.GetAttribute("DoseRadiomics.DoseUnit") == "Gy"
    # A dose in Gy is left as it is.
    scene.Clear(0)
    ct, dose, _ = _study_a(logic, sample_paths, dose_units="GY")
    aligned = logic.alignDose(ct, dose)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(aligned), _dose_gy(sample_paths), rtol=1e-5, atol=1e-4)


def test_a_relative_dose_is_refused_naming_the_node(logic, scene, sample_paths):
    from DoseRadiomicsLib.errors import InputError
    ct, dose, _ = _study_a(logic, sample_paths, dose_units="RELATIVE")
    guess = logic.guessInputs(gtvName="GTV_p")
    assert guess["dose"] is dose and guess["doseUnit"] == "RELATIVE"
    assert any("RELATIVE" in n and "A RTDOSE" in n for n in guess["notes"])
    with pytest.raises(InputError, match=r"A RTDOSE.*RELATIVE.*not Gy or cGy"):
        logic.alignDose(ct, dose)


def test_another_patients_ct_and_rtstruct_are_not_mixed_in(logic, scene, sample_paths):
    other = _study_b(with_dose=False)  # loaded first: a first-node guess would take B's CT and RTSTRUCT
    ct, dose, rtstruct = _study_a(logic, sample_paths)
    guess = logic.guessInputs(gtvName="GTV_p")
    assert guess["ct"] is ct and guess["dose"] is dose and guess["segmentation"] is rtstruct
    assert other["ct"] is not guess["ct"] and other["rtstruct"] is not guess["segmentation"]


def test_two_complete_studies_are_never_mixed(logic, scene, sample_paths):
    other = _study_b(with_dose=True)
    ct, dose, rtstruct = _study_a(logic, sample_paths)
    guess = logic.guessInputs()
    chosen = (guess["ct"], guess["dose"], guess["segmentation"])
    assert chosen in ((ct, dose, rtstruct), (other["ct"], other["dose"], other["rtstruct"]))
    assert len({logic.studyItem(n) for n in chosen}) == 1
    assert guess["frameOfReferenceUid"] == logic.frameOfReferenceUid(guess["ct"])


def test_a_dose_without_a_ct_of_its_study_is_not_paired(logic, scene, sample_paths):
    other = _study_b(with_dose=False)
    import slicer
    # Study A's dose only (its CT not loaded): B's CT must not be offered with it.
    ct = logic.loadVolume(sample_paths["ct"], "grid only")
    dose = dss.add_rtdose(_dose_gy(sample_paths), ct, A, A.study_uid + ".5", A.study_uid + ".5.1",
                          dose_units="GY", name="A RTDOSE")
    slicer.mrmlScene.RemoveNode(ct)
    guess = logic.guessInputs()
    assert guess["dose"] is None and guess["ct"] is other["ct"]
    assert any("A RTDOSE" in n and "frame of reference" in n for n in guess["notes"])
    assert guess["ct"] is not dose


def test_ct_and_dose_loaded_together_dose_is_never_the_ct(logic, scene, sample_paths):
    # The dose node added first, the CT second (as a DICOM load of both may do).
    import slicer
    ct = logic.loadVolume(sample_paths["ct"], "A CT")
    dose = dss.add_rtdose(_dose_gy(sample_paths) * 100, ct, A, A.study_uid + ".5", A.study_uid + ".5.1",
                          dose_units="CGY", name="A RTDOSE")
    slicer.mrmlScene.RemoveNode(ct)
    alone = logic.guessInputs()
    assert alone["dose"] is dose and alone["ct"] is None  # only a dose: never offered as the CT
    ct = logic.loadVolume(sample_paths["ct"], "A CT")
    dss.add_ct_series(ct, A, CT_A_SERIES, [CT_A_SERIES + ".1"])
    assert logic.guessCtAndDose() == (ct, dose)


def test_only_ct_series_are_offered_as_the_ct(logic, scene, sample_paths):
    import slicer
    ct, dose, _ = _study_a(logic, sample_paths)
    # An RGB secondary capture of the dose map, loaded by the DICOM module into study A.
    picture = _picture()
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    item = sh.GetItemByDataNode(picture) or sh.CreateItem(sh.GetSceneItemID(), picture)
    sh.SetItemParent(item, logic.studyItem(ct))
    sh.SetItemAttribute(item, dss.C.GetDICOMSeriesModalityAttributeName(), "OT")
    # An MR of the same frame of reference.
    mr = logic.loadVolume(sample_paths["ct"], "A MR")
    mr_item = dss.add_ct_series(mr, A, A.study_uid + ".7", [A.study_uid + ".7.1"])
    sh.SetItemAttribute(mr_item, dss.C.GetDICOMSeriesModalityAttributeName(), "MR")
    slicer.mrmlScene.RemoveNode(ct)
    guess = logic.guessInputs()
    assert guess["ct"] is None and guess["dose"] is dose
    assert any("A MR" in n and "MR" in n for n in guess["notes"])
    assert not logic.isDoseVolume(picture)


@pytest.mark.parametrize("names, gtvName, expected", [
    (("BODY", "GTV_p", "PTV_70"), "gtv_p", "GTV_p"),       # case-insensitive, as --gtv-name
    (("BODY", "GTV_p", "PTV_70"), " GTV_p ", "GTV_p"),     # surrounding spaces
    (("BODY", "gtv", "PTV_70"), None, "gtv"),              # no name given: the one called GTV
    (("GTV_p",), None, "GTV_p"),                           # a single segment is the GTV
    (("BODY", "GTV_p", "PTV_70"), "GTV", None),            # no such name: nothing picked, names listed
    (("GTV", "gtv", "PTV_70"), None, None),                # ambiguous: nothing picked
])
def test_gtv_segment_follows_the_command_lines_name_rule(logic, scene, sample_paths, names, gtvName, expected):
    from DoseRadiomicsLib import dicomrt
    _, _, rtstruct = _study_a(logic, sample_paths, roi_names=names)
    guess = logic.guessInputs(gtvName=gtvName)
    assert guess["segmentation"] is rtstruct
    if expected is None:
        assert guess["segmentId"] is None
        note = next(n for n in guess["notes"] if "segment" in n)
        assert "pick" in note
    else:
        assert rtstruct.GetSegmentation().GetSegment(guess["segmentId"]).GetName() == expected
    # The same rule as the command line's reader (one function).
    wanted = gtvName or "GTV"
    if expected is not None and len(names) > 1:
        assert [names[i] for i in dicomrt.structures_named(names, wanted)] == [expected]


class _DicomDatabase:
    """The two calls of ctkDICOMDatabase the Logic makes (fileForInstance, fileValue), over real DICOM
    files written here with pydicom: '' for an unknown instance or tag, as ctkDICOMDatabase returns."""

    def __init__(self, files):
        import pydicom
        self._files = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): str(f) for f in files}

    def fileForInstance(self, uid):
        return self._files.get(uid, "")

    def fileValue(self, path, tag):
        import pydicom
        if not path:
            return ""
        group, element = (int(x, 16) for x in tag.split(","))
        element = pydicom.dcmread(path, stop_before_pixels=True).get((group, element))
        return "" if element is None else str(element.value)


def _rtdose_file(path, sop_uid, frame_uid):
    import pydicom
    from pydicom.dataset import FileMetaDataset
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.2"
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.481.2", sop_uid, "RTDOSE"
    ds.FrameOfReferenceUID = frame_uid
    save_dicom_file(ds, path)
    return path


def test_dose_frame_of_reference_from_the_dicom_database(logic, scene, sample_paths, tmp_path, monkeypatch):
    import slicer
    ct, dose, _ = _study_a(logic, sample_paths)
    sop = A.study_uid + ".5.1"
    # Same study, but the DICOM file says the dose is in another frame of reference: not paired.
    other = _rtdose_file(tmp_path / "dose.dcm", sop, A.frame_uid + ".77")
    monkeypatch.setattr(slicer, "dicomDatabase", _DicomDatabase([other]), raising=False)
    assert logic.frameOfReferenceUid(dose) == A.frame_uid + ".77"
    guess = logic.guessInputs(gtvName="GTV_p")
    assert guess["dose"] is None
    # The file in the CT's frame: paired, the frame read from the database.
    same = _rtdose_file(tmp_path / "dose_same.dcm", sop, A.frame_uid)
    monkeypatch.setattr(slicer, "dicomDatabase", _DicomDatabase([same]), raising=False)
    guess = logic.guessInputs(gtvName="GTV_p")
    assert guess["ct"] is ct and guess["dose"] is dose and logic.frameOfReferenceUid(dose) == A.frame_uid


def test_ct_and_dose_selectors_do_not_pick_a_volume_on_their_own():
    """A QComboBox selects its first row when rows arrive in an empty model (Qt's
    QComboBoxPrivate::_q_rowsInserted); a qMRMLNodeComboBox without a None entry therefore takes the
    first volume loaded (the CT, as the dose) and the parameter node stores it. With a None entry the
    selectors stay empty until the Logic's guess (guessInputs) or the user fills them."""
    import xml.etree.ElementTree as ET
    from pathlib import Path
    ui = ET.parse(Path(__file__).resolve().parents[2] / "DoseRadiomics" / "Resources" / "UI" / "DoseRadiomics.ui")
    widgets = {w.get("name"): w for w in ui.getroot().iter("widget")}
    for name in ("ctSelector", "doseSelector"):
        props = {p.get("name"): p for p in widgets[name].findall("property")}
        assert props["noneEnabled"].find("bool").text == "true", name
