"""DoseRadiomics: 2D radiomics of the planning CT and 2D dosiomics of the RT dose, in 3D Slicer.

The module holds no science: its Logic converts MRML nodes with ``DoseRadiomicsLib.mrml_bridge`` and
calls the library (alignment, largest cross-section, ROIs, pyradiomics features, model file,
prediction); the Widget only wires the panel to the Logic. The Logic and the Test run without Qt.
"""

import logging
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Annotated

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *  # noqa: F403 (Slicer's scripted-module base classes)
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

from slicer import (vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode,  # noqa: E402
                    vtkMRMLSegmentationNode, vtkMRMLTableNode, vtkMRMLVectorVolumeNode)

try:  # Qt exists only inside the Slicer application; headless tests use the Logic and Test only.
    import ctk
    import qt
except ImportError:
    ctk = qt = None

MODULE_DIR = Path(__file__).resolve().parent

# Import name -> requirement line of Resources/requirements.txt. Checked with importlib's finder,
# never imported at module import time (an import could be slow or fail in a half-installed env).
REQUIRED_IMPORTS = {
    "SimpleITK": "SimpleITK",
    "yaml": "PyYAML",
    "pandas": "pandas",
    "sklearn": "scikit-learn",
    "statsmodels": "statsmodels",
    "lifelines": "lifelines",
    "pywt": "PyWavelets",
    "trimesh": "trimesh",
}
# SlicerRT marks the dose volumes its DICOM-RT importer creates with this attribute.
SLICERRT_DOSE_ATTRIBUTE = "DicomRtImport.DoseVolume"
SAMPLE_CASE_NAME = "DoseRadiomics head-and-neck (OpenKBP pt_10)"
# The sample patient (OpenKBP pt_10) has no clinical data. The self-test predicts with these
# illustrative values, in the demo cohort's manifest spelling: they are not pt_10's.
ILLUSTRATIVE_CLINICAL_VALUES = ("age=60 sex=Male smoking=Yes diabetes=No kps=80 histology=squamous t_stage=T3-4 "
                                "n_stage=N2-3 m_stage=M0 tnm_stage=III treatment_mode=CCRT rt_technique=IMRT "
                                "prescribed_dose=60 hb=125 cea=3")


def _library():
    """DoseRadiomicsLib sits beside this file in a Slicer build, at the repository root in a checkout."""
    try:
        import DoseRadiomicsLib  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(MODULE_DIR.parent))
        import DoseRadiomicsLib  # noqa: F401
    return DoseRadiomicsLib


def resourcesRoot() -> Path:
    """The shared ``Resources`` folder: parameters, sample data, demo model (beside DoseRadiomicsLib)."""
    return Path(_library().__file__).resolve().parent.parent / "Resources"


#
# DoseRadiomics
#


class DoseRadiomics(ScriptedLoadableModule):  # noqa: F405
    """Module description shown in Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)  # noqa: F405
        self.parent.title = _("Dose Radiomics")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Radiotherapy")]
        self.parent.dependencies = []
        self.parent.contributors = ["DoseRadiomics contributors"]
        self.parent.helpText = _("""
Predicts radiochemotherapy resistance from the planning CT and the RT dose (Zhang et al. 2025,
Transl Cancer Res 14(3):1516): on the largest cross-section of the GTV, 2D radiomics of the GTV on the
CT and 2D dosiomics of the dose map (GTV-heat, 50Gy-heat), then the model file's logistic models.
Steps: align the dose to the CT, draw or correct the GTV, find the largest cross-section, make the dose
ROIs (editable), extract the features, predict with a model file (the combined model needs the clinical
values it was trained with, typed as in the manifest). Cohorts (extraction, training, report) run in the
background with the doseradiomics command.
No RTDOSE? As in the paper, import a dose-map picture exported from the planning system (PNG, JPEG or
DICOM secondary capture) in the "Dose-map picture" section: its colour wash is read back into dose (a
named colour table or the picture's own colour bar, with the dose range; or its grey levels), the
picture is registered to the CT's largest cross-section (automatically, or from three or more landmark
pairs placed on the picture and on the CT slice), and the dose is placed on that slice; the residuals
are shown, and the ROIs, extraction and prediction then work as with an RTDOSE.
For research use only; not a medical device.
""")
        self.parent.acknowledgementText = _("""
Built on 3D Slicer, SlicerRT and pyradiomics (via SlicerRadiomics). Method: Zhang et al., Transl Cancer
Res 2025;14(3):1516. Sample case: OpenKBP (Babier et al., Med Phys 2021, MIT licence).
""")
        # Sample data registration needs the application (Qt); absent in headless tests.
        app = getattr(slicer, "app", None)
        if app is not None:
            app.connect("startupCompleted()", registerSampleData)


#
# Sample data
#


def registerSampleData():
    """Add the bundled case (CT, dose in Gy, PTV70 as GTV) to the Sample Data module."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataCategory("DoseRadiomics", title=_("DoseRadiomics"))
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="DoseRadiomics",
        sampleName=SAMPLE_CASE_NAME,
        thumbnailFileName=str(MODULE_DIR / "Resources" / "Icons" / "DoseRadiomicsSample.png"),
        # The files ship inside the extension: no download, the custom loader reads them in place.
        uris=[], fileNames=[], nodeNames=[],
        customDownloader=lambda source: DoseRadiomicsLogic().loadSampleCase(),
    )


#
# DoseRadiomicsParameterNode
#


@parameterNodeWrapper
class DoseRadiomicsParameterNode:
    """What the panel remembers in the scene (saved with it).

    ctVolume, doseVolume - the planning CT and the RT dose as loaded (dose in Gy);
    gtvSegmentation, gtvSegmentId - the GTV segment (drawn in the editor or imported from RTSTRUCT);
    alignedDose - the dose resampled on the CT grid; roiSegmentation - GTV, GTV-heat and isodose segments
    on the largest cross-section; featureTable - the extracted features;
    isodoseGy - isodose thresholds in Gy, e.g. "50" or "45 50"; config - "paper" (1,595 features per
    ROI) or "2d"; modelPath, clinicalValues - the model file and clinical inputs for prediction;
    manifestPath, cohortOutputDir - the cohort job;
    dosePicture* - the dose-map picture route: the picture file, how to read its dose (mode, colour
    table, colour bar box and orientation, dose range in Gy, wash opacity or "" to estimate it), how to
    register it (automatic or landmarks; similarity or affine), the picture shown as a volume, and the
    two landmark point lists (pictureLandmarks on the picture, ctLandmarks on the CT slice).
    """

    ctVolume: vtkMRMLScalarVolumeNode
    doseVolume: vtkMRMLScalarVolumeNode
    gtvSegmentation: vtkMRMLSegmentationNode
    gtvSegmentId: str = ""
    alignedDose: vtkMRMLScalarVolumeNode
    roiSegmentation: vtkMRMLSegmentationNode
    featureTable: vtkMRMLTableNode
    register: bool = False
    doseOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    isodoseGy: str = "50"
    isodoseTouchingGtv: bool = False
    config: Annotated[str, Choice(["paper", "2d"])] = "paper"
    modelPath: Path
    clinicalValues: str = ""
    manifestPath: Path
    cohortOutputDir: Path
    dosePicturePath: Path
    dosePictureMode: Annotated[str, Choice(["colour-table", "colour-bar", "intensity"])] = "colour-table"
    dosePictureColourTable: Annotated[str, Choice(["jet", "rainbow"])] = "jet"
    dosePictureColourBar: str = ""
    dosePictureBarOrientation: Annotated[str, Choice(["vertical", "horizontal"])] = "vertical"
    dosePictureDoseLow: Annotated[float, WithinRange(0.0, 1000.0)] = 0.0
    dosePictureDoseHigh: Annotated[float, WithinRange(0.0, 1000.0)] = 70.0
    dosePictureOpacity: str = ""
    dosePictureRegistration: Annotated[str, Choice(["automatic", "landmarks"])] = "automatic"
    dosePictureTransform: Annotated[str, Choice(["similarity", "affine"])] = "similarity"
    dosePictureNode: vtkMRMLVectorVolumeNode
    pictureLandmarks: vtkMRMLMarkupsFiducialNode
    ctLandmarks: vtkMRMLMarkupsFiducialNode


class ExtractionCancelled(Exception):
    """Raised from the progress callback when the user presses Cancel."""


#
# DoseRadiomicsWidget (Qt: runs only inside Slicer; checked statically by the tests)
#


class DoseRadiomicsWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):  # noqa: F405
    """The panel: wires widgets to the Logic, nothing else."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)  # noqa: F405
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._cancelRequested = False
        self._process = None
        self._queuedCommands = []
        self._features = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)  # noqa: F405
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DoseRadiomics.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DoseRadiomicsLogic()

        editorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode", "DoseRadiomicsSegmentEditor")
        self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(editorNode)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.loadSampleButton.connect("clicked(bool)", self.onLoadSample)
        self.ui.alignButton.connect("clicked(bool)", self.onAlign)
        self.ui.showPictureButton.connect("clicked(bool)", self.onShowPicture)
        self.ui.importPictureButton.connect("clicked(bool)", self.onImportPicture)
        self.ui.dosePictureModeComboBox.connect("currentIndexChanged(int)", self.updateDosePictureWidgets)
        self.ui.dosePictureRegistrationComboBox.connect("currentIndexChanged(int)", self.updateDosePictureWidgets)
        self.ui.pictureLandmarksSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onPictureLandmarksChanged)
        self.ui.ctLandmarksSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onCtLandmarksChanged)
        self.ui.gtvSegmentSelector.connect("currentSegmentChanged(QString)", self.onGtvSegmentChanged)
        self.ui.gtvSegmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onGtvSegmentationChanged)
        self.ui.largestSliceButton.connect("clicked(bool)", self.onLargestSlice)
        self.ui.makeRoisButton.connect("clicked(bool)", self.onMakeROIs)
        self.ui.extractButton.connect("clicked(bool)", self.onExtract)
        self.ui.cancelExtractButton.connect("clicked(bool)", self.onCancelExtract)
        self.ui.predictButton.connect("clicked(bool)", self.onPredict)
        self.ui.cohortRunButton.connect("clicked(bool)", self.onCohortRun)
        self.ui.cohortCancelButton.connect("clicked(bool)", self.onCohortCancel)
        self.ui.openReportButton.connect("clicked(bool)", self.onOpenReport)

        self.initializeParameterNode()
        self.updateDependencyStatus()
        self.updateDosePictureWidgets()

    def cleanup(self) -> None:
        self.removeObservers()
        if self._process is not None:
            self._process.kill()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.ctVolume or not self._parameterNode.doseVolume:
            ct, dose = self.logic.guessCtAndDose()
            if not self._parameterNode.ctVolume and ct:
                self._parameterNode.ctVolume = ct
            if not self._parameterNode.doseVolume and dose:
                self._parameterNode.doseVolume = dose

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.ui.segmentEditorWidget.setSegmentationNode(self._parameterNode.gtvSegmentation)
            self.ui.segmentEditorWidget.setSourceVolumeNode(self._parameterNode.ctVolume)

    def _status(self, text: str) -> None:
        self.ui.statusLabel.text = text
        slicer.util.showStatusMessage(text, 5000)

    # Dependencies

    def updateDependencyStatus(self) -> None:
        missing = self.logic.missingDependencies()
        problems = self.logic.pyradiomicsProblem()
        lines = []
        if missing:
            lines.append(_("Python packages to install: {names}").format(names=", ".join(missing)))
        if problems:
            lines.append(problems)
        self.ui.dependencyLabel.text = "\n".join(lines) or _("All Python dependencies are available.")
        self.ui.installDependenciesButton.enabled = bool(missing)

    def onInstallDependencies(self) -> None:
        missing = self.logic.missingDependencies()
        if not missing:
            return
        if not slicer.util.confirmOkCancelDisplay(
                _("DoseRadiomics needs these Python packages, which will be downloaded and installed "
                  "into Slicer's Python:\n\n{names}\n\nInstall now?").format(names="\n".join(missing)),
                windowTitle=_("Install Python packages")):
            return
        with slicer.util.tryWithErrorDisplay(_("Installing the Python packages failed."), waitCursor=True):
            slicer.util.pip_install(" ".join(shlex.quote(r) for r in missing))
        if self.logic.restartNeeded(missing):
            slicer.util.infoDisplay(_("The packages are installed. Restart Slicer before using DoseRadiomics: "
                                      "an older version of one of them is already loaded."))
        self.updateDependencyStatus()

    # Single patient

    def onLoadSample(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Loading the sample case failed."), waitCursor=True):
            case = self.logic.loadSampleCase()
            self._parameterNode.ctVolume = case["ct"]
            self._parameterNode.doseVolume = case["dose"]
            self._parameterNode.gtvSegmentation = case["gtvSegmentation"]
            self._parameterNode.gtvSegmentId = case["gtvSegmentId"]
            self.ui.gtvSegmentSelector.setCurrentNode(case["gtvSegmentation"])
            self.ui.gtvSegmentSelector.setCurrentSegmentID(case["gtvSegmentId"])
            self._status(_("Sample case loaded: CT, dose (Gy) and GTV."))

    def onGtvSegmentationChanged(self, node) -> None:
        self._parameterNode.gtvSegmentation = node
        self.ui.segmentEditorWidget.setSegmentationNode(node)
        self.ui.segmentEditorWidget.setSourceVolumeNode(self._parameterNode.ctVolume)

    def onGtvSegmentChanged(self, segmentId) -> None:
        self._parameterNode.gtvSegmentId = segmentId or ""

    def onAlign(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Aligning the dose to the CT failed."), waitCursor=True):
            aligned = self.logic.alignDose(p.ctVolume, p.doseVolume, p.gtvSegmentation, p.gtvSegmentId or None,
                                           register=p.register, outputNode=p.alignedDose)
            p.alignedDose = aligned
            self.logic.showDoseWash(p.ctVolume, aligned, opacity=p.doseOpacity)
            self._status(self.logic.describeAlignment())

    # Dose-map picture (instead of an RTDOSE)

    def updateDosePictureWidgets(self, *_args) -> None:
        """Enable only the inputs the chosen mode and registration use."""
        mode = self.ui.dosePictureModeComboBox.currentText
        self.ui.dosePictureColourTableComboBox.enabled = mode == "colour-table"
        self.ui.dosePictureColourBarLineEdit.enabled = mode == "colour-bar"
        self.ui.dosePictureBarOrientationComboBox.enabled = mode == "colour-bar"
        self.ui.dosePictureOpacityLineEdit.enabled = mode != "intensity"
        landmarks = self.ui.dosePictureRegistrationComboBox.currentText == "landmarks"
        for widget in (self.ui.pictureLandmarksSelector, self.ui.pictureLandmarksPlaceWidget,
                       self.ui.ctLandmarksSelector, self.ui.ctLandmarksPlaceWidget):
            widget.enabled = landmarks

    def onPictureLandmarksChanged(self, node) -> None:
        self.ui.pictureLandmarksPlaceWidget.setCurrentNode(node)
        self.logic.showPictureForLandmarks(None, pictureMarkupsNode=node)

    def onCtLandmarksChanged(self, node) -> None:
        self.ui.ctLandmarksPlaceWidget.setCurrentNode(node)
        self.logic.showPictureForLandmarks(None, ctMarkupsNode=node)

    def _picturePath(self) -> str:
        path = self._parameterNode.dosePicturePath
        return "" if path is None or str(path) in ("", ".") else str(path)

    def _crossSection(self):
        p = self._parameterNode
        return self.logic.findLargestCrossSection(p.gtvSegmentation, p.gtvSegmentId, p.ctVolume)

    def onShowPicture(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Showing the dose-map picture failed."), waitCursor=True):
            section = self._crossSection() if p.ctVolume and p.gtvSegmentation and p.gtvSegmentId else None
            p.dosePictureNode = self.logic.loadDoseMapPicture(self._picturePath(), section=section,
                                                              outputNode=p.dosePictureNode)
            if section is not None:
                self.logic.jumpToCrossSection(section)
            self.logic.showPictureForLandmarks(p.dosePictureNode, p.pictureLandmarks, p.ctLandmarks)
            self._status(_("The picture is in the yellow view, the CT's largest cross-section in the red view."))

    def onImportPicture(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Importing the dose-map picture failed."), waitCursor=True):
            settings = self.logic.doseMapSettings(
                p.dosePictureMode, (p.dosePictureDoseLow, p.dosePictureDoseHigh),
                colourTable=p.dosePictureColourTable, colourBar=p.dosePictureColourBar,
                barOrientation=p.dosePictureBarOrientation, opacity=p.dosePictureOpacity,
                registration=p.dosePictureTransform)
            landmarks = None
            if p.dosePictureRegistration == "landmarks":
                landmarks = self.logic.landmarksFromMarkups(p.pictureLandmarks, p.ctLandmarks, p.dosePictureNode,
                                                            p.ctVolume, self._crossSection())
            # Reuse the dose node only if it came from a picture: never overwrite an aligned RTDOSE.
            previous = p.alignedDose
            reuse = previous if previous and previous.GetAttribute(self.logic.ATTR_DOSE_MAP_PICTURE) else None
            dose, report = self.logic.importDoseMapPicture(self._picturePath(), p.ctVolume, p.gtvSegmentation,
                                                           p.gtvSegmentId, settings, landmarks=landmarks,
                                                           outputNode=reuse)
            p.alignedDose = dose
            self.logic.showDoseWash(p.ctVolume, dose, opacity=p.doseOpacity)
            text = self.logic.describeDoseMapImport(report)
            self.ui.dosePictureResultLabel.text = text
            self._status(text)

    def onLargestSlice(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Finding the largest cross-section failed."), waitCursor=True):
            section = self.logic.findLargestCrossSection(p.gtvSegmentation, p.gtvSegmentId, p.ctVolume)
            self.logic.jumpToCrossSection(section)
            self.ui.sectionLabel.text = _("slice {index}, {area:.1f} mm²").format(
                index=section["index"], area=section["area_mm2"])

    def onMakeROIs(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Making the dose ROIs failed."), waitCursor=True):
            rois = self.logic.makeDoseROIs(p.ctVolume, p.alignedDose, p.gtvSegmentation, p.gtvSegmentId,
                                           isodoseGy=self.logic.parseIsodose(p.isodoseGy),
                                           isodoseTouchingGtv=p.isodoseTouchingGtv,
                                           outputSegmentationNode=p.roiSegmentation)
            p.roiSegmentation = rois
            areas = self.logic.roiAreas(rois, p.ctVolume)
            self._status("; ".join(f"{k}: {v:.0f} mm²" for k, v in areas.items()))

    def onExtract(self) -> None:
        p = self._parameterNode
        self._cancelRequested = False
        self.ui.extractProgressBar.value = 0
        self.ui.cancelExtractButton.enabled = True
        steps = len(p.roiSegmentation.GetSegmentation().GetSegmentIDs()) if p.roiSegmentation else 1

        def progress(message, done=[0]):  # noqa: B006 (counter across calls)
            self.ui.extractProgressBar.value = int(100 * done[0] / max(steps, 1))
            done[0] += 1
            self._status(message)
            slicer.app.processEvents()
            if self._cancelRequested:
                raise ExtractionCancelled()

        try:
            with slicer.util.tryWithErrorDisplay(_("Feature extraction failed."), waitCursor=True):
                try:
                    options = self.logic.extractionOptions(isodoseGy=self.logic.parseIsodose(p.isodoseGy),
                                                           isodoseTouchingGtv=p.isodoseTouchingGtv,
                                                           config=p.config)
                    table, self._features = self.logic.extractFeatures(
                        p.ctVolume, p.alignedDose, p.roiSegmentation, options=options,
                        tableNode=p.featureTable, progress=progress)
                except ExtractionCancelled:
                    self._status(_("Extraction cancelled."))
                    return
                p.featureTable = table
                self.ui.extractProgressBar.value = 100
                self.logic.showTable(table)
                self._status(_("{n} features extracted.").format(n=len(self._features)))
        finally:
            self.ui.cancelExtractButton.enabled = False

    def onCancelExtract(self) -> None:
        self._cancelRequested = True

    def onPredict(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Prediction failed."), waitCursor=True):
            features = self._features or self.logic.featuresFromTable(p.featureTable)
            clinical = self.logic.parseClinical(p.clinicalValues)
            out = self.logic.predict(features, str(p.modelPath), clinical=clinical,
                                     settingsHash=p.featureTable.GetAttribute("DoseRadiomics.SettingsHash")
                                     if p.featureTable else None)
            self.logic.showTable(out["tableNode"])
            for chart in out["chartNodes"].values():
                self.logic.showChart(chart)
            result = out["result"]
            text = ", ".join(f"{k} {v:.3f}" for k, v in result["probabilities"].items())
            if result["risk_group"]:
                text += _("; risk group {g} (cut-off {c:.3f})").format(g=result["risk_group"], c=result["cutoff"])
            if result["missing"]:
                text += "\n" + _("Not given (type them in Clinical values): {names}").format(
                    names=", ".join(result["missing"]))
            self.ui.predictionLabel.text = text + "".join("\n" + w for w in result["warnings"])

    # Cohort (background process: the UI stays responsive)

    def onCohortRun(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not start the cohort job."), waitCursor=False):
            out = str(p.cohortOutputDir)
            options = self.logic.extractionOptions(isodoseGy=self.logic.parseIsodose(p.isodoseGy),
                                                   isodoseTouchingGtv=p.isodoseTouchingGtv, config=p.config)
            self._queuedCommands = self.logic.cohortCommands(str(p.manifestPath), out, options)
            self.ui.cohortLog.clear()
            self.ui.cohortProgressBar.value = 0
            self._startNextCommand()

    def _startNextCommand(self) -> None:
        if not self._queuedCommands:
            self._process = None
            self.ui.cohortProgressBar.value = 100
            self.ui.openReportButton.enabled = True
            self._status(_("Cohort job finished."))
            return
        command = self._queuedCommands.pop(0)
        self.ui.cohortLog.appendPlainText("$ " + " ".join(shlex.quote(c) for c in command))
        process = qt.QProcess()
        env = qt.QProcessEnvironment.systemEnvironment()
        for key, value in self.logic.processEnvironment().items():
            env.insert(key, value)
        process.setProcessEnvironment(env)
        process.setProcessChannelMode(qt.QProcess.MergedChannels)
        process.connect("readyReadStandardOutput()", self._onProcessOutput)
        process.connect("finished(int,QProcess::ExitStatus)", self._onProcessFinished)
        self._process = process
        process.start(command[0], command[1:])

    def _onProcessOutput(self) -> None:
        text = bytes(self._process.readAllStandardOutput().data()).decode("utf-8", "replace")
        for line in text.splitlines():
            self.ui.cohortLog.appendPlainText(line)
            fraction = self.logic.progressFromLine(line)
            if fraction is not None:
                self.ui.cohortProgressBar.value = int(100 * fraction)

    def _onProcessFinished(self, exitCode, exitStatus) -> None:
        if exitCode != 0:
            self._queuedCommands = []
            self._process = None
            slicer.util.errorDisplay(_("The cohort job stopped (exit code {code}); see the log.").format(code=exitCode))
            return
        self._startNextCommand()

    def onCohortCancel(self) -> None:
        self._queuedCommands = []
        if self._process is not None:
            self._process.kill()
            self._status(_("Cohort job cancelled."))

    def onOpenReport(self) -> None:
        report = self.logic.cohortPaths(str(self._parameterNode.cohortOutputDir))["report"]
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(report))


#
# DoseRadiomicsLogic
#


class DoseRadiomicsLogic(ScriptedLoadableModuleLogic):  # noqa: F405
    """MRML nodes in, MRML nodes out; every computation is the library's.

    Usable without the GUI, e.g. from the Python console::

        logic = DoseRadiomicsLogic()
        aligned = logic.alignDose(ctNode, doseNode)
        rois = logic.makeDoseROIs(ctNode, aligned, gtvSegmentationNode, "GTV")
        table, features = logic.extractFeatures(ctNode, aligned, rois)
        out = logic.predict(features, "model.json", clinical={"hb": 118, "t_stage": "T3"})
    """

    DOSE_COLOR_TABLE_NAME = "DoseRadiomics dose"
    ROI_COLORS = {"GTV": (0.90, 0.20, 0.20), "GTV-heat": (1.00, 0.65, 0.00)}
    ISODOSE_COLOR = (0.20, 0.55, 1.00)
    # Attributes on the ROI segmentation: which slice the ROIs were made on, and with what options.
    ATTR_AXIS = "DoseRadiomics.SliceAxis"
    ATTR_INDEX = "DoseRadiomics.SliceIndex"
    ATTR_ISODOSE = "DoseRadiomics.IsodoseGy"
    ATTR_TOUCHING = "DoseRadiomics.IsodoseTouchingGtv"
    ATTR_SETTINGS_HASH = "DoseRadiomics.SettingsHash"
    EXACT_VALUE_COLUMN = "value (exact)"

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)  # noqa: F405
        self.lastAlignmentReport = None

    def getParameterNode(self):
        return DoseRadiomicsParameterNode(super().getParameterNode())

    # ---------------------------------------------------------------------------------------
    # Dependencies

    @staticmethod
    def requirementsPath() -> Path:
        return MODULE_DIR / "Resources" / "requirements.txt"

    def missingDependencies(self) -> list:
        """Requirement lines (from Resources/requirements.txt) whose package cannot be imported."""
        import importlib.util
        lines = {}
        for raw in self.requirementsPath().read_text(encoding="utf-8").splitlines():
            line = raw.split("#", 1)[0].strip()
            if line:
                name = line.split(";")[0]
                for sep in "<>=!~[ ":
                    name = name.split(sep)[0]
                lines[name.lower()] = line
        missing = []
        for module, package in REQUIRED_IMPORTS.items():
            if importlib.util.find_spec(module) is None:
                missing.append(lines.get(package.lower(), package))
        return missing

    def pyradiomicsProblem(self):
        """None if pyradiomics is importable, else what the user should do."""
        import importlib.util
        if importlib.util.find_spec("radiomics") is None:
            return _("pyradiomics cannot be imported: install the SlicerRadiomics extension from the "
                     "Extension Manager (it provides pyradiomics) and restart Slicer.")
        return None

    @staticmethod
    def restartNeeded(requirements) -> bool:
        """True when a package just installed was already imported in this session (old code loaded)."""
        names = {r.split(";")[0].split("<")[0].split(">")[0].split("=")[0].split("[")[0].strip().lower()
                 for r in requirements}
        imports = {package.lower(): module for module, package in REQUIRED_IMPORTS.items()}
        return any(imports.get(n, n) in sys.modules for n in names)

    # ---------------------------------------------------------------------------------------
    # Data

    @staticmethod
    def sampleCasePaths() -> dict:
        folder = resourcesRoot() / "SampleData" / "OpenKBP-pt_10"
        return {"ct": folder / "ct.nrrd", "dose": folder / "dose.nrrd", "gtv": folder / "mask_PTV70.nrrd"}

    def loadVolume(self, path, name: str, labelmap: bool = False):
        """Read a NRRD/NIfTI/MHA volume with its geometry into a new volume node."""
        path = Path(path)
        if not path.is_file():
            from DoseRadiomicsLib.errors import InputError
            raise InputError("file not found", path=path)
        scene = slicer.mrmlScene
        node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode",
                                       scene.GenerateUniqueName(name))
        storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        storage.SetFileName(str(path))
        if labelmap:
            storage.SetCenterImage(False)
        if not storage.ReadData(node):
            scene.RemoveNode(node)
            scene.RemoveNode(storage)
            from DoseRadiomicsLib.errors import InputError
            raise InputError("the volume could not be read", path=path)
        node.SetAndObserveStorageNodeID(storage.GetID())
        node.CreateDefaultDisplayNodes()
        return node

    def loadSampleCase(self) -> dict:
        """Load the bundled case: CT, dose (Gy, marked as dose) and the PTV70 as segment ``GTV``."""
        from DoseRadiomicsLib import mrml_bridge
        paths = self.sampleCasePaths()
        ct = self.loadVolume(paths["ct"], "pt_10 CT")
        dose = self.loadVolume(paths["dose"], "pt_10 dose (Gy)")
        dose.SetAttribute(SLICERRT_DOSE_ATTRIBUTE, "1")
        dose.SetAttribute("DoseRadiomics.DoseUnit", "Gy")
        gtvLabel = self.loadVolume(paths["gtv"], "__gtv__", labelmap=True)
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "pt_10 GTV")
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(ct)
        mask = mrml_bridge.image_from_volume_node(gtvLabel)
        segmentId = mrml_bridge.add_segment_from_mask(segmentation, mask, "GTV", color=self.ROI_COLORS["GTV"])
        for node in (gtvLabel.GetDisplayNode(), gtvLabel.GetStorageNode(), gtvLabel):
            if node is not None:
                slicer.mrmlScene.RemoveNode(node)
        return {"ct": ct, "dose": dose, "gtvSegmentation": segmentation, "gtvSegmentId": segmentId}

    @staticmethod
    def isDoseVolume(node) -> bool:
        return bool(node) and (node.GetAttribute(SLICERRT_DOSE_ATTRIBUTE) == "1"
                               or node.GetAttribute("DoseRadiomics.DoseUnit") is not None)

    def guessCtAndDose(self):
        """(CT, dose): dose = the first volume marked as dose (SlicerRT), CT = the first other scalar volume."""
        ct = dose = None
        scene = slicer.mrmlScene
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
            node = scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
            if node.IsA("vtkMRMLLabelMapVolumeNode") or node.GetAttribute("DoseRadiomics.AlignedDose"):
                continue
            if self.isDoseVolume(node):
                dose = dose or node
            else:
                ct = ct or node
        return ct, dose

    @staticmethod
    def frameOfReferenceUid(volumeNode):
        """FrameOfReferenceUID of a DICOM-loaded volume (needs Slicer's DICOM database), else None."""
        uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
        database = getattr(slicer, "dicomDatabase", None)
        if not uids or database is None:
            return None
        try:
            value = database.fileValue(database.fileForInstance(uids[0]), "0020,0052")
        except Exception:  # noqa: BLE001 - a missing tag or file only means "unknown"
            return None
        return value or None

    def _loaded(self, volumeNode, role: str):
        from DoseRadiomicsLib import mrml_bridge
        from DoseRadiomicsLib.readers import LoadedImage
        if volumeNode is None:
            from DoseRadiomicsLib.errors import InputError
            raise InputError(f"no {role} volume selected", hint=f"select the {role} volume")
        if volumeNode.GetParentTransformNode() is not None:
            # The library sees voxels and geometry only: apply the transform the viewer shows.
            slicer.vtkSlicerTransformLogic.hardenTransform(volumeNode)
        image = mrml_bridge.image_from_volume_node(volumeNode)
        return LoadedImage(image=image, path=f"Slicer node '{volumeNode.GetName()}'",
                           frame_of_reference_uid=self.frameOfReferenceUid(volumeNode),
                           details={"node_id": volumeNode.GetID()})

    # ---------------------------------------------------------------------------------------
    # Steps

    def alignDose(self, ctNode, doseNode, gtvSegmentationNode=None, gtvSegment=None, register=False,
                  transformPath=None, outputNode=None):
        """The dose resampled on the CT grid (rigid registration first if asked); a volume node.

        The library's report (method, coverage of the GTV by the dose grid...) is kept in
        ``lastAlignmentReport``.
        """
        from DoseRadiomicsLib import alignment, mrml_bridge
        ct = self._loaded(ctNode, "CT")
        dose = self._loaded(doseNode, "dose")
        gtv = None
        if gtvSegmentationNode is not None and gtvSegment:
            gtv = mrml_bridge.mask_from_segment(gtvSegmentationNode, gtvSegment, ctNode)
        aligned, report = alignment.align_dose_to_ct(ct, dose, gtv=gtv, transform=transformPath,
                                                     register=register)
        name = f"{doseNode.GetName()} on CT"
        outputNode = mrml_bridge.volume_node_from_image(aligned, name, node=outputNode)
        outputNode.SetAttribute("DoseRadiomics.AlignedDose", "1")
        outputNode.SetAttribute("DoseRadiomics.DoseUnit", "Gy")
        outputNode.SetAttribute(SLICERRT_DOSE_ATTRIBUTE, "1")
        self.lastAlignmentReport = report
        self.showDoseWash(ctNode, outputNode)
        return outputNode

    def describeAlignment(self) -> str:
        r = self.lastAlignmentReport or {}
        text = _("Dose aligned ({method}).").format(method=r.get("method", "?"))
        coverage = r.get("gtv_dose_coverage")
        if coverage is not None:
            text += " " + _("GTV inside the dose grid: {p:.1f}%").format(p=100 * coverage)
        return text

    def doseColorTable(self):
        """A blue-green-yellow-red colour table for dose (created once per scene)."""
        scene = slicer.mrmlScene
        node = scene.GetFirstNodeByName(self.DOSE_COLOR_TABLE_NAME)
        if node is not None:
            return node
        node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", self.DOSE_COLOR_TABLE_NAME)
        node.SetTypeToUser()
        n = 256
        node.SetNumberOfColors(n)
        stops = [(0.0, (0.0, 0.0, 0.6)), (0.25, (0.0, 0.5, 1.0)), (0.5, (0.0, 0.9, 0.3)),
                 (0.75, (1.0, 0.9, 0.0)), (1.0, (0.9, 0.0, 0.0))]
        for i in range(n):
            x = i / (n - 1)
            for (x0, c0), (x1, c1) in zip(stops, stops[1:]):
                if x0 <= x <= x1:
                    f = (x - x0) / (x1 - x0)
                    rgb = [a + f * (b - a) for a, b in zip(c0, c1)]
                    break
            node.SetColor(i, "", *rgb, 1.0)
        node.SetAttribute("Category", "DoseRadiomics")
        return node

    def showDoseWash(self, ctNode, doseNode, opacity: float = 0.5, lowerFraction: float = 0.05) -> None:
        """Dose as a colour wash over the CT: dose colours, doses below 5% of the maximum hidden."""
        display = doseNode.GetDisplayNode()
        if display is None:
            doseNode.CreateDefaultDisplayNodes()
            display = doseNode.GetDisplayNode()
        display.SetAndObserveColorNodeID(self.doseColorTable().GetID())
        low, high = doseNode.GetImageData().GetScalarRange()
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(0.0, max(high, 1e-6))
        display.AutoThresholdOff()
        display.SetLowerThreshold(lowerFraction * high)
        display.SetUpperThreshold(max(high, 1e-6))
        display.ApplyThresholdOn()
        slicer.util.setSliceViewerLayers(background=ctNode, foreground=doseNode, foregroundOpacity=opacity)

    def findLargestCrossSection(self, segmentationNode, segment, ctNode, axis: int = 2) -> dict:
        """The slice with the largest GTV area: index, position_mm, area_mm2, tied indices, RAS centre."""
        from DoseRadiomicsLib import crosssection, mrml_bridge
        import numpy as np
        import SimpleITK as sitk
        mask = mrml_bridge.mask_from_segment(segmentationNode, segment, ctNode)
        section = crosssection.largest_cross_section(mask, axis=axis)
        out = section.to_dict()
        # Centre of the GTV on that slice, in RAS, for the slice views to jump to.
        one = crosssection.extract_slice(mask, section)
        idx = np.argwhere(sitk.GetArrayViewFromImage(one) != 0).mean(axis=0)[::-1]  # (i, j, 0)
        lps = np.array(one.TransformContinuousIndexToPhysicalPoint([float(v) for v in idx]))
        out["ras"] = [float(-lps[0]), float(-lps[1]), float(lps[2])]
        out["section"] = section
        return out

    @staticmethod
    def jumpToCrossSection(section: dict) -> None:
        """Centre every slice view on the cross-section (no-op without views)."""
        x, y, z = section["ras"]
        slicer.vtkMRMLSliceNode.JumpAllSlices(slicer.mrmlScene, x, y, z,
                                              slicer.vtkMRMLSliceNode.CenteredJumpSlice)

    @staticmethod
    def parseIsodose(text) -> tuple:
        """'50' or '45, 50' -> (45.0, 50.0)."""
        if isinstance(text, (int, float)):
            return (float(text),)
        if not isinstance(text, str):
            return tuple(float(t) for t in text)
        values = [v for v in text.replace(",", " ").replace(";", " ").split() if v]
        try:
            return tuple(float(v) for v in values)
        except ValueError:
            from DoseRadiomicsLib.errors import InputError
            raise InputError(f"isodose thresholds must be numbers in Gy, got '{text}'",
                             hint="e.g. 50, or 45 50") from None

    # ---------------------------------------------------------------------------------------
    # Dose-map picture: the paper's route, a planning-system picture of the dose instead of RTDOSE.
    # Every step is DoseRadiomicsLib.dosemap's; the Logic converts nodes and points.

    ATTR_DOSE_MAP_PICTURE = "DoseRadiomics.DoseMapPicture"

    @staticmethod
    def _numbers(value, count: int, what: str, hint: str) -> tuple:
        """``count`` numbers from text ('500 80 520 400', commas allowed) or a sequence."""
        from DoseRadiomicsLib.errors import InputError
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").replace(";", " ").split() if v]
        try:
            numbers = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            numbers = ()
        if len(numbers) != count:
            raise InputError(f"{what} must be {count} numbers, got '{value}'", hint=hint)
        return numbers

    def doseMapSettings(self, mode: str, doseRange, colourTable: str = "jet", colourBar=None,
                        barOrientation: str = "vertical", opacity=None, registration: str = "similarity",
                        belowWashGy: float = 0.0):
        """The library's ``dosemap.DoseMapSettings`` from the panel's values.

        ``mode`` colour-table / colour-bar / intensity; ``doseRange`` (low, high) Gy: the doses of the
        table's first and last colour, of the bar's bottom (left) and top (right) end, or of black and
        white; ``colourBar`` the bar's box "X0 Y0 X1 Y1" in picture pixels; ``opacity`` of the wash
        ("" or None: estimated from the picture); ``registration`` similarity or affine.
        """
        from DoseRadiomicsLib import dosemap
        from DoseRadiomicsLib.errors import InputError
        if mode not in dosemap.MODES:
            raise InputError(f"unknown dose-map mode '{mode}'", hint=f"one of {', '.join(dosemap.MODES)}")
        low, high = self._numbers(doseRange, 2, "the dose range", "the lowest and highest dose in Gy, e.g. 0 75")
        bar = None
        if mode == "colour-bar":
            bar = self._numbers(colourBar, 4, "the colour bar box",
                                "its corners X0 Y0 X1 Y1 in picture pixels (x right, y down from the top left): "
                                "show the picture and read them from the pixel readout")
        opacityValue = None
        if opacity not in (None, ""):
            opacityValue = self._numbers([opacity] if not isinstance(opacity, str) else opacity, 1,
                                         "the wash opacity", "a number in (0, 1], or empty to estimate it")[0]
        return dosemap.DoseMapSettings(mode=mode, dose_range=(low, high), colour_bar=bar,
                                       bar_orientation=barOrientation,
                                       colour_table=colourTable if mode == "colour-table" else None,
                                       opacity=opacityValue, registration=registration,
                                       below_wash_gy=float(belowWashGy))

    def loadDoseMapPicture(self, picturePath, section=None, outputNode=None):
        """The picture as a one-slice RGB volume (IJK = picture pixel x, y), for placing landmarks on it.

        Read by the library's reader (PNG, JPEG, DICOM secondary capture), so what is shown is what is
        decoded. ``section`` (from :meth:`findLargestCrossSection`) centres it on the GTV's slice centre.
        """
        from DoseRadiomicsLib import dosemap_colour, mrml_bridge
        picture = dosemap_colour.read_dose_map_picture(picturePath)
        centre = section["ras"] if isinstance(section, dict) else None
        node = mrml_bridge.picture_volume_node(picture.rgb, f"{Path(picturePath).stem} (dose-map picture)",
                                               centre_ras=centre, node=outputNode)
        node.SetAttribute(self.ATTR_DOSE_MAP_PICTURE, str(picturePath))
        return node

    def landmarksFromMarkups(self, pictureMarkupsNode, ctMarkupsNode, pictureNode, ctNode, section) -> tuple:
        """Landmark pairs for ``dosemap.fit_landmarks`` from two markups point lists.

        The n-th point on the picture (shown by :meth:`loadDoseMapPicture`) pairs with the n-th point on
        the CT's cross-section. Returns ``(ct_mm (n, 2), picture_px (n, 2), report)``: CT points in the
        library's slice frame (in-plane voxel index x spacing, mm), picture points in picture pixels
        (x right, y down). Markups are in world RAS; each volume's own RAS-to-IJK (and parent transform)
        converts them, so RAS vs LPS never enters. ``section``: the dict of
        :meth:`findLargestCrossSection` or a ``CrossSection``.
        """
        import numpy as np
        from DoseRadiomicsLib import mrml_bridge
        from DoseRadiomicsLib.errors import InputError
        section = section["section"] if isinstance(section, dict) else section
        if pictureMarkupsNode is None or ctMarkupsNode is None or pictureNode is None:
            raise InputError("landmark registration needs a point list on the picture and one on the CT slice",
                             hint="show the picture, then place matching points on it and on the CT")
        onPicture = mrml_bridge.markups_points_ras(pictureMarkupsNode)
        onCt = mrml_bridge.markups_points_ras(ctMarkupsNode)
        if len(onPicture) != len(onCt):
            raise InputError(f"{len(onPicture)} landmark(s) on the picture but {len(onCt)} on the CT slice",
                             hint="points pair up in the order placed: place the same number on each")
        pictureIjk = mrml_bridge.ijk_from_ras(pictureNode, onPicture)
        cols, rows = pictureNode.GetImageData().GetDimensions()[:2]
        outside = [i + 1 for i, (x, y, k) in enumerate(pictureIjk)
                   if not (-0.5 <= x <= cols - 0.5 and -0.5 <= y <= rows - 0.5 and abs(k) <= 0.5)]
        if outside:
            raise InputError(f"picture landmark(s) {outside} lie outside the picture '{pictureNode.GetName()}'",
                             hint="place them on the picture itself")
        ctIjk = mrml_bridge.ijk_from_ras(ctNode, onCt)
        spacing = np.array(ctNode.GetSpacing(), dtype=float)
        inPlane = [a for a in range(3) if a != section.axis]
        offSlice = np.abs(ctIjk[:, section.axis] - section.index) * spacing[section.axis]
        off = [i + 1 for i, d in enumerate(offSlice) if d > 0.5 * spacing[section.axis]]
        if off:
            raise InputError(f"CT landmark(s) {off} are not on the largest cross-section (slice "
                             f"{section.index}): up to {offSlice.max():.1f} mm away",
                             hint="press 'Find largest cross-section' and place the CT points on that slice")
        report = {"pairs": len(onCt), "max_distance_from_slice_mm": float(offSlice.max(initial=0.0)),
                  "source": f"markups '{pictureMarkupsNode.GetName()}' (picture), '{ctMarkupsNode.GetName()}' (CT)"}
        return ctIjk[:, inPlane] * spacing[inPlane], pictureIjk[:, :2], report

    def importDoseMapPicture(self, picturePath, ctNode, gtvSegmentationNode, gtvSegment, settings,
                             landmarks=None, outputNode=None, axis: int = 2) -> tuple:
        """The dose of a dose-map picture placed on the CT's largest cross-section: ``(doseNode, report)``.

        The library decodes the picture (``settings``: a ``dosemap.DoseMapSettings``, see
        :meth:`doseMapSettings`), registers it to the CT slice (mutual information, or ``landmarks`` =
        ``(ct_mm, picture_px[, report])`` from :meth:`landmarksFromMarkups`), resamples the dose onto the
        slice and puts it on the CT grid (0 Gy on every other slice). The node is a dose volume like the
        aligned RTDOSE (colour wash, dose attributes): making the dose ROIs, extracting and predicting
        work on it unchanged. ``report``: picture, settings, decoding (colour-fit residual), registration
        (landmark residual or metric), placement on the CT, GTV coverage by the wash.
        """
        from DoseRadiomicsLib import dosemap, mrml_bridge
        ct = self._loaded(ctNode, "CT").image
        gtv = mrml_bridge.mask_from_segment(gtvSegmentationNode, gtvSegment, ctNode)
        placed = dosemap.place_dose_map(ct, gtv, picturePath, settings, landmarks=landmarks, axis=axis)
        section, coverage, doseOnCt = placed.section, placed.gtv_in_wash, placed.dose_on_ct
        report = dict(placed.record, cross_section=section.to_dict(), gtv_slice_in_wash_fraction=coverage)
        registration = report["registration"]
        outputNode = mrml_bridge.volume_node_from_image(doseOnCt, f"{Path(picturePath).stem} dose on CT",
                                                        node=outputNode)
        outputNode.SetAttribute("DoseRadiomics.AlignedDose", "1")
        outputNode.SetAttribute("DoseRadiomics.DoseUnit", "Gy")
        outputNode.SetAttribute(SLICERRT_DOSE_ATTRIBUTE, "1")
        outputNode.SetAttribute(self.ATTR_DOSE_MAP_PICTURE, str(picturePath))
        outputNode.SetAttribute(self.ATTR_INDEX, str(section.index))
        self.lastAlignmentReport = {"method": registration["method"], "gtv_dose_coverage": coverage,
                                    "dose_map": report}
        self.showDoseWash(ctNode, outputNode)
        return outputNode, report

    @staticmethod
    def describeDoseMapImport(report: dict) -> str:
        """One line for the panel: where the dose went, the registration residual, the colour fit."""
        reg = report["registration"]
        text = _("Dose from the picture on slice {k} ({method}).").format(
            k=report["cross_section"]["index"], method=reg["method"])
        if "residual_rms_mm" in reg:
            text += " " + _("Landmark residual {rms:.2f} mm RMS, max {mx:.2f} mm, {n} pairs.").format(
                rms=reg["residual_rms_mm"], mx=reg["residual_max_mm"], n=reg["pairs"])
        else:
            text += " " + _("Registration metric {m:.3f} (Mattes MI, lower is better).").format(m=reg["final_metric"])
        colour = report["decoding"].get("residual_levels")
        if colour:
            text += " " + _("Colour fit residual {rms:.1f}/255 RMS, wash opacity {a:.2f}.").format(
                rms=colour["rms"], a=report["decoding"]["opacity"])
        text += " " + _("GTV on the slice inside the wash: {p:.1f}%.").format(p=100 * report["gtv_slice_in_wash_fraction"])
        if reg.get("note"):  # e.g. three pairs fix an affine exactly: its residual means nothing
            text += " " + reg["note"] + "."
        return text

    def showPictureForLandmarks(self, pictureNode, pictureMarkupsNode=None, ctMarkupsNode=None,
                                pictureView: str = "Yellow", ctView: str = "Red") -> None:
        """Picture landmarks shown only in the picture's view, CT landmarks only in the CT's; in the
        application the picture view becomes axial and shows the picture."""
        for node, view in ((pictureMarkupsNode, pictureView), (ctMarkupsNode, ctView)):
            if node is None:
                continue
            if node.GetDisplayNode() is None:
                node.CreateDefaultDisplayNodes()
            node.GetDisplayNode().SetViewNodeIDs([f"vtkMRMLSliceNode{view}"])
        app = getattr(slicer, "app", None)
        if app is None or pictureNode is None:
            return
        sliceWidget = app.layoutManager().sliceWidget(pictureView)
        sliceWidget.mrmlSliceNode().SetOrientationToAxial()
        sliceWidget.sliceLogic().GetSliceCompositeNode().SetBackgroundVolumeID(pictureNode.GetID())
        sliceWidget.sliceLogic().GetSliceCompositeNode().SetForegroundVolumeID(None)
        sliceWidget.sliceLogic().FitSliceToAll()

    def makeDoseROIs(self, ctNode, alignedDoseNode, gtvSegmentationNode, gtvSegment, isodoseGy=(50.0,),
                     isodoseTouchingGtv=False, outputSegmentationNode=None, axis: int = 2):
        """Segments GTV, GTV-heat and <N>Gy-heat on the largest cross-section; the segmentation node.

        The segments are ordinary segments: edit them in the Segment Editor before extraction.
        """
        from DoseRadiomicsLib import mrml_bridge, rois
        section = self.findLargestCrossSection(gtvSegmentationNode, gtvSegment, ctNode, axis=axis)["section"]
        ct = mrml_bridge.image_from_volume_node(ctNode)
        dose = mrml_bridge.image_from_volume_node(alignedDoseNode)
        gtv = mrml_bridge.mask_from_segment(gtvSegmentationNode, gtvSegment, ctNode)
        sliceRois = rois.make_rois(ct, dose, gtv, section, isodose_gy=tuple(isodoseGy),
                                   isodose_touching_gtv=isodoseTouchingGtv)
        node = outputSegmentationNode
        if node is None:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                                      slicer.mrmlScene.GenerateUniqueName("DoseRadiomics ROIs"))
            node.CreateDefaultDisplayNodes()
        else:
            node.GetSegmentation().RemoveAllSegments()
        node.SetReferenceImageGeometryParameterFromVolumeNode(ctNode)
        for name, mask in sliceRois.masks.items():
            color = self.ROI_COLORS.get(name, self.ISODOSE_COLOR)
            mrml_bridge.add_segment_from_mask(node, mask, name, color=color)
        node.SetAttribute(self.ATTR_AXIS, str(section.axis))
        node.SetAttribute(self.ATTR_INDEX, str(section.index))
        node.SetAttribute(self.ATTR_ISODOSE, " ".join(f"{t:g}" for t in sliceRois.isodose_gy))
        node.SetAttribute(self.ATTR_TOUCHING, "1" if isodoseTouchingGtv else "0")
        return node

    def sliceROIs(self, ctNode, alignedDoseNode, roiSegmentationNode):
        """The library's SliceROIs from the (possibly edited) ROI segments on their recorded slice."""
        from collections import OrderedDict
        import SimpleITK as sitk
        from DoseRadiomicsLib import crosssection, mrml_bridge, rois
        from DoseRadiomicsLib.errors import ROIError
        if roiSegmentationNode is None or roiSegmentationNode.GetAttribute(self.ATTR_INDEX) is None:
            raise ROIError("no dose ROIs: the segmentation was not made by 'Make dose ROIs'",
                           hint="press 'Make dose ROIs' first")
        axis = int(roiSegmentationNode.GetAttribute(self.ATTR_AXIS))
        index = int(roiSegmentationNode.GetAttribute(self.ATTR_INDEX))
        isodose = self.parseIsodose(roiSegmentationNode.GetAttribute(self.ATTR_ISODOSE))
        ct = mrml_bridge.image_from_volume_node(ctNode)
        dose = mrml_bridge.image_from_volume_node(alignedDoseNode)
        gtv = mrml_bridge.mask_from_segment(roiSegmentationNode, rois.GTV, ctNode)
        areas = crosssection.slice_areas_mm2(gtv, axis)
        section = crosssection.CrossSection(axis=axis, index=index,
                                            position_mm=crosssection.slice_position_mm(ct, axis, index),
                                            area_mm2=float(areas[index]), tied_indices=(index,))
        base = rois.make_rois(ct, dose, gtv, section, isodose_gy=isodose,
                              isodose_touching_gtv=roiSegmentationNode.GetAttribute(self.ATTR_TOUCHING) == "1")
        # The segments as the user left them (edits included), restricted to the recorded slice.
        masks = OrderedDict()
        for name in base.masks:
            one = crosssection.extract_slice(mrml_bridge.mask_from_segment(roiSegmentationNode, name, ctNode),
                                             section)
            one = sitk.Cast(one, sitk.sitkUInt8)
            one.CopyInformation(base.ct)
            if not sitk.GetArrayViewFromImage(one).any():
                raise ROIError(f"ROI {name} is empty on slice {index}",
                               hint="paint it on the cross-section slice, or make the dose ROIs again")
            masks[name] = one
        return rois.SliceROIs(section=section, ct=base.ct, dose=base.dose, masks=masks, isodose_gy=isodose)

    def roiAreas(self, roiSegmentationNode, ctNode) -> dict:
        """Area (mm²) of each ROI segment on the cross-section slice, measured as the library does."""
        from DoseRadiomicsLib import crosssection, mrml_bridge
        axis = int(roiSegmentationNode.GetAttribute(self.ATTR_AXIS) or 2)
        index = roiSegmentationNode.GetAttribute(self.ATTR_INDEX)
        out = {}
        segmentation = roiSegmentationNode.GetSegmentation()
        for i in range(segmentation.GetNumberOfSegments()):
            name = segmentation.GetNthSegment(i).GetName()
            mask = mrml_bridge.mask_from_segment(roiSegmentationNode, name, ctNode)
            areas = crosssection.slice_areas_mm2(mask, axis)
            out[name] = float(areas[int(index)]) if index is not None else float(areas.max())
        return out

    @staticmethod
    def extractionOptions(isodoseGy=(50.0,), isodoseTouchingGtv=False, config="paper", **kwargs):
        from DoseRadiomicsLib.pipeline import ExtractionOptions
        return ExtractionOptions(isodose_gy=tuple(isodoseGy), isodose_touching_gtv=bool(isodoseTouchingGtv),
                                 config=config, **kwargs)

    def extractFeatures(self, ctNode, alignedDoseNode, roiSegmentationNode, options=None, tableNode=None,
                        progress=None):
        """pyradiomics features of the ROI segments: ``(tableNode, features)``.

        ``features`` is the library's ordered dict ``<ROI>__<feature>`` -> value; the table has one row
        per feature (columns ROI, feature, value, value (exact)) and the settings hash as attribute.
        ``progress(message)`` is called before each ROI; raising from it cancels.
        """
        from DoseRadiomicsLib import mrml_bridge, pipeline
        if self.pyradiomicsProblem():
            from DoseRadiomicsLib.errors import ExtractionError
            raise ExtractionError(self.pyradiomicsProblem())
        sliceRois = self.sliceROIs(ctNode, alignedDoseNode, roiSegmentationNode)
        if options is None:
            options = self.extractionOptions(isodoseGy=sliceRois.isodose_gy,
                                             isodoseTouchingGtv=roiSegmentationNode.GetAttribute(self.ATTR_TOUCHING) == "1")
        features = pipeline.extract_rois(sliceRois, options, progress=progress)
        # Slicer's table storage writes numbers with 6 significant digits (vtkDelimitedTextWriter's
        # default), so a saved scene would round the features; the exact text column keeps every bit.
        rows = {"ROI": [], "feature": [], "value": [], self.EXACT_VALUE_COLUMN: []}
        for key, value in features.items():
            roi, name = key.split(pipeline.ROI_SEPARATOR, 1)
            rows["ROI"].append(roi)
            rows["feature"].append(name)
            rows["value"].append(float(value))
            rows[self.EXACT_VALUE_COLUMN].append(repr(float(value)))
        tableNode = mrml_bridge.table_node_from_columns(rows, "DoseRadiomics features", node=tableNode)
        settingsHash = pipeline.options_settings_hash(options)
        tableNode.SetAttribute(self.ATTR_SETTINGS_HASH, settingsHash)
        tableNode.SetAttribute(self.ATTR_INDEX, str(sliceRois.section.index))
        tableNode.SetAttribute("DoseRadiomics.Config", options.config)
        self._setTableStorage(tableNode)
        return tableNode, features

    @staticmethod
    def _setTableStorage(tableNode) -> None:
        # Tables saved with the scene keep their column types through the schema file.
        if tableNode.GetStorageNode() is None:
            tableNode.AddDefaultStorageNode()

    def featuresFromTable(self, tableNode) -> dict:
        """The feature dict back from a features table (``<ROI>__<feature>`` -> value)."""
        from collections import OrderedDict
        from DoseRadiomicsLib import mrml_bridge, pipeline
        if tableNode is None:
            from DoseRadiomicsLib.errors import InputError
            raise InputError("no feature table", hint="extract the features first")
        cols = mrml_bridge.columns_from_table_node(tableNode)
        values = cols.get(self.EXACT_VALUE_COLUMN, cols["value"])
        return OrderedDict((f"{r}{pipeline.ROI_SEPARATOR}{f}", float(v))
                           for r, f, v in zip(cols["ROI"], cols["feature"], values))

    @staticmethod
    def parseClinical(text: str) -> dict:
        """'hb=118 t_stage=T3' -> {'hb': '118', 't_stage': 'T3'} (the library parses the values)."""
        from DoseRadiomicsLib.prediction import parse_clinical
        return parse_clinical(shlex.split(text or ""))

    @staticmethod
    def demoModelPath() -> Path:
        return resourcesRoot() / "DemoModel" / "model.json"

    def predict(self, features, modelPath, clinical=None, settingsHash=None) -> dict:
        """Each model's probability, risk group and cut-off; tables and charts from the model file.

        Returns ``dict(result=<library prediction dict>, tableNode=..., summaryTableNode=...,
        chartNodes={"ROC": ..., "Decision curve": ..., "Kaplan-Meier PFS": ..., ...})``.
        The model is refused (ModelFileError) unless this Slicer's pyradiomics and libraries compute
        the model's reference features as at training (the library's compatibility fingerprint,
        checked once per session and model).
        """
        from DoseRadiomicsLib import modelfile, mrml_bridge, prediction
        model = modelfile.load_model(modelPath)
        prediction.check_settings_hash(model, settingsHash, model_path=modelPath)
        prediction.check_compatibility(model, model_path=modelPath)
        result = prediction.predict_from_features(model, features, clinical)
        names = list(result["probabilities"])
        table = mrml_bridge.table_node_from_columns(
            {"model": names, "probability": [result["probabilities"][n] for n in names]},
            "DoseRadiomics prediction")
        summary = {"risk group": result["risk_group"] or "not computed",
                   "combined probability": "" if result["combined_probability"] is None
                   else f"{result['combined_probability']:.4f}",
                   "cut-off": f"{result['cutoff']:.4f}",
                   "missing inputs": ", ".join(result["missing"]),
                   "warnings": " | ".join(result["warnings"])}
        summaryTable = mrml_bridge.table_node_from_dict(summary, "DoseRadiomics prediction summary",
                                                        key_column="item", value_column="value")
        for node in (table, summaryTable):
            node.SetAttribute("DoseRadiomics.ModelFile", str(modelPath))
            self._setTableStorage(node)
        charts = self._modelCharts(model, result)
        return {"result": result, "tableNode": table, "summaryTableNode": summaryTable, "chartNodes": charts}

    @staticmethod
    def _evaluationCohort(model: dict):
        evaluation = model.get("evaluation") or {}
        for cohort in ("validation", "test", "train", "all"):
            if cohort in evaluation:
                return cohort, evaluation[cohort]
        return (next(iter(evaluation.items())) if evaluation else (None, {}))

    def _modelCharts(self, model: dict, result: dict) -> dict:
        """ROC, decision curve and Kaplan-Meier charts from the model file, this patient marked."""
        import numpy as np
        from DoseRadiomicsLib import mrml_bridge
        charts = {}
        cohort, evaluation = self._evaluationCohort(model)
        p = result.get("combined_probability")
        riskModel = model["risk"].get("model", "combined")
        order = list(model.get("model_order") or []) + [n for n in evaluation if n not in (model.get("model_order") or [])]
        roc = {name: (evaluation[name]["roc"]["fpr"], evaluation[name]["roc"]["tpr"]) for name in order
               if isinstance(evaluation.get(name), dict) and "roc" in evaluation[name]}
        if roc:
            markers = {}
            cls = (evaluation.get(riskModel) or {}).get("classification") or {}
            if "sensitivity" in cls and "specificity" in cls:
                markers["risk cut-off"] = ([1.0 - cls["specificity"]], [cls["sensitivity"]])
            charts["ROC"] = mrml_bridge.plot_chart_from_curves(
                roc, f"ROC ({cohort} cohort)", x_label="1 - specificity", y_label="sensitivity",
                markers=markers)[0]
        dc = (evaluation.get(riskModel) or {}).get("decision_curve")
        if dc:
            curves = {riskModel: (dc["thresholds"], dc["model"]), "treat all": (dc["thresholds"], dc["treat_all"]),
                      "treat none": (dc["thresholds"], dc["treat_none"])}
            markers = {}
            if p is not None:
                markers["this patient"] = ([p], [float(np.interp(p, dc["thresholds"], dc["model"]))])
            charts["Decision curve"] = mrml_bridge.plot_chart_from_curves(
                curves, f"Decision curve ({cohort} cohort)", x_label="threshold probability",
                y_label="net benefit", markers=markers)[0]
        group = result.get("risk_group")
        for endpoint, byCohort in ((model.get("survival") or {}).get("endpoints") or {}).items():
            km_cohort, km = self._pickCohort(byCohort)
            if not km:
                continue
            curves = {}
            for label, g in (km.get("groups") or {}).items():
                if g and g.get("km"):
                    t = [0.0] + list(g["km"]["time"])
                    s = [1.0] + list(g["km"]["survival"])
                    curves[f"{label} risk (n={g['n']})"] = mrml_bridge.step_curve(t, s)
            if curves:
                title = f"Kaplan-Meier {endpoint.upper()} ({km_cohort} cohort)"
                if group:
                    title += f": this patient is {group} risk"
                charts[f"Kaplan-Meier {endpoint.upper()}"] = mrml_bridge.plot_chart_from_curves(
                    curves, title, x_label="months", y_label="survival")[0]
        return charts

    @staticmethod
    def _pickCohort(byCohort):
        if not isinstance(byCohort, dict):
            return None, None
        if "groups" in byCohort:
            return "all", byCohort
        for cohort in ("validation", "test", "all", "train"):
            if isinstance(byCohort.get(cohort), dict):
                return cohort, byCohort[cohort]
        return None, None

    @staticmethod
    def showTable(tableNode) -> None:
        """Show a table in the layout's table view (no-op headless)."""
        app = getattr(slicer, "app", None)
        if app is None or tableNode is None:
            return
        app.applicationLogic().GetSelectionNode().SetActiveTableID(tableNode.GetID())
        app.applicationLogic().PropagateTableSelection()

    @staticmethod
    def showChart(chartNode) -> None:
        app = getattr(slicer, "app", None)
        if app is None or chartNode is None:
            return
        slicer.modules.plots.logic().ShowChartInLayout(chartNode)

    # ---------------------------------------------------------------------------------------
    # Cohort jobs (run by the Widget in a background process)

    @staticmethod
    def pythonExecutable() -> str:
        """Slicer's PythonSlicer (its sys.executable) inside Slicer; this Python elsewhere."""
        found = shutil.which("PythonSlicer")
        return found or sys.executable

    @staticmethod
    def processEnvironment() -> dict:
        """PYTHONPATH so that the child process imports this extension's DoseRadiomicsLib."""
        libParent = str(Path(_library().__file__).resolve().parent.parent)
        current = os.environ.get("PYTHONPATH", "")
        return {"PYTHONPATH": libParent + (os.pathsep + current if current else "")}

    @staticmethod
    def cohortPaths(outDir) -> dict:
        out = Path(outDir)
        return {"extraction": out / "extraction", "features": out / "extraction" / "features.csv",
                "model": out / "model.json", "report": out / "report.html"}

    def _command(self, *args) -> list:
        return [self.pythonExecutable(), "-m", "DoseRadiomicsLib.cli", *[str(a) for a in args]]

    def cohortExtractCommand(self, manifest, outDir, options=None) -> list:
        options = options or self.extractionOptions()
        paths = self.cohortPaths(outDir)
        cmd = self._command("cohort-extract", "--manifest", manifest, "--out", paths["extraction"],
                            "--config", options.config, "--isodose", *[f"{t:g}" for t in options.isodose_gy])
        if options.isodose_touching_gtv:
            cmd.append("--isodose-touching-gtv")
        return cmd

    def trainCommand(self, manifest, outDir, seed: int = 0) -> list:
        paths = self.cohortPaths(outDir)
        return self._command("train", "--features", paths["features"], "--manifest", manifest,
                             "--out", paths["model"], "--seed", seed)

    def reportCommand(self, outDir) -> list:
        paths = self.cohortPaths(outDir)
        return self._command("report", "--model", paths["model"], "--out", paths["report"])

    def cohortCommands(self, manifest, outDir, options=None) -> list:
        """The three commands of a cohort job, in order: extract, train, report."""
        from DoseRadiomicsLib.errors import InputError
        if not manifest or not Path(manifest).is_file():
            raise InputError("manifest not found", path=manifest, hint="pick the cohort manifest (CSV)")
        if not outDir or str(outDir) in ("", "."):
            raise InputError("no output folder", hint="pick a folder for the cohort results")
        return [self.cohortExtractCommand(manifest, outDir, options), self.trainCommand(manifest, outDir),
                self.reportCommand(outDir)]

    @staticmethod
    def progressFromLine(line: str):
        """Fraction done from the library's progress line ('cohort-extract [#####...] 12/220 ...'), else None."""
        import re
        m = re.search(r"\]\s*(\d+)\s*/\s*(\d+)\b", line)
        if m and int(m.group(2)) > 0:
            return min(1.0, int(m.group(1)) / int(m.group(2)))
        return None


#
# DoseRadiomicsTest
#


class DoseRadiomicsTest(ScriptedLoadableModuleTest):  # noqa: F405
    """Self-test: the whole Logic on MRML, numbers checked against numpy and the library.

    Runs in Slicer (Reload and Test, ctest) and headless under pytest with slicer-core.
    """

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_DoseRadiomicsWorkflow()

    def test_DoseRadiomicsWorkflow(self):
        import numpy as np
        import SimpleITK as sitk
        from DoseRadiomicsLib import crosssection, mrml_bridge, pipeline, rois

        logic = DoseRadiomicsLogic()
        self.delayDisplay("Loading the sample case (OpenKBP pt_10: CT, dose in Gy, PTV70 as GTV)")
        case = logic.loadSampleCase()
        ctNode, doseNode = case["ct"], case["dose"]
        self.assertEqual(logic.guessCtAndDose(), (ctNode, doseNode))

        self.delayDisplay("Aligning the dose to the CT")
        aligned = logic.alignDose(ctNode, doseNode, case["gtvSegmentation"], case["gtvSegmentId"])
        ctArray = slicer.util.arrayFromVolume(ctNode)
        doseOnCt = slicer.util.arrayFromVolume(aligned)
        self.assertEqual(doseOnCt.shape, ctArray.shape)
        # pt_10's dose is already on the CT grid: alignment must not change a voxel.
        np.testing.assert_allclose(doseOnCt, slicer.util.arrayFromVolume(doseNode), atol=1e-4)

        self.delayDisplay("Largest cross-section")
        gtvArray = sitk.GetArrayFromImage(sitk.ReadImage(str(logic.sampleCasePaths()["gtv"]))) != 0
        spacing = ctNode.GetSpacing()
        areas = gtvArray.sum(axis=(1, 2)) * spacing[0] * spacing[1]
        section = logic.findLargestCrossSection(case["gtvSegmentation"], case["gtvSegmentId"], ctNode)
        self.assertEqual(section["index"], int(np.argmax(areas)))
        self.assertAlmostEqual(section["area_mm2"], float(areas.max()), places=3)

        self.delayDisplay("Dose ROIs as segments")
        roiNode = logic.makeDoseROIs(ctNode, aligned, case["gtvSegmentation"], case["gtvSegmentId"],
                                     isodoseGy=(50.0,))
        names = [roiNode.GetSegmentation().GetNthSegment(i).GetName()
                 for i in range(roiNode.GetSegmentation().GetNumberOfSegments())]
        self.assertEqual(names, ["GTV", "GTV-heat", "50Gy-heat"])
        k = section["index"]
        expected = {"GTV": gtvArray[k].sum(), "GTV-heat": gtvArray[k].sum(),
                    "50Gy-heat": (doseOnCt[k] >= 50.0).sum()}
        measured = logic.roiAreas(roiNode, ctNode)
        for name, count in expected.items():
            self.assertAlmostEqual(measured[name], count * spacing[0] * spacing[1], places=3, msg=name)

        self.delayDisplay("Feature extraction")
        table, features = logic.extractFeatures(ctNode, aligned, roiNode)
        self.assertEqual(table.GetNumberOfRows(), len(features))
        # The library on the same arrays, without MRML in between.
        ct = mrml_bridge.image_from_volume_node(ctNode)
        dose = mrml_bridge.image_from_volume_node(aligned)
        gtv = sitk.GetImageFromArray(gtvArray.astype(np.uint8))
        gtv.CopyInformation(ct)
        libSection = crosssection.largest_cross_section(gtv)
        libRois = rois.make_rois(ct, dose, gtv, libSection, isodose_gy=(50.0,))
        reference = pipeline.extract_rois(libRois, logic.extractionOptions())
        self.assertEqual(list(features), list(reference))
        self.assertAlmostEqual(features["GTV__original_firstorder_Mean"],
                               float(ctArray[k][gtvArray[k]].mean()), places=6)
        np.testing.assert_allclose(np.array(list(features.values()), dtype=float),
                                   np.array(list(reference.values()), dtype=float), rtol=1e-9, atol=1e-9,
                                   equal_nan=True)
        self.assertEqual(logic.featuresFromTable(table), dict(features))

        self.delayDisplay("Prediction with the bundled demo model")
        from DoseRadiomicsLib import modelfile, prediction
        modelPath = logic.demoModelPath()
        self.assertTrue(modelPath.is_file(), f"the bundled demo model is missing: {modelPath}")
        model = modelfile.load_model(modelPath)
        settingsHash = table.GetAttribute(logic.ATTR_SETTINGS_HASH)
        self.assertEqual(settingsHash, model["extraction"]["settings_hash"])
        # pt_10 (OpenKBP) comes without clinical data; the clinical and combined models need some.
        clinical = logic.parseClinical(ILLUSTRATIVE_CLINICAL_VALUES)
        out = logic.predict(features, str(modelPath), clinical=clinical, settingsHash=settingsHash)
        expectedResult = prediction.predict_from_features(model, dict(reference), clinical)
        self.assertEqual(list(out["result"]["probabilities"]), list(model["model_order"]))  # all six
        self.assertEqual(out["result"]["missing"], [])
        for name, p in expectedResult["probabilities"].items():
            self.assertAlmostEqual(out["result"]["probabilities"][name], p, places=12, msg=name)
        cols = mrml_bridge.columns_from_table_node(out["tableNode"])
        self.assertEqual(cols["model"], list(expectedResult["probabilities"]))
        np.testing.assert_allclose(cols["probability"], list(expectedResult["probabilities"].values()))
        combined, cutoff = out["result"]["combined_probability"], model["risk"]["cutoff"]
        self.assertEqual(out["result"]["cutoff"], cutoff)
        self.assertEqual(out["result"]["risk_group"], "high" if combined >= cutoff else "low")
        summary = mrml_bridge.dict_from_table_node(out["summaryTableNode"], "item", "value")
        self.assertEqual(summary["risk group"], out["result"]["risk_group"])
        self.assertIn("ROC", out["chartNodes"])
        self.delayDisplay("Test passed")
