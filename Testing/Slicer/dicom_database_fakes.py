"""Slicer's DICOM module headless: the database, the indexer and two DICOM plugins, as their APIs are
documented upstream, for running Slicer's own ``DICOMLib/DICOMUtils.py`` (read from the Slicer clone at
a release tag) against the real slicer-core scene.

- :class:`FakeDICOMDatabase` follows ``ctkDICOMDatabase.h`` (commontk/CTK, Libs/DICOM/Core): the
  ``isOpen`` and ``databaseDirectory`` properties; ``patients()``, ``studiesForPatient(patientUID)``,
  ``seriesForStudy(studyUID)``, ``filesForSeries(seriesUID)``, ``studyForSeries``, ``patientForStudy``,
  ``nameForPatient``, ``descriptionForStudy``, ``fileForInstance(sopInstanceUID)``,
  ``instanceForFile``, ``seriesForFile`` and ``fileValue(fileName, "gggg,eeee")`` (the element's value
  as text, "" when missing). Patients are keyed by an internal UID, as the database's Patients table is.
- :class:`ctkDICOMIndexer` follows ``ctkDICOMIndexer.h``: ``addDirectory(db, directory, copyFile=False,
  includeHidden=True)`` indexes every DICOM file under the directory (non-DICOM files are skipped);
  ``addFile``; ``waitForImportFinished()``. Files are linked where they are (copyFile False, as
  ``DICOMUtils.importDicom`` calls it).
- :class:`ScalarVolumePlugin` does what Slicer's ``DICOMScalarVolumePlugin`` does for a CT series
  (v5.8.0, v5.12.3): ``examineForImport(fileLists)`` returns one loadable per image file list (files
  sorted by ``DICOMUtils.getSortedImageFiles``, name, tooltip, warning, selected, confidence as
  ``DICOMLib.DICOMLoadable``); ``load`` reads the files
  with the Volumes logic's ``AddArchetypeScalarVolume(files[0], name, 0, fileList)`` (its
  ``loadFilesWithArchetype``) and places the node in the subject hierarchy as ``DICOMPlugin`` does
  (``dicom_study_scene.add_ct_series``).
- :class:`RtPlugin` does what SlicerRT's ``DicomRtImportExportPlugin`` does: one loadable per RT file
  (confidence 1.0, selected); ``load`` returns a success flag (not a node) and leaves the nodes
  ``LoadRtDose`` / ``LoadRtStructureSet`` leave (``dicom_study_scene.add_rtdose`` / ``add_rtstruct``):
  the dose in its DoseUnits with DoseGridScaling applied, the unit on the study item; the structure set
  one segment per ROI. RTPLAN files are examined but give nothing to load here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

# The Slicer clone test_slicer_dependencies.py reads SampleData.py from (same variable).
SLICER_CLONE = Path(os.environ.get("DOSERADIOMICS_SLICER_GIT", "/work/.mirror/Slicer+Slicer/repo"))


def _read(path):
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, TypeError, AttributeError):
        return None


class FakeDICOMDatabase:
    def __init__(self, directory="/tmp/ctkDICOM"):
        self.isOpen = True
        self.databaseDirectory = str(directory)
        self._patients = {}   # patient key -> {"name", "studies": [uid]}
        self._studies = {}    # study uid -> {"patient", "description", "series": [uid]}
        self._series = {}     # series uid -> {"study", "files": [path]}
        self._files = {}      # path -> (sop uid, series uid)

    # accessors (ctkDICOMDatabase.h "database accessors")
    def patients(self):
        return list(self._patients)

    def studiesForPatient(self, patientUID):
        return list(self._patients.get(patientUID, {}).get("studies", []))

    def seriesForStudy(self, studyUID):
        return list(self._studies.get(studyUID, {}).get("series", []))

    def filesForSeries(self, seriesUID, hits=-1):
        files = list(self._series.get(seriesUID, {}).get("files", []))
        return files if hits is None or hits < 0 else files[:hits]

    def studyForSeries(self, seriesUID):
        return self._series.get(seriesUID, {}).get("study", "")

    def patientForStudy(self, studyUID):
        return self._studies.get(studyUID, {}).get("patient", "")

    def nameForPatient(self, patientUID):
        return self._patients.get(patientUID, {}).get("name", "")

    def descriptionForStudy(self, studyUID):
        return self._studies.get(studyUID, {}).get("description", "")

    def fileForInstance(self, sopInstanceUID):
        return next((f for f, (sop, _) in self._files.items() if sop == sopInstanceUID), "")

    def instanceForFile(self, fileName):
        return self._files.get(str(fileName), ("", ""))[0]

    def seriesForFile(self, fileName):
        return self._files.get(str(fileName), ("", ""))[1]

    def fileValue(self, fileName, tag):
        ds = _read(fileName)
        if ds is None:
            return ""
        group, element = (int(x, 16) for x in str(tag).split(","))
        elem = ds.get((group, element))
        if elem is None or elem.value is None:
            return ""
        value = elem.value
        if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
            return "\\".join(str(v) for v in value)
        return str(value)

    # what the indexer's insert does
    def _insert(self, path):
        path = str(path)
        ds = _read(path)
        if ds is None or not ds.get("SOPInstanceUID") or not ds.get("SeriesInstanceUID"):
            return False
        key = f"{ds.get('PatientID', '')}|{ds.get('PatientName', '')}"
        patient = self._patients.setdefault(key, {"name": str(ds.get("PatientName", "")), "studies": []})
        study_uid, series_uid = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
        if study_uid not in patient["studies"]:
            patient["studies"].append(study_uid)
        study = self._studies.setdefault(study_uid, {"patient": key, "series": [],
                                                     "description": str(ds.get("StudyDescription", ""))})
        if series_uid not in study["series"]:
            study["series"].append(series_uid)
        series = self._series.setdefault(series_uid, {"study": study_uid, "files": []})
        if path not in series["files"]:
            series["files"].append(path)
        self._files[path] = (str(ds.SOPInstanceUID), series_uid)
        return True


class ctkDICOMIndexer:
    def __init__(self):
        self.imported = []

    def addDirectory(self, db, directoryName, copyFile=False, includeHidden=True):
        for folder, _dirs, names in os.walk(directoryName):
            for name in sorted(names):
                if includeHidden or not name.startswith("."):
                    self.addFile(db, os.path.join(folder, name), copyFile)

    def addFile(self, db, filePath, copyFile=False):
        if db._insert(filePath):
            self.imported.append(filePath)

    def waitForImportFinished(self, msecTimeout=-1):
        return None


class Loadable:
    """DICOMLib.DICOMLoadable's fields (DICOMPlugin.py, v5.8.0 .. v5.12.3)."""

    def __init__(self, files, name, confidence, tooltip="", warning=""):
        self.files, self.name, self.confidence = list(files), name, confidence
        self.tooltip, self.warning, self.selected = tooltip, warning, True
        self.derivedItems = []


def _study(ds):
    import dicom_study_scene as dss
    return dss.Study(str(ds.PatientID), str(ds.get("PatientName", "")), str(ds.StudyInstanceUID),
                     str(ds.get("FrameOfReferenceUID") or ""), str(ds.get("StudyDescription", "")))


class ScalarVolumePlugin:
    loadType = "Scalar Volume"

    def __init__(self):
        self.tags = {"seriesDescription": "0008,103e", "position": "0020,0032"}

    def examineForImport(self, fileLists):
        out = []
        for files in fileLists:
            heads = [h for h in (_read(f) for f in files) if h is not None]
            images = [f for f, h in zip(files, heads)
                      if h.get("ImagePositionPatient") is not None and str(h.get("Modality")) not in ("RTDOSE",)]
            if images:
                # As examineForImport does (line 355 at v5.8.0): files sorted by Slicer's own
                # DICOMUtils.getSortedImageFiles (slice positions read through the database's fileValue).
                utils = sys.modules["DICOMLib.DICOMUtils"]
                images, _distances, warning = utils.getSortedImageFiles(images, 0.01)
                out.append(Loadable(images, str(heads[0].get("SeriesDescription", "volume")), 0.5, warning=warning))
        return out

    def examine(self, fileLists):
        return []

    def load(self, loadable):
        import slicer
        import vtk

        import dicom_study_scene as dss
        fileList = vtk.vtkStringArray()
        for f in loadable.files:
            fileList.InsertNextValue(f)
        node = slicer.modules.volumes.logic().AddArchetypeScalarVolume(loadable.files[0], loadable.name, 0, fileList)
        heads = [_read(f) for f in loadable.files]
        dss.add_ct_series(node, _study(heads[0]), str(heads[0].SeriesInstanceUID),
                          [str(h.SOPInstanceUID) for h in heads])
        return node


class RtPlugin:
    loadType = "RT"

    def __init__(self):
        self.tags = {"Modality": "0008,0060", "RTPlanLabel": "300a,0002"}

    def examineForImport(self, fileLists):
        out = []
        for files in fileLists:
            for f in files:
                ds = _read(f)
                if ds is not None and str(ds.get("Modality")) in ("RTDOSE", "RTSTRUCT", "RTPLAN"):
                    out.append(Loadable([f], f"{ds.Modality}: {Path(f).name}", 1.0))
        return out

    def examine(self, fileLists):
        return []

    def load(self, loadable):
        import numpy as np
        import slicer
        import SimpleITK as sitk

        import dicom_study_scene as dss
        from DoseRadiomicsLib import dicomrt, mrml_bridge
        path = loadable.files[0]
        ds = _read(path)
        study = _study(ds)
        if ds.Modality == "RTDOSE":
            image, details = dicomrt.read_rtdose(Path(path))  # Gy; SlicerRT leaves the DoseUnits' numbers
            units = str(ds.DoseUnits).upper()
            values = sitk.GetArrayFromImage(image).astype(np.float64) / dicomrt.UNIT_TO_GY[units]
            reference = mrml_bridge.volume_node_from_image(image, "__reference__")
            plan = str(ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID)
            dss.add_rtdose(values, reference, study, str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
                           dose_units=units, grid_scaling=str(ds.DoseGridScaling), plan_uid=plan,
                           name=f"RTDOSE {Path(path).name}")
            slicer.mrmlScene.RemoveNode(reference)
            return True
        if ds.Modality == "RTSTRUCT":
            referenced = str(ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
                             .RTReferencedSeriesSequence[0].SeriesInstanceUID)
            sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
            item = sh.GetItemByUID(slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName(), referenced)
            ct = sh.GetItemDataNode(item) if item else None
            if ct is None:
                return False  # SlicerRT needs the referenced images to convert the contours
            grid = mrml_bridge.image_from_volume_node(ct)
            rois = []
            for roi in dicomrt.rtstruct_rois(pydicom.dcmread(path)):
                mask, _ = dicomrt.rasterise_rtstruct(Path(path), grid, name=roi["name"])
                rois.append((roi["name"], mask))
            dss.add_rtstruct(rois, ct, study, str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
                             referenced_series_uid=referenced, name=f"RTSTRUCT {Path(path).name}")
            return True
        return False


def slicer_dicomutils(tag: str, monkeypatch):
    """Slicer's own DICOMLib/DICOMUtils.py at ``tag``, from the clone, as a module (None without the clone).

    Its top-level imports are satisfied by what is installed (qt and ctk: the fakes; ``requests``, used
    only by the DICOMweb functions, is stubbed through ``monkeypatch`` when absent)."""
    if not SLICER_CLONE.is_dir():
        return None
    try:
        source = subprocess.run(["git", "-C", str(SLICER_CLONE), "show", f"{tag}:Modules/Scripted/DICOMLib/DICOMUtils.py"],
                                check=True, capture_output=True, text=True).stdout
    except (subprocess.CalledProcessError, OSError):
        return None
    try:
        import requests  # noqa: F401
    except ImportError:
        stub = types.ModuleType("requests")
        stub.auth = types.SimpleNamespace(HTTPBasicAuth=type("HTTPBasicAuth", (), {}))
        monkeypatch.setitem(sys.modules, "requests", stub)
    module = types.ModuleType("DICOMLib.DICOMUtils")
    module.__file__ = f"{SLICER_CLONE}@{tag}/Modules/Scripted/DICOMLib/DICOMUtils.py"
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module
