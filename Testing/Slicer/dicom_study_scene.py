"""A DICOM-loaded study in MRML, built with the calls Slicer and SlicerRT make when they load one.

Headless there is no DICOM module and no SlicerRT, so the tests place the nodes in the subject
hierarchy themselves, repeating upstream's calls on the real slicer-core classes, attribute by
attribute:

- CT: Slicer's ``DICOMScalarVolumePlugin`` (volume node attribute ``DICOM.instanceUIDs``) and
  ``DICOMLib/DICOMPlugin.py`` ``addSeriesInSubjectHierarchy`` (v5.8.0 .. main: series item with UID
  ``DICOM`` = SeriesInstanceUID, attributes ``DICOM.Modality``, ``DICOM.SeriesNumber``,
  ``DICOM.FrameOfReferenceUID``, ``DICOM.SeriesDescription``..., UID ``DICOMInstanceUID`` = the
  instances, ``DICOM.ReferencedInstanceUIDs``; then ``InsertDicomSeriesInHierarchy`` and the patient
  and study attributes).
- RTDOSE and RTSTRUCT: SlicerRT ``DicomRtImportExport/Logic/vtkSlicerDicomRtImportExportModuleLogic.cxx``
  ``LoadRtDose`` (node attribute ``DicomRtImport.DoseVolume`` = "1" set before the node is added,
  voxels already multiplied by DoseGridScaling, series item UID ``DICOM``,
  ``DICOM.ReferencedInstanceUIDs`` = the RTPLAN, then ``InsertSeriesInSubjectHierarchy``, then the
  study item's ``DicomRtImport.DoseUnitName`` (DoseUnits: GY, CGY) and ``DicomRtImport.DoseUnitValue``
  (DoseGridScaling)); ``LoadRtStructureSet`` (one segmentation node, a segment per ROI named as the
  ROI, series item UID ``DICOM``, ``DicomRtImport.RoiReferencedSeriesUid`` = the CT series,
  ``DICOM.ReferencedInstanceUIDs``, then ``InsertSeriesInSubjectHierarchy``). SlicerRT records no
  frame of reference for either.
- ``InsertSeriesInSubjectHierarchy`` (same file): ``InsertDicomSeriesInHierarchy``; patient and study
  attributes when just created; series ``DICOM.Modality``, ``DICOM.SeriesNumber``, UID
  ``DICOMInstanceUID`` = the SOP instance.
"""

from __future__ import annotations

from dataclasses import dataclass

import slicer
import vtk

C = slicer.vtkMRMLSubjectHierarchyConstants


@dataclass
class Study:
    patient_id: str
    patient_name: str
    study_uid: str
    frame_uid: str
    description: str = "Planning"


def _sh():
    return slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)


def _insert_in_study(sh, item, study: Study, series_uid: str) -> None:
    """The patient/study part common to DICOMPlugin.addSeriesInSubjectHierarchy and SlicerRT's
    InsertSeriesInSubjectHierarchy: items found by UID, created (with their attributes) if new."""
    patient = sh.GetItemByUID(C.GetDICOMUIDName(), study.patient_id)
    study_item = sh.GetItemByUID(C.GetDICOMUIDName(), study.study_uid)
    slicer.vtkSlicerSubjectHierarchyModuleLogic.InsertDicomSeriesInHierarchy(
        sh, study.patient_id, study.study_uid, series_uid)
    if not patient:
        patient = sh.GetItemByUID(C.GetDICOMUIDName(), study.patient_id)
        sh.SetItemAttribute(patient, C.GetDICOMPatientNameAttributeName(), study.patient_name)
        sh.SetItemAttribute(patient, C.GetDICOMPatientIDAttributeName(), study.patient_id)
        sh.SetItemName(patient, study.patient_name)
    if not study_item:
        study_item = sh.GetItemByUID(C.GetDICOMUIDName(), study.study_uid)
        sh.SetItemAttribute(study_item, C.GetDICOMStudyInstanceUIDAttributeName(), study.study_uid)
        sh.SetItemAttribute(study_item, C.GetDICOMStudyDescriptionAttributeName(), study.description)
        sh.SetItemName(study_item, study.description)
    assert sh.GetItemParent(item) == sh.GetItemByUID(C.GetDICOMUIDName(), study.study_uid)


def add_ct_series(volume_node, study: Study, series_uid: str, instance_uids, series_number: str = "2"):
    """A CT volume node placed as Slicer's DICOMScalarVolumePlugin + DICOMPlugin place it."""
    sh = _sh()
    volume_node.SetAttribute("DICOM.instanceUIDs", " ".join(instance_uids))
    item = sh.CreateItem(sh.GetSceneItemID(), volume_node)
    sh.SetItemUID(item, C.GetDICOMUIDName(), series_uid)
    for name, value in ((C.GetDICOMSeriesModalityAttributeName(), "CT"),
                        (C.GetDICOMSeriesNumberAttributeName(), series_number),
                        (C.GetDICOMFrameOfReferenceUIDAttributeName(), study.frame_uid),
                        (C.GetDICOMAttributePrefix() + "SeriesDescription", "CT planning")):
        sh.SetItemAttribute(item, name, value)
    sh.SetItemUID(item, C.GetDICOMInstanceUIDName(), " ".join(instance_uids))
    sh.SetItemAttribute(item, C.GetDICOMReferencedInstanceUIDsAttributeName(), "")
    _insert_in_study(sh, item, study, series_uid)
    return item


def _slicerrt_series(sh, item, study: Study, series_uid: str, modality: str, sop_uid: str) -> None:
    sh.SetItemUID(item, C.GetDICOMUIDName(), series_uid)
    _insert_in_study(sh, item, study, series_uid)
    sh.SetItemAttribute(item, C.GetDICOMSeriesModalityAttributeName(), modality)
    sh.SetItemAttribute(item, C.GetDICOMSeriesNumberAttributeName(), "1")
    sh.SetItemUID(item, C.GetDICOMInstanceUIDName(), sop_uid)


def add_rtdose(image_array_in_unit, reference_volume, study: Study, series_uid: str, sop_uid: str,
               dose_units: str = "GY", grid_scaling: str = "0.001", plan_uid: str = "1.2.3.plan",
               name: str = "RTDOSE"):
    """A dose volume as SlicerRT's LoadRtDose leaves it (voxels already scaled, in ``dose_units``)."""
    scene = slicer.mrmlScene
    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName(scene.GenerateUniqueName(name))
    node.SetAttribute("DicomRtImport.DoseVolume", "1")  # before AddNode, as SlicerRT does
    scene.AddNode(node)
    matrix = vtk.vtkMatrix4x4()
    reference_volume.GetIJKToRASMatrix(matrix)
    node.SetIJKToRASMatrix(matrix)
    slicer.util.updateVolumeFromArray(node, image_array_in_unit.astype("float32"))
    node.CreateDefaultDisplayNodes()
    sh = _sh()
    item = sh.CreateItem(sh.GetSceneItemID(), node)
    sh.SetItemAttribute(item, C.GetDICOMReferencedInstanceUIDsAttributeName(), plan_uid)
    _slicerrt_series(sh, item, study, series_uid, "RTDOSE", sop_uid)
    study_item = sh.GetItemParent(item)
    sh.SetItemAttribute(study_item, "DicomRtImport.DoseUnitName", dose_units)
    sh.SetItemAttribute(study_item, "DicomRtImport.DoseUnitValue", grid_scaling)
    return node


def add_rtstruct(rois, reference_volume, study: Study, series_uid: str, sop_uid: str,
                 referenced_series_uid: str, name: str = "RTSTRUCT"):
    """A segmentation as SlicerRT's LoadRtStructureSet leaves it: one segment per ROI, named as the
    ROI. ``rois``: (name, SimpleITK mask on the reference grid) pairs. (SlicerRT stores planar
    contours; the representation does not matter to what the hierarchy says.)"""
    from DoseRadiomicsLib import mrml_bridge
    scene = slicer.mrmlScene
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    # SetReferenceImageGeometryParameterFromVolumeNode also records the volume as a node reference;
    # SlicerRT's import does the same when the CT is already loaded (it is, in these tests).
    for roi_name, mask in rois:
        mrml_bridge.add_segment_from_mask(node, mask, roi_name, replace=False)  # SlicerRT adds every ROI
    sh = _sh()
    item = sh.CreateItem(sh.GetSceneItemID(), node)
    sh.SetItemUID(item, C.GetDICOMUIDName(), series_uid)
    sh.SetItemAttribute(item, "DicomRtImport.RoiReferencedSeriesUid", referenced_series_uid)
    sh.SetItemAttribute(item, C.GetDICOMReferencedInstanceUIDsAttributeName(), "")
    _slicerrt_series(sh, item, study, series_uid, "RTSTRUCT", sop_uid)
    return node
