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
    "skimage": "scikit-image",  # pyradiomics' LBP2D filter, used by the "2d" configuration
}
# Installed distribution versions when this module first looked (before any install from its panel):
# the versions of what is loaded in this process. See DoseRadiomicsLogic.restartNeeded.
_VERSIONS_AT_START = None
# What SlicerRT's DICOM-RT importer records (SlicerRtCommon/vtkSlicerRtCommon.cxx; set in
# DicomRtImportExport/Logic/vtkSlicerDicomRtImportExportModuleLogic.cxx): "1" on each dose volume node;
# the RTDOSE's DoseUnits (GY, CGY) on the subject-hierarchy study item; on the RTSTRUCT
# segmentation's item, the series UID of the images its contours were drawn on.
SLICERRT_DOSE_ATTRIBUTE = "DicomRtImport.DoseVolume"
SLICERRT_DOSE_UNIT_NAME_ATTRIBUTE = "DicomRtImport.DoseUnitName"
SLICERRT_ROI_REFERENCED_SERIES_ATTRIBUTE = "DicomRtImport.RoiReferencedSeriesUid"
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
Steps: load CT, dose and GTV (the sample case; the DICOM module; or "Find in folder..." / "From DICOM
study", which find them in a planning-system export or a DICOM study as the command line's --patient-dir
does), align the dose to the CT, draw or correct the GTV, find the largest cross-section, make the dose
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

    # Category titles exist from Slicer 5.12 on; before, the section is titled by the category name
    # (here the same text), so older releases only skip this step.
    if hasattr(SampleData.SampleDataLogic, "registerCustomSampleDataCategory"):
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
    gtvName - the GTV name rule (as --gtv-name: names, aliases a|b, glob:, re:) used to find the GTV in a
    patient folder or DICOM study; patientFolder - the last folder searched;
    alignedDose - the dose resampled on the CT grid; roiSegmentation - GTV, GTV-heat and isodose segments
    on the largest cross-section; featureTable - the extracted features;
    isodoseGy - isodose thresholds in Gy, e.g. "50" or "45 50"; config - "paper" (1,595 features per
    ROI) or "2d"; section - "largest" (the paper's slice), "largest:K" (K slices either side) or "volume"; modelPath, clinicalValues - the model file and clinical inputs for prediction;
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
    gtvName: str = ""
    patientFolder: Path
    alignedDose: vtkMRMLScalarVolumeNode
    roiSegmentation: vtkMRMLSegmentationNode
    featureTable: vtkMRMLTableNode
    register: bool = False
    doseOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    isodoseGy: str = "50"
    isodoseTouchingGtv: bool = False
    config: Annotated[str, Choice(["paper", "2d"])] = "paper"
    section: Annotated[str, Choice(["largest", "largest:1", "largest:2", "largest:3", "volume"])] = "largest"
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
    """The panel: wires widgets to the Logic, nothing else.

    Written after Slicer's own scripted modules (the module template, SegmentEditor.py,
    SegmentStatistics.py). Slicer APIs whose behaviour differs between releases are feature-checked
    (hasattr / return values), never compared by version number; the tags named in the comments are
    the releases whose source was read (v5.8.0 and v5.12.3/main).
    """

    # Our own singleton, not Slicer's "SegmentEditor" one, so that this panel's editor state (effect,
    # source volume, masking) does not change the Segment Editor module's and vice versa.
    SEGMENT_EDITOR_SINGLETON_TAG = "DoseRadiomicsSegmentEditor"
    # Where a scalar CT or dose is wanted: the RGB dose-map picture (vtkMRMLVectorVolumeNode) and
    # labelmaps are both vtkMRMLScalarVolumeNode subclasses and must never be offered or guessed.
    NON_SCALAR_VOLUME_TYPES = ("vtkMRMLVectorVolumeNode", "vtkMRMLLabelMapVolumeNode")

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)  # noqa: F405
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._leftGuiObserverTags = []  # observers Slicer <= 5.10's connectParametersToGui leaves behind
        self._updatingGui = False
        self._cancelRequested = False
        self._process = None
        self._processCancelled = False
        self._queuedCommands = []
        self._features = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)  # noqa: F405
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DoseRadiomics.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DoseRadiomicsLogic()

        # The parameter-node connector overwrites nodeTypes with the parameter's type on every connect
        # (guiConnectors.py qMRMLNodeComboBoxToNodeConnector, v5.8.0 and v5.12.3 alike) but leaves
        # hideChildNodeTypes (and the .ui's showChildNodeTypes=false) alone: the picture and labelmaps
        # stay out whatever the .ui says. noneEnabled: without it a node combo box selects the first
        # volume added, so the dose selector took the CT whenever both were loaded together.
        for selector in (self.ui.ctSelector, self.ui.doseSelector, self.ui.alignedDoseSelector):
            selector.hideChildNodeTypes = list(self.NON_SCALAR_VOLUME_TYPES)
            selector.noneEnabled = True

        self.selectSegmentEditorNode()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)

        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.loadSampleButton.connect("clicked(bool)", self.onLoadSample)
        self.ui.findInFolderButton.connect("clicked(bool)", self.onFindInFolder)
        self.ui.fromDicomStudyButton.connect("clicked(bool)", self.onFromDicomStudy)
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
        """Called before the module is unloaded (Reload): leave no observer, connection or process behind."""
        self.setParameterNode(None)
        self.removeObservers()
        self._exitSegmentEditor()
        if self._process is not None:
            self._queuedCommands = []
            self._processCancelled = True
            self._process.kill()

    def enter(self) -> None:
        self.selectSegmentEditorNode()
        editor = self.ui.segmentEditorWidget
        editor.updateWidgetFromMRML()
        if hasattr(editor, "installKeyboardShortcuts"):
            editor.installKeyboardShortcuts()
        self.initializeParameterNode()

    def exit(self) -> None:
        self._exitSegmentEditor()
        # Not reacting to the parameter node while hidden; enter() reconnects and refreshes.
        self._disconnectParameterGui()
        self.removeParameterNodeObserver()

    def _exitSegmentEditor(self) -> None:
        # As Slicer's SegmentEditor.py exit(): an effect left active keeps intercepting clicks in the views.
        editor = self.ui.segmentEditorWidget
        editor.setActiveEffect(None)
        if hasattr(editor, "uninstallKeyboardShortcuts"):
            editor.uninstallKeyboardShortcuts()
        editor.removeViewObservations()

    # Scene events (Close Scene, loading a scene: StartClose/EndClose; adding a scene: EndImport)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        editor = self.ui.segmentEditorWidget
        editor.setSegmentationNode(None)
        editor.removeViewObservations()

    def onSceneEndClose(self, caller, event) -> None:
        # The close reset the editor node (a non-singleton one it would have removed); when hidden,
        # enter() selects it again, as SegmentEditor.py does.
        if self.parent.isEntered:
            self.selectSegmentEditorNode()
            self.ui.segmentEditorWidget.updateWidgetFromMRML()
            self.initializeParameterNode()

    def onSceneEndImport(self, caller, event) -> None:
        # A loaded .mrml may bring its own DoseRadiomics parameter node and editor node, and its
        # parameter values arrived before the nodes they reference: reconnect so that every widget
        # shows what the scene holds.
        if self.parent.isEntered:
            self.selectSegmentEditorNode()
            self.ui.segmentEditorWidget.updateWidgetFromMRML()
            self.setParameterNode(None)
            self.initializeParameterNode()

    def selectSegmentEditorNode(self):
        """The singleton segment editor node (created if absent), set on the embedded editor."""
        scene = slicer.mrmlScene
        tag = self.SEGMENT_EDITOR_SINGLETON_TAG
        node = scene.GetSingletonNode(tag, "vtkMRMLSegmentEditorNode")
        if node is None:
            node = scene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            node.UnRegister(None)  # CreateNodeByClass hands over a reference (as SegmentEditor.py does)
            node.SetSingletonTag(tag)
            node = scene.AddNode(node)
        editor = self.ui.segmentEditorWidget
        if editor.mrmlSegmentEditorNode() is not node:
            editor.setMRMLSegmentEditorNode(node)
        return node

    # Parameter node

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        p = self._parameterNode
        if not p.ctVolume or not p.doseVolume or not p.gtvSegmentation:
            # The Logic's guess: one frame of reference (a DICOM-loaded study as SlicerRT puts it in the
            # subject hierarchy, or the loaded files), the GTV segment by the command line's name rule.
            guess = self.logic.guessInputs()
            ct, dose = guess["ct"], guess["dose"]
            # The panel still never puts a picture, a labelmap or the CT itself into a slot that needs
            # a scalar CT or dose.
            ct = ct if self.isScalarVolume(ct) else None
            dose = dose if self.isScalarVolume(dose) else None
            if not p.ctVolume and ct and ct is not p.doseVolume:
                p.ctVolume = ct
            if not p.doseVolume and dose and dose is not p.ctVolume:
                p.doseVolume = dose
            if not p.gtvSegmentation and guess["segmentation"] is not None:
                p.gtvSegmentation = guess["segmentation"]
                p.gtvSegmentId = guess["segmentId"] or ""
            if guess["notes"]:
                self._status("\n".join(guess["notes"]))
        self.updateGuiFromParameterNode()

    @classmethod
    def isScalarVolume(cls, node) -> bool:
        return (node is not None and node.IsA("vtkMRMLScalarVolumeNode")
                and not any(node.IsA(t) for t in cls.NON_SCALAR_VOLUME_TYPES))

    def setParameterNode(self, inputParameterNode) -> None:
        """Connect the panel to a parameter node (or to none during a scene close)."""
        if (inputParameterNode is not None and self._parameterNode is not None
                and inputParameterNode.parameterNode is self._parameterNode.parameterNode
                and self._parameterNodeGuiTag is not None):
            return  # already connected to this node (enter after setup, EndImport after EndClose)
        self._disconnectParameterGui()
        self.removeParameterNodeObserver()
        self._parameterNode = inputParameterNode
        if self._parameterNode is None:
            return
        self._parameterNodeGuiTag = self._connectParameterGui()
        self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)

    def _connectParameterGui(self):
        """Connect every widget with a SlicerParameterName; returns the tag that disconnects them.

        connectGui returns the tag only from Slicer 5.10 on: at v5.8.0 wrapper.py's _connectGui drops the
        return value of _connectParametersToGui, so disconnectGui(None) did nothing, the old connectors
        stayed, and when the next connectGui refilled the combo boxes they wrote each Choice parameter's
        first item. connectParametersToGui returns the tag at v5.8.0, v5.12.3 and main, so the mapping is
        built here, as connectGui builds it from a ``ui`` object (gui.__dict__, SlicerParameterName).
        """
        p = self._parameterNode
        if hasattr(p, "connectParametersToGui"):
            mapping = {}
            for widget in vars(self.ui).values():
                name = widget.property("SlicerParameterName") if hasattr(widget, "property") else None
                if name:
                    mapping[name] = widget
            return self._connectRecordingGuiObserver(p, mapping)
        return p.connectGui(self.ui)

    def _connectRecordingGuiObserver(self, p, mapping):
        """connectParametersToGui, keeping the tag of the ModifiedEvent observer it adds.

        Up to Slicer 5.10 (wrapper.py v5.8.0, v5.10.0) that observer, a lambda holding the wrapper, is never
        recorded, so disconnectGui leaves it on the node. VTK lets Python's garbage collector see through
        observers, so once no panel holds the wrapper the collector may clear the lambda while the node still
        calls it: headless (slicer-core, VTK 9.6.2) the next parameter change crashed the process. From 5.12
        the wrapper keeps the tag (_guiVtkObserverTags) and removes the observer itself.
        """
        if hasattr(p, "_guiVtkObserverTags"):
            return p.connectParametersToGui(mapping)
        added = []
        addObserver = p.AddObserver

        def recordingAddObserver(event, callback, *args):
            tag = addObserver(event, callback, *args)
            added.append(tag)
            return tag

        p.AddObserver = recordingAddObserver  # the instance attribute shadows the class's method
        try:
            tag = p.connectParametersToGui(mapping)
        finally:
            del p.AddObserver
        self._leftGuiObserverTags = added
        return tag

    def _disconnectParameterGui(self) -> None:
        if self._parameterNode is not None and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            for tag in self._leftGuiObserverTags:
                self._parameterNode.RemoveObserver(tag)
        self._leftGuiObserverTags = []
        self._parameterNodeGuiTag = None

    def removeParameterNodeObserver(self) -> None:
        if self._parameterNode is not None and self.hasObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified):
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        self.updateGuiFromParameterNode()

    def updateGuiFromParameterNode(self) -> None:
        """What the wrapper's connectors do not cover: the GTV selector and the embedded editor."""
        p = self._parameterNode
        if p is None or self._updatingGui:
            return
        self._updatingGui = True
        try:
            selector = self.ui.gtvSegmentSelector
            if selector.currentNode() is not p.gtvSegmentation:
                selector.setCurrentNode(p.gtvSegmentation)
            if p.gtvSegmentation is not None and p.gtvSegmentId and selector.currentSegmentID() != p.gtvSegmentId:
                selector.setCurrentSegmentID(p.gtvSegmentId)
            editor = self.ui.segmentEditorWidget
            if editor.segmentationNode() is not p.gtvSegmentation:
                editor.setSegmentationNode(p.gtvSegmentation)
            # The editor paints on the CT: the source volume follows the CT selector.
            if self._editorSourceVolume() is not p.ctVolume:
                self._setEditorSourceVolume(p.ctVolume)
        finally:
            self._updatingGui = False
        if p.gtvSegmentation is not None and not p.gtvSegmentId and selector.currentSegmentID():
            # A segmentation chosen without a segment: the selector shows its first one; so does the node.
            p.gtvSegmentId = selector.currentSegmentID()

    def _editorSourceVolume(self):
        editor = self.ui.segmentEditorWidget
        # sourceVolumeNode() at v5.8.0 and v5.12.3; masterVolumeNode() is its deprecated alias (older name).
        getter = editor.sourceVolumeNode if hasattr(editor, "sourceVolumeNode") else editor.masterVolumeNode
        return getter()

    def _setEditorSourceVolume(self, node) -> None:
        editor = self.ui.segmentEditorWidget
        # setSourceVolumeNode at v5.8.0 and v5.12.3; setMasterVolumeNode is the deprecated alias
        # (qMRMLSegmentEditorWidget.h prints a warning) and the only name in older releases.
        setter = editor.setSourceVolumeNode if hasattr(editor, "setSourceVolumeNode") else editor.setMasterVolumeNode
        setter(node)

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
        changed = self.logic.restartNeeded(missing)
        if changed:
            slicer.util.infoDisplay(_("The packages are installed. Restart Slicer before using DoseRadiomics: "
                                      "these were upgraded while an older version is loaded:\n\n{changed}"
                                      ).format(changed="\n".join(changed)))
        self.updateDependencyStatus()

    # Single patient

    def onLoadSample(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Loading the sample case failed."), waitCursor=True):
            case = self.logic.loadSampleCase()
            p = self._parameterNode
            with slicer.util.NodeModify(p.parameterNode):
                p.ctVolume = case["ct"]
                p.doseVolume = case["dose"]
                p.gtvSegmentation = case["gtvSegmentation"]
                p.gtvSegmentId = case["gtvSegmentId"]
            self.updateGuiFromParameterNode()
            self._status(_("Sample case loaded: CT, dose (Gy) and GTV."))

    # A patient's files from a folder or a DICOM study (the library's discovery, in the Logic)

    def onFindInFolder(self) -> None:
        p = self._parameterNode
        start = "" if p.patientFolder is None or str(p.patientFolder) in ("", ".") else str(p.patientFolder)
        # QFileDialog::getExistingDirectory returns "" when the user cancels.
        folder = qt.QFileDialog.getExistingDirectory(
            slicer.util.mainWindow(), _("Patient folder (a planning-system export)"), start)
        if not folder:
            return
        p.patientFolder = Path(folder)
        self._discover(lambda: self.logic.discoverPatientFolder(folder, gtvName=p.gtvName or None))

    def onFromDicomStudy(self) -> None:
        p = self._parameterNode
        self._discover(lambda: self.logic.discoverStudy(self.logic.studyForPanel(p.ctVolume),
                                                        gtvName=p.gtvName or None))

    def _discover(self, run) -> None:
        """Run a discovery; a bad folder or study is the library's one-line message (label, status and
        a message box), not a traceback."""
        from DoseRadiomicsLib.errors import DoseRadiomicsError
        try:
            slicer.app.setOverrideCursor(qt.Qt.WaitCursor)
            try:
                result = run()
            finally:  # also for an unexpected error, which then reaches the console with its traceback
                slicer.app.restoreOverrideCursor()
        except DoseRadiomicsError as exc:
            self.ui.discoveryLabel.text = str(exc)
            self.ui.discoveryLabel.toolTip = ""
            self._status(str(exc))
            slicer.util.errorDisplay(_("The patient's files were not found.") + "\n\n" + str(exc))
            return
        self.updateGuiFromParameterNode()
        self.ui.discoveryLabel.text = result["text"]
        self.ui.discoveryLabel.toolTip = result["details"]
        self._status(_("Loaded CT, dose and GTV '{gtv}'.").format(gtv=result["gtvName"]))

    def onGtvSegmentationChanged(self, node) -> None:
        # Also called while a scene closes (the selector's node is removed) when there is no parameter node.
        if self._parameterNode is None or self._updatingGui:
            return
        self._parameterNode.gtvSegmentation = node

    def onGtvSegmentChanged(self, segmentId) -> None:
        if self._parameterNode is None or self._updatingGui:
            return
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
                                           outputSegmentationNode=p.roiSegmentation, section=p.section)
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
                                                           config=p.config, section=p.section)
                    table, self._features = self.logic.extractFeatures(
                        p.ctVolume, p.alignedDose, p.roiSegmentation, options=options,
                        tableNode=p.featureTable, progress=progress)
                except ExtractionCancelled:
                    self._status(_("Extraction cancelled."))
                    return
                p.featureTable = table
                self.ui.extractProgressBar.value = 100
                self.logic.showTable(table)
                stability = self.logic.lastStabilityScreen()
                if stability is None:
                    self._status(_("{n} features extracted.").format(n=len(self._features)))
                else:
                    self._status(_("{n} features extracted; {u} numerically unstable (the table's stability "
                                   "column marks them: sort by it to list them).").format(
                        n=len(self._features), u=stability["n_unstable"]))
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
            # One plot view: the first chart (ROC) is shown, the others are a click away in its chart selector.
            charts = list(out["chartNodes"].values())
            if charts:
                self.logic.showChart(charts[0])
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
        if self._process is not None:
            self._status(_("A cohort job is already running."))
            return
        with slicer.util.tryWithErrorDisplay(_("Could not start the cohort job."), waitCursor=False):
            out = str(p.cohortOutputDir)
            options = self.logic.extractionOptions(isodoseGy=self.logic.parseIsodose(p.isodoseGy),
                                                   isodoseTouchingGtv=p.isodoseTouchingGtv, config=p.config,
                                                   section=p.section)
            self._queuedCommands = self.logic.cohortCommands(str(p.manifestPath), out, options)
            self._processCancelled = False
            self.ui.cohortLog.clear()
            self.ui.cohortProgressBar.value = 0
            self.ui.openReportButton.enabled = False
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
        # Owned by the panel: a parentless QProcess is destroyed with its last Python reference,
        # which the old code dropped inside the process's own finished() slot.
        process = qt.QProcess(self.parent)
        env = qt.QProcessEnvironment.systemEnvironment()
        for key, value in self.logic.processEnvironment().items():
            env.insert(key, value)
        process.setProcessEnvironment(env)
        process.setProcessChannelMode(qt.QProcess.MergedChannels)
        process.connect("readyReadStandardOutput()", lambda: self._onProcessOutput(process))
        process.connect("finished(int,QProcess::ExitStatus)",
                        lambda code, status: self._onProcessFinished(process, command, code, status))
        # A program that cannot start emits errorOccurred(FailedToStart) and never finished() (Qt docs).
        process.connect("errorOccurred(QProcess::ProcessError)",
                        lambda error: self._onProcessError(process, command, error))
        self._process = process
        process.start(command[0], command[1:])

    def _onProcessOutput(self, process) -> None:
        text = bytes(process.readAllStandardOutput().data()).decode("utf-8", "replace")
        for line in text.splitlines():
            self.ui.cohortLog.appendPlainText(line)
            fraction = self.logic.progressFromLine(line)
            if fraction is not None:
                self.ui.cohortProgressBar.value = int(100 * fraction)

    def _jobFailed(self, process, message: str) -> None:
        self._queuedCommands = []
        if process is self._process:
            self._process = None
        process.deleteLater()  # not now: we may be inside one of its signals
        self.ui.cohortLog.appendPlainText(message)
        self._status(message)
        slicer.util.errorDisplay(message + "\n" + _("See the log in the Cohort section."))

    def _onProcessFinished(self, process, command, exitCode, exitStatus) -> None:
        if process is not self._process:
            return
        self._onProcessOutput(process)  # what is left in the buffer
        program = Path(command[0]).name + " " + " ".join(command[1:3])
        if self._processCancelled:
            self._queuedCommands = []
            self._process = None
            process.deleteLater()
            self._status(_("Cohort job cancelled."))
            return
        if exitStatus == qt.QProcess.CrashExit:
            # A killed or crashed process: its exit code means nothing (QProcess::exitCode docs).
            self._jobFailed(process, _("The cohort job failed: '{program}' crashed or was killed.").format(program=program))
            return
        if exitCode != 0:
            self._jobFailed(process, _("The cohort job failed: '{program}' stopped with exit code {code}.").format(
                program=program, code=exitCode))
            return
        process.deleteLater()
        self._startNextCommand()

    def _onProcessError(self, process, command, error) -> None:
        # Only a start failure is handled here; crashes and timeouts also end in finished().
        if error == qt.QProcess.FailedToStart and process is self._process:
            self._jobFailed(process, _("The cohort job failed: '{program}' could not be started ({why}).").format(
                program=command[0], why=process.errorString()))

    def onCohortCancel(self) -> None:
        self._queuedCommands = []
        if self._process is not None:
            self._processCancelled = True
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
    ATTR_SECTION = "DoseRadiomics.Section"   # largest, largest:K or volume (the ROI segments' extent)
    ATTR_FRAME_OF_REFERENCE = "DoseRadiomics.FrameOfReferenceUID"
    EXACT_VALUE_COLUMN = "value (exact)"
    STABILITY_COLUMN = "stability"            # "unstable" / "stable" from the stability screen
    ATTR_UNSTABLE = "DoseRadiomics.UnstableFeatures"   # their count

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)  # noqa: F405
        self.lastAlignmentReport = None
        self.stability = None          # the last extraction's stability screen (the library's record entry)
        global _VERSIONS_AT_START
        if _VERSIONS_AT_START is None:
            _VERSIONS_AT_START = self.installedVersions()

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
        """None if pyradiomics is importable and can make the paper's features, else what to do."""
        import importlib.util
        if importlib.util.find_spec("radiomics") is None:
            return _("pyradiomics cannot be imported: install the SlicerRadiomics extension from the "
                     "Extension Manager (it provides pyradiomics) and restart Slicer.")
        if importlib.util.find_spec("scipy") is not None and importlib.util.find_spec("trimesh") is not None:
            # SciPy >= 1.17 makes pyradiomics' LBP3D filter yield nothing (the library's own check).
            from DoseRadiomicsLib import environment
            from DoseRadiomicsLib.errors import ExtractionError
            try:
                environment.check_lbp3d_support()
            except ExtractionError as exc:
                return str(exc)
        return None

    @staticmethod
    def installedVersions() -> dict:
        """``{distribution name (lower case): version}`` of everything installed, read from disk now."""
        import importlib
        import importlib.metadata
        importlib.invalidate_caches()  # pip may just have changed site-packages
        versions = {}
        for dist in importlib.metadata.distributions():
            name = (dist.metadata["Name"] or "").lower().replace("_", "-")
            if name:
                versions.setdefault(name, dist.version)
        return versions

    @staticmethod
    def _topLevelModules(distributionName: str) -> set:
        """The importable top-level names a distribution provides (top_level.txt, else its RECORD)."""
        import importlib.metadata
        try:
            dist = importlib.metadata.distribution(distributionName)
        except importlib.metadata.PackageNotFoundError:
            return set()
        listed = (dist.read_text("top_level.txt") or "").split()
        if listed:
            return set(listed)
        names = set()
        for f in dist.files or []:
            head = f.parts[0] if f.parts else ""
            if head and not head.endswith((".dist-info", ".egg-info", ".data")) and head != "..":
                names.add(head[:-3] if head.endswith(".py") else head)
        return names

    def restartNeeded(self, requirements=(), before=None) -> list:
        """What pip changed under a loaded module: ``["numpy 1.26.4 -> 2.0.1", ...]`` (empty: no restart).

        Every installed distribution whose version differs from ``before`` (a dict from
        :meth:`installedVersions`; by default the versions this module saw when its first Logic was
        made, i.e. what this session loaded) and one of whose top-level modules is imported in this
        process. ``requirements`` (the lines just installed, as the panel passes them) does not narrow
        the check: pip also upgrades the dependencies of what it was asked for (numpy, scipy...).
        """
        import sys as _sys
        before = _VERSIONS_AT_START if before is None else before
        now = self.installedVersions()
        changed = []
        for name, version in sorted(now.items()):
            old = (before or {}).get(name)
            if old is None or old == version:
                continue  # newly installed (nothing old loaded) or unchanged
            modules = self._topLevelModules(name)
            if any(m in _sys.modules for m in modules):
                changed.append(f"{name} {old} -> {version}")
        return changed

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

    # ---------------------------------------------------------------------------------------
    # Which nodes are the inputs: volumes and segmentations loaded by the DICOM module (Slicer's
    # DICOMScalarVolumePlugin for the CT, SlicerRT for RTDOSE and RTSTRUCT) are placed in the
    # subject hierarchy with their DICOM identifiers; other nodes (files, the sample case) are not.

    @staticmethod
    def _isDoseMapPicture(node) -> bool:
        return node.IsA("vtkMRMLVectorVolumeNode") or node.GetAttribute(
            DoseRadiomicsLogic.ATTR_DOSE_MAP_PICTURE) is not None

    @staticmethod
    def isDoseVolume(node) -> bool:
        """A dose: marked by SlicerRT's importer, or by this module (sample case, aligned dose).
        Never a picture of a dose (an RGB vector volume), however it is marked."""
        if not node or node.IsA("vtkMRMLVectorVolumeNode"):
            return False
        return (node.GetAttribute(SLICERRT_DOSE_ATTRIBUTE) == "1"
                or node.GetAttribute("DoseRadiomics.DoseUnit") is not None)

    @staticmethod
    def _subjectHierarchy():
        return slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)

    def _seriesItem(self, node) -> int:
        """The node's subject-hierarchy item, 0 if it has none."""
        sh = self._subjectHierarchy()
        return sh.GetItemByDataNode(node) if (sh is not None and node is not None) else 0

    def _itemAttribute(self, item, name: str):
        if not item:
            return None
        return self._subjectHierarchy().GetItemAttribute(item, name) or None

    def _itemUid(self, item, uidName: str):
        if not item:
            return None
        return self._subjectHierarchy().GetItemUID(item, uidName) or None

    def studyItem(self, node) -> int:
        """The DICOM study item above the node's item (where SlicerRT records the dose unit), else 0."""
        sh = self._subjectHierarchy()
        item = self._seriesItem(node)
        study = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy()
        while item and item != sh.GetSceneItemID():
            if sh.GetItemLevel(item) == study:
                return item
            item = sh.GetItemParent(item)
        return 0

    def modality(self, node):
        """DICOM.Modality of the node's series item (CT, RTDOSE, RTSTRUCT...), None if not from DICOM."""
        return self._itemAttribute(self._seriesItem(node),
                                   slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMSeriesModalityAttributeName())

    def seriesInstanceUid(self, node):
        return self._itemUid(self._seriesItem(node), slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName())

    def _referencedSeriesNode(self, segmentationNode):
        """The image series an RTSTRUCT segmentation was drawn on (SlicerRT records its series UID)."""
        uid = self._itemAttribute(self._seriesItem(segmentationNode), SLICERRT_ROI_REFERENCED_SERIES_ATTRIBUTE)
        if not uid:
            return uid, None
        sh = self._subjectHierarchy()
        item = sh.GetItemByUID(slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName(), uid)
        return uid, (sh.GetItemDataNode(item) if item else None)

    def frameOfReferenceUid(self, node):
        """FrameOfReferenceUID of a DICOM-loaded node, else None.

        In order: the series item's ``DICOM.FrameOfReferenceUID`` (Slicer's DICOMPlugin records it for
        image series such as the CT; SlicerRT does not for RTDOSE or RTSTRUCT); for an RTSTRUCT
        segmentation, that of the series it references; the first instance's tag (0020,0052) in
        Slicer's DICOM database (needs the application's database). Nodes this module read from
        DICOM files itself (:meth:`discoverPatientFolder` without the DICOM module) carry it as the
        attribute ``DoseRadiomics.FrameOfReferenceUID``.
        """
        if node is None:
            return None
        if node.GetAttribute(self.ATTR_FRAME_OF_REFERENCE):
            return node.GetAttribute(self.ATTR_FRAME_OF_REFERENCE)
        item = self._seriesItem(node)
        uid = self._itemAttribute(item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMFrameOfReferenceUIDAttributeName())
        if uid:
            return uid
        if node.IsA("vtkMRMLSegmentationNode"):
            _, referenced = self._referencedSeriesNode(node)
            if referenced is not None and referenced is not node:
                uid = self.frameOfReferenceUid(referenced)
                if uid:
                    return uid
        instances = (node.GetAttribute("DICOM.instanceUIDs")
                     or self._itemUid(item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMInstanceUIDName()) or "")
        database = getattr(slicer, "dicomDatabase", None)
        if not instances.split() or database is None:
            return None
        try:
            value = database.fileValue(database.fileForInstance(instances.split()[0]), "0020,0052")
        except Exception:  # noqa: BLE001 - a missing tag or file only means "unknown"
            return None
        return value or None

    def doseUnit(self, doseNode):
        """The unit the dose node's voxels are in, as the library spells it ('Gy', 'cGy'), or None.

        SlicerRT applies DoseGridScaling and records the RTDOSE's DoseUnits on the study item
        (``DicomRtImport.DoseUnitName``: GY or CGY); this module marks its own doses
        (``DoseRadiomics.DoseUnit``). None: nothing recorded (a dose read from a file: Gy). A unit that
        is not absolute dose (e.g. RELATIVE) raises InputError naming the node.
        """
        from DoseRadiomicsLib import dicomrt
        if doseNode is None:
            return None
        recorded = doseNode.GetAttribute("DoseRadiomics.DoseUnit") or self._itemAttribute(
            self.studyItem(doseNode), SLICERRT_DOSE_UNIT_NAME_ATTRIBUTE)
        if not recorded:
            return None
        return dicomrt.normalise_unit(recorded, path=f"Slicer node '{doseNode.GetName()}'")

    def _candidateVolumes(self):
        scene = slicer.mrmlScene
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
            node = scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
            # Vector volumes (the RGB dose-map picture) and labelmaps are scalar volumes by class.
            if (node.IsA("vtkMRMLLabelMapVolumeNode") or self._isDoseMapPicture(node)
                    or node.GetAttribute("DoseRadiomics.AlignedDose")):
                continue
            yield node

    def _sameFrame(self, a, b) -> int:
        """How surely two nodes belong together: 3 same frame of reference, 2 same DICOM study (a
        frame unknown), 1 neither from DICOM, 0 different frames or studies (never paired)."""
        fa, fb = self.frameOfReferenceUid(a), self.frameOfReferenceUid(b)
        if fa and fb:
            return 3 if fa == fb else 0
        sa, sb = self.studyItem(a), self.studyItem(b)
        if sa and sb:
            return 2 if sa == sb else 0
        if not (sa or sb or fa or fb):
            return 1
        return 0

    def pickGtvSegment(self, segmentationNode, gtvName=None):
        """``(segmentId or None, note or None)``: the GTV by the command line's name rule
        (``dicomrt.structures_named``) applied to ``gtvName``, or to "GTV" when no name is given; a
        segmentation with one segment gives that one."""
        from DoseRadiomicsLib import dicomrt
        segmentation = segmentationNode.GetSegmentation()
        ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
        names = [segmentation.GetSegment(i).GetName() for i in ids]
        listed = ", ".join(repr(n) for n in names) or "none"
        wanted = gtvName if gtvName not in (None, "") else "GTV"
        found = dicomrt.structures_named(names, wanted)
        if len(found) == 1:
            return ids[found[0]], None
        if len(found) > 1:
            return None, _("{n} segments of '{node}' are named '{name}': pick the GTV by hand").format(
                n=len(found), node=segmentationNode.GetName(), name=wanted)
        if gtvName in (None, "") and len(ids) == 1:
            return ids[0], None
        return None, _("no segment of '{node}' is named '{name}' (segments: {names}): pick the GTV segment").format(
            node=segmentationNode.GetName(), name=wanted, names=listed)

    def guessInputs(self, gtvName=None) -> dict:
        """The CT, dose, GTV segmentation and segment to offer, from what is in the scene.

        Returns ``dict(ct=, dose=, segmentation=, segmentId=, frameOfReferenceUid=, doseUnit=,
        notes=[...])`` (None where nothing fits; ``notes`` say why, for the panel). The dose is only
        ever a dose volume (SlicerRT's ``DicomRtImport.DoseVolume`` or this module's mark); the CT never
        a dose, a labelmap or a picture (RGB), and, when it comes from DICOM, a CT series. CT, dose and
        RTSTRUCT are taken from one frame of reference (the FrameOfReferenceUID where the hierarchy or
        the DICOM database gives it, else the DICOM study): another patient's or study's nodes in the
        scene are not mixed in. The GTV segment is picked by the command line's name rule
        (:meth:`pickGtvSegment`). ``doseUnit`` is what SlicerRT recorded ('Gy' or 'cGy'; the dose is
        converted to Gy when aligned).
        """
        notes = []
        volumes = list(self._candidateVolumes())
        doses = [v for v in volumes if self.isDoseVolume(v)]
        cts = []
        for v in volumes:
            if self.isDoseVolume(v):
                continue
            modality = self.modality(v)
            if modality not in (None, "CT"):
                notes.append(_("'{name}' is a {modality} series, not a CT: not offered as the CT").format(
                    name=v.GetName(), modality=modality))
                continue
            cts.append(v)
        # CTs from DICOM first (they carry the frame of reference), in scene order.
        cts.sort(key=lambda v: self.modality(v) != "CT")
        ct = dose = None
        best = 0
        for d in doses:
            for c in cts:
                score = self._sameFrame(c, d)
                if score > best:
                    ct, dose, best = c, d, score
        if dose is None:
            if doses and cts:
                notes.append(_("no CT in the scene shares a frame of reference or study with the dose "
                               "'{dose}': select CT and dose by hand (a transform or registration aligns them)").format(
                                   dose=doses[0].GetName()))
            elif not doses:
                notes.append(_("no dose volume in the scene: load the RTDOSE with the DICOM module (SlicerRT "
                               "marks it as dose) or import a dose-map picture"))
            else:
                dose = doses[0]  # no CT at all: nothing it could be mixed with
            ct = cts[0] if cts else None
        if ct is None:
            notes.append(_("no CT volume in the scene"))
        reference = ct or dose
        frame = self.frameOfReferenceUid(reference) if reference is not None else None

        segmentationNode = segmentId = None
        if reference is not None:
            best = 0
            scene = slicer.mrmlScene
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
                seg = scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
                if seg.GetAttribute(self.ATTR_INDEX) is not None:  # this module's dose ROIs, not a GTV
                    continue
                referencedUid, _node = self._referencedSeriesNode(seg)
                geometry = seg.GetNodeReferenceID(seg.GetReferenceImageGeometryReferenceRole())
                if ct is not None and ((referencedUid and referencedUid == self.seriesInstanceUid(ct))
                                       or geometry == ct.GetID()):
                    score = 4  # an RTSTRUCT drawn on this CT series, or a segmentation made on this CT
                elif not (self.studyItem(seg) or self.frameOfReferenceUid(seg)):
                    score = 1  # drawn in Slicer, not from DICOM: offered only when nothing fits better
                else:
                    score = self._sameFrame(reference, seg)
                if score > best:
                    segmentationNode, best = seg, score
            if segmentationNode is not None:
                segmentId, note = self.pickGtvSegment(segmentationNode, gtvName)
                if note:
                    notes.append(note)
            else:
                notes.append(_("no segmentation (RTSTRUCT) of this CT's frame of reference: draw the GTV "
                               "or load the structure set"))

        unit = None
        if dose is not None:
            try:
                unit = self.doseUnit(dose)
            except Exception as exc:  # noqa: BLE001 - InputError: a unit that is not absolute dose
                unit = self._itemAttribute(self.studyItem(dose), SLICERRT_DOSE_UNIT_NAME_ATTRIBUTE)
                notes.append(str(exc))
            else:
                if unit == "cGy":
                    notes.append(_("the dose '{name}' is in cGy (SlicerRT's record): it is converted to Gy "
                                   "when aligned").format(name=dose.GetName()))
                elif unit is None:
                    notes.append(_("no dose unit recorded for '{name}': it is taken as Gy").format(name=dose.GetName()))
        return {"ct": ct, "dose": dose, "segmentation": segmentationNode, "segmentId": segmentId,
                "frameOfReferenceUid": frame, "doseUnit": unit, "notes": notes}

    def guessCtAndDose(self):
        """(CT, dose) of :meth:`guessInputs`: the dose is a dose volume, the CT never one."""
        guess = self.guessInputs()
        return guess["ct"], guess["dose"]

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
    # A patient's files from a folder or a DICOM-database study: the library's discovery
    # (DoseRadiomicsLib.discovery, the rules of ``extract --patient-dir``), then the chosen files in
    # the scene. With Slicer's DICOM module (slicer.dicomDatabase open, slicer.modules.dicomPlugins)
    # the CT, RTSTRUCT and RTDOSE are loaded as the DICOM browser loads them (DICOMUtils at v5.8.0 and
    # v5.12.3: getLoadablesFromFileLists, selectHighestConfidenceLoadables, loadLoadables; SlicerRT's
    # DicomRtImportExportPlugin for the RT objects); without it (headless slicer-core) by the
    # library's readers. Either way the GTV is rasterised by the library (the command line's rule for
    # contour pixels), so the features equal the command line's.

    @staticmethod
    def dicomModuleAvailable() -> bool:
        """True where Slicer's DICOM database is open and DICOM plugins are registered."""
        database = getattr(slicer, "dicomDatabase", None)
        plugins = getattr(getattr(slicer, "modules", None), "dicomPlugins", None)
        return database is not None and bool(getattr(database, "isOpen", False)) and bool(plugins)

    def discoverPatientFolder(self, folder, gtvName=None, rtstruct=None, rtdose=None, ctSeries=None,
                              useDicomModule=None) -> dict:
        """Find the patient's CT series, RTSTRUCT and RTDOSE(s) in ``folder`` (searched recursively, as
        ``extract --patient-dir`` does: same rules, same errors) and load them into the scene.

        ``gtvName``: the GTV rule of ``--gtv-name`` (names, aliases ``a|b``, ``glob:``, ``re:``; case and
        spaces ignored; an unknown name gets a close-name suggestion). ``rtstruct``/``rtdose``/``ctSeries``
        pick where the rules find several (``--gtv``/``--dose``/``--ct``). ``useDicomModule``: None = when
        available (:meth:`dicomModuleAvailable`); the folder is then imported into the DICOM database first.
        Returns what :meth:`loadDiscovery` returns; the parameter node is filled.
        """
        from DoseRadiomicsLib import discovery
        found = discovery.discover_patient(folder, rtstruct=rtstruct, rtdose=rtdose, ct_series=ctSeries)
        viaDicom = self.dicomModuleAvailable() if useDicomModule is None else useDicomModule
        if viaDicom:
            from DICOMLib import DICOMUtils
            if not DICOMUtils.importDicom(str(found.root)):
                from DoseRadiomicsLib.errors import InputError
                raise InputError("the folder could not be imported into Slicer's DICOM database",
                                 path=found.root, hint="see the Python console; or load the files with "
                                                        "the DICOM module")
        return self.loadDiscovery(found, gtvName=gtvName, useDicomModule=viaDicom)

    def studyInstanceUid(self, study) -> str:
        """A StudyInstanceUID from a UID, a subject-hierarchy study item or a node loaded from the study."""
        from DoseRadiomicsLib.errors import InputError
        if isinstance(study, str):
            return study
        item = study
        if hasattr(study, "GetID"):  # a node: the study above its series item
            item = self.studyItem(study)
            if not item:
                raise InputError(f"'{study.GetName()}' was not loaded from the DICOM database (it has no study)",
                                 hint="load the study with the DICOM module, or use 'Find in folder'")
        sh = self._subjectHierarchy()
        uid = sh.GetItemUID(item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName()) if item else ""
        if not uid or sh.GetItemLevel(item) != slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy():
            raise InputError(f"subject-hierarchy item {item} is not a DICOM study",
                             hint="select a study (or a series of it) loaded by the DICOM module")
        return uid

    def studyForPanel(self, ctNode=None):
        """The study the panel's "From DICOM study" means: the selected CT's, else the database's only
        study; else an InputError listing the studies."""
        from DoseRadiomicsLib.errors import InputError
        if ctNode is not None and self.studyItem(ctNode):
            return self.studyItem(ctNode)
        database = getattr(slicer, "dicomDatabase", None)
        if database is None or not getattr(database, "isOpen", False):
            raise InputError("Slicer's DICOM database is not open", hint="open the DICOM module first, or use "
                                                                        "'Find in folder'")
        studies = [(patient, study) for patient in database.patients() for study in database.studiesForPatient(patient)]
        if len(studies) == 1:
            return studies[0][1]
        listing = "; ".join(f"'{database.descriptionForStudy(study)}' of {database.nameForPatient(patient)} ({study})"
                            for patient, study in studies) or "none"
        raise InputError(f"the DICOM database holds {len(studies)} studies: {listing}",
                         hint="select a CT loaded from the wanted study as the planning CT, then press "
                              "'From DICOM study' again")

    def studyFiles(self, study) -> list:
        """Every file of every series of a study in Slicer's DICOM database (ctkDICOMDatabase
        seriesForStudy, filesForSeries)."""
        from DoseRadiomicsLib.errors import InputError
        database = getattr(slicer, "dicomDatabase", None)
        if database is None or not getattr(database, "isOpen", False):
            raise InputError("Slicer's DICOM database is not open", hint="open the DICOM module first, or use "
                                                                        "'Find in folder'")
        uid = self.studyInstanceUid(study)
        files = [f for series in database.seriesForStudy(uid) for f in database.filesForSeries(series)]
        if not files:
            raise InputError(f"the DICOM database has no files of study {uid}",
                             hint="import the study's folder with the DICOM module")
        return files

    def discoverStudy(self, study, gtvName=None, rtstruct=None, rtdose=None, ctSeries=None,
                      useDicomModule=None) -> dict:
        """:meth:`discoverPatientFolder` for a study of Slicer's DICOM database: ``study`` is its
        StudyInstanceUID, its subject-hierarchy item, or a node loaded from it (e.g. the selected CT).
        The discovery runs on the files of all the study's series (``discovery.discover_files``)."""
        from DoseRadiomicsLib import discovery
        files = self.studyFiles(study)
        found = discovery.discover_files(files, rtstruct=rtstruct, rtdose=rtdose, ct_series=ctSeries)
        viaDicom = self.dicomModuleAvailable() if useDicomModule is None else useDicomModule
        return self.loadDiscovery(found, gtvName=gtvName, useDicomModule=viaDicom)

    def _loadWithDicomPlugins(self, files, messages) -> list:
        """The nodes the DICOM module loads from one file list (the browser's choice of plugin)."""
        from DICOMLib import DICOMUtils
        loadablesByPlugin, _unused = DICOMUtils.getLoadablesFromFileLists([[str(f) for f in files]],
                                                                          messages=messages)
        DICOMUtils.selectHighestConfidenceLoadables(loadablesByPlugin)
        ids = DICOMUtils.loadLoadables(loadablesByPlugin, messages=messages)
        nodes = [slicer.mrmlScene.GetNodeByID(i) for i in ids]
        return [n for n in nodes if n is not None]

    def _isPlainScalarVolume(self, node) -> bool:
        return (node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode")
                and not node.IsA("vtkMRMLVectorVolumeNode"))

    def loadDiscovery(self, found, gtvName=None, useDicomModule=False) -> dict:
        """Put a ``discovery.Discovery``'s files in the scene and fill the parameter node.

        CT and dose: with ``useDicomModule``, as the DICOM module loads them (several BEAM doses are
        then summed by the library from SlicerRT's dose volumes, each in Gy); a role the plugins load
        nothing for (e.g. the dose without SlicerRT) and every role without the DICOM module: the
        library's readers (the CT series from exactly its files; BEAM doses summed as ``extract`` sums
        them). The GTV: the RTSTRUCT's structure ``gtvName`` picks, rasterised by the library onto the
        CT node's grid, as a segmentation (with the DICOM module, SlicerRT's structure set is loaded
        beside it for viewing).

        Returns ``dict(ct=, dose=, gtvSegmentation=, gtvSegmentId=, gtvName=, discovery=<the record>,
        loadedWith={role: "DICOM module" | "DoseRadiomics readers"}, warnings=[...], text=, details=)``.
        A failure (e.g. no structure of that name) leaves the scene as it was: nothing half-loaded.
        """
        scene = slicer.mrmlScene
        before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
        try:
            return self._loadDiscovery(found, gtvName, useDicomModule)
        except Exception:
            added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
            for node in added:
                # The subject hierarchy and singletons (editor, selection) belong to the scene, not the load.
                if (node.GetID() not in before and not node.IsA("vtkMRMLSubjectHierarchyNode")
                        and not node.GetSingletonTag()):
                    scene.RemoveNode(node)
            raise

    def _loadDiscovery(self, found, gtvName, useDicomModule) -> dict:
        from DoseRadiomicsLib import discovery, mrml_bridge, readers
        from DoseRadiomicsLib.readers import LoadedImage
        scene = slicer.mrmlScene
        record = found.record
        frame = found.headers["ct"].frame
        patient = str(found.headers["ct"].get("PatientID")) or found.root.name
        messages, warnings, loadedWith, extra = [], list(found.warnings), {}, {}

        ctNode = None
        if useDicomModule:
            ctNode = next((n for n in self._loadWithDicomPlugins(found.ct_files, messages)
                           if self._isPlainScalarVolume(n)), None)
        if ctNode is not None:
            ct = LoadedImage(mrml_bridge.image_from_volume_node(ctNode), f"Slicer node '{ctNode.GetName()}'",
                             self.frameOfReferenceUid(ctNode) or frame)
            loadedWith["ct"] = "DICOM module"
        else:
            ct = readers.read_ct(found.ct, patient=patient, files=found.ct_files)
            ctNode = mrml_bridge.volume_node_from_image(ct.image, f"{patient} CT")
            ctNode.SetAttribute(self.ATTR_FRAME_OF_REFERENCE, ct.frame_of_reference_uid or "")
            loadedWith["ct"] = "DoseRadiomics readers"

        doseNode = None
        if useDicomModule:
            if found.rtstruct is not None:
                extra["structureSet"] = [n for n in self._loadWithDicomPlugins([found.rtstruct], messages)
                                         if n.IsA("vtkMRMLSegmentationNode")]
            doseNodes = []
            for path in found.doses:
                doseNodes += [n for n in self._loadWithDicomPlugins([path], messages)
                              if self._isPlainScalarVolume(n) and self.isDoseVolume(n)]
            if len(doseNodes) == len(found.doses) == 1:
                doseNode = doseNodes[0]  # SlicerRT's dose, unit on its study item (converted when aligned)
            elif len(doseNodes) == len(found.doses):
                summed = discovery.sum_doses([self._doseInGy(n) for n in doseNodes], patient=patient)
                doseNode = self._newDoseNode(summed.image, f"{patient} dose ({record['rtdose']['summation']}, Gy)",
                                             frame)
            if doseNode is not None:
                loadedWith["dose"] = "DICOM module"
            else:
                warnings.append(_("the DICOM module loaded no dose volume (is SlicerRT installed?): the dose "
                                  "was read by DoseRadiomics"))
                for n in doseNodes:
                    scene.RemoveNode(n)
        if doseNode is None:
            dose = discovery.read_doses(found.doses, patient=patient)
            doseNode = self._newDoseNode(dose.image, f"{patient} dose ({record['rtdose']['summation']}, Gy)",
                                         dose.frame_of_reference_uid)
            loadedWith["dose"] = "DoseRadiomics readers"

        mask = readers.read_gtv(found.rtstruct, ct, name=gtvName, patient=patient)
        gtvReport = readers.gtv_report(mask)
        roiName = gtvReport.get("roi_name") or "GTV"
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                               scene.GenerateUniqueName(f"{patient} GTV"))
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(ctNode)
        segmentId = mrml_bridge.add_segment_from_mask(segmentation, mask, roiName, color=self.ROI_COLORS["GTV"])
        segmentation.SetAttribute("DoseRadiomics.RTSTRUCT", str(found.rtstruct))
        loadedWith["gtv"] = "DoseRadiomics readers (the command line's contour rule)"
        warnings += list(gtvReport.get("warnings") or [])
        warnings += [m for m in messages if m]

        p = self.getParameterNode()
        with slicer.util.NodeModify(p.parameterNode):
            p.ctVolume, p.doseVolume = ctNode, doseNode
            p.gtvSegmentation, p.gtvSegmentId = segmentation, segmentId
            # Results of the previous patient must not be taken for this one's.
            p.alignedDose = None
            p.roiSegmentation = None
            p.featureTable = None
        out = {"ct": ctNode, "dose": doseNode, "gtvSegmentation": segmentation, "gtvSegmentId": segmentId,
               "gtvName": roiName, "discovery": record, "loadedWith": loadedWith, "warnings": warnings,
               "structureSet": extra.get("structureSet", [])}
        out["text"], out["details"] = self.describeDiscovery(out)
        return out

    def _doseInGy(self, doseNode):
        """A dose node as the library's LoadedImage in Gy (SlicerRT's recorded unit applied)."""
        import dataclasses
        import SimpleITK as sitk
        from DoseRadiomicsLib.dicomrt import UNIT_TO_GY
        loaded = self._loaded(doseNode, "dose")
        unit = self.doseUnit(doseNode) or "Gy"
        image = sitk.Cast(loaded.image, sitk.sitkFloat32)
        if unit != "Gy":
            image = sitk.Cast(sitk.Cast(image, sitk.sitkFloat64) * UNIT_TO_GY[unit.upper()], sitk.sitkFloat32)
        return dataclasses.replace(loaded, image=image)

    def _newDoseNode(self, image, name, frame):
        from DoseRadiomicsLib import mrml_bridge
        node = mrml_bridge.volume_node_from_image(image, name)
        node.SetAttribute(SLICERRT_DOSE_ATTRIBUTE, "1")
        node.SetAttribute("DoseRadiomics.DoseUnit", "Gy")
        node.SetAttribute(self.ATTR_FRAME_OF_REFERENCE, frame or "")
        return node

    @staticmethod
    def describeDiscovery(result: dict) -> tuple:
        """``(text, details)`` for the panel: what was chosen and why (short), and the whole record."""
        r = result["discovery"]
        text = "\n".join([
            _("CT: {n} slices '{desc}' ({why})").format(n=r["ct"]["files"], desc=r["ct"]["series_description"],
                                                       why=r["ct"]["why"]),
            _("Structure set: {file} ({why}); GTV: '{gtv}'").format(file=r["rtstruct"]["file"],
                                                                   why=r["rtstruct"]["why"], gtv=result["gtvName"]),
            _("Dose: {files} ({summation}: {why})").format(files=", ".join(r["rtdose"]["files"]),
                                                          summation=r["rtdose"]["summation"], why=r["rtdose"]["why"]),
        ] + [_("Warning: {w}").format(w=w) for w in result["warnings"]])
        lines = [_("Folder: {root}").format(root=r["patient_dir"])]
        lines += [f"{role}: {how}" for role, how in result["loadedWith"].items()]
        lines += [_("Dose refused: {file}: {why}").format(**d) for d in r.get("refused_doses", [])]
        lines += [_("Other image series: {uid} ({n} files, '{desc}')").format(
            uid=s["series_instance_uid"], n=s["files"], desc=s["series_description"])
            for s in r.get("other_image_series", [])]
        lines += [_("Skipped: {n} file(s), {why} (e.g. {files})").format(n=v["count"], why=why,
                                                                          files=", ".join(v["files"][:2]))
                  for why, v in r.get("skipped", {}).items()]
        return text, "\n".join(lines)

    # ---------------------------------------------------------------------------------------
    # Steps

    def alignDose(self, ctNode, doseNode, gtvSegmentationNode=None, gtvSegment=None, register=False,
                  transformPath=None, outputNode=None):
        """The dose resampled on the CT grid (rigid registration first if asked); a volume node.

        The library's report (method, coverage of the GTV by the dose grid...) is kept in
        ``lastAlignmentReport``.
        """
        from DoseRadiomicsLib import alignment, mrml_bridge
        if ctNode is not None and doseNode is not None and ctNode.GetID() == doseNode.GetID():
            from DoseRadiomicsLib.errors import InputError
            raise InputError(f"the dose and the CT are the same volume ('{ctNode.GetName()}')",
                             hint="select the RT dose (in Gy) as the dose and the planning CT as the CT")
        ct = self._loaded(ctNode, "CT")
        dose = self._loaded(doseNode, "dose")
        unit = self.doseUnit(doseNode)  # what SlicerRT recorded; InputError for e.g. RELATIVE
        if unit not in (None, "Gy"):
            import dataclasses
            import SimpleITK as sitk
            from DoseRadiomicsLib.dicomrt import UNIT_TO_GY
            factor = UNIT_TO_GY[unit.upper()]
            dose = dataclasses.replace(dose, image=sitk.Cast(dose.image, sitk.sitkFloat32) * factor,
                                       details=dict(dose.details, converted_from=unit))
        gtv = None
        if gtvSegmentationNode is not None and gtvSegment:
            gtv = mrml_bridge.mask_from_segment(gtvSegmentationNode, gtvSegment, ctNode)
        aligned, report = alignment.align_dose_to_ct(ct, dose, gtv=gtv, transform=transformPath,
                                                     register=register)
        report["dose_unit"] = {"recorded": unit, "converted_to_gy": unit not in (None, "Gy")}
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
        if (r.get("dose_unit") or {}).get("converted_to_gy"):
            text += " " + _("Converted from {unit} to Gy.").format(unit=r["dose_unit"]["recorded"])
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
                     isodoseTouchingGtv=False, outputSegmentationNode=None, axis: int = 2, section: str = "largest"):
        """Segments GTV, GTV-heat and <N>Gy-heat on the largest cross-section; the segmentation node.

        ``section`` "largest:K" or "volume" makes them on the K slices either side of it, or in the
        whole volume (the library's --section). The segments are ordinary segments: edit them in the
        Segment Editor before extraction.
        """
        from DoseRadiomicsLib import crosssection, mrml_bridge, rois
        spec = crosssection.parse_section(section)
        largest = self.findLargestCrossSection(gtvSegmentationNode, gtvSegment, ctNode, axis=axis)["section"]
        ct = mrml_bridge.image_from_volume_node(ctNode)
        dose = mrml_bridge.image_from_volume_node(alignedDoseNode)
        gtv = mrml_bridge.mask_from_segment(gtvSegmentationNode, gtvSegment, ctNode)
        extent = None if spec.is_single_slice else crosssection.section_extent(gtv, largest, spec)
        sliceRois = rois.make_rois(ct, dose, gtv, largest, isodose_gy=tuple(isodoseGy),
                                   isodose_touching_gtv=isodoseTouchingGtv, extent=extent)
        section = largest
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
        node.SetAttribute(self.ATTR_SECTION, spec.text)
        return node

    def sliceROIs(self, ctNode, alignedDoseNode, roiSegmentationNode):
        """The library's SliceROIs from the (possibly edited) ROI segments on their recorded slice."""
        from collections import OrderedDict
        import SimpleITK as sitk
        from DoseRadiomicsLib import crosssection, mrml_bridge, orientation, rois
        from DoseRadiomicsLib.errors import ROIError
        if roiSegmentationNode is None or roiSegmentationNode.GetAttribute(self.ATTR_INDEX) is None:
            raise ROIError("no dose ROIs: the segmentation was not made by 'Make dose ROIs'",
                           hint="press 'Make dose ROIs' first")
        axis = int(roiSegmentationNode.GetAttribute(self.ATTR_AXIS))
        index = int(roiSegmentationNode.GetAttribute(self.ATTR_INDEX))
        isodose = self.parseIsodose(roiSegmentationNode.GetAttribute(self.ATTR_ISODOSE))
        spec = crosssection.parse_section(roiSegmentationNode.GetAttribute(self.ATTR_SECTION) or "largest")
        ct = mrml_bridge.image_from_volume_node(ctNode)
        dose = mrml_bridge.image_from_volume_node(alignedDoseNode)
        gtv = mrml_bridge.mask_from_segment(roiSegmentationNode, rois.GTV, ctNode)
        areas = crosssection.slice_areas_mm2(gtv, axis)
        section = crosssection.CrossSection(axis=axis, index=index,
                                            position_mm=crosssection.slice_position_mm(ct, axis, index),
                                            area_mm2=float(areas[index]), tied_indices=(index,))
        # the slab or volume of the section the segments were made for (the same slices as then)
        extent = None if spec.is_single_slice else crosssection.section_extent(gtv, section, spec)
        base = rois.make_rois(ct, dose, gtv, section, isodose_gy=isodose,
                              isodose_touching_gtv=roiSegmentationNode.GetAttribute(self.ATTR_TOUCHING) == "1",
                              extent=extent)
        # The segments as the user left them (edits included), restricted to the recorded slice(s).
        masks = OrderedDict()
        for name in base.masks:
            segment = mrml_bridge.mask_from_segment(roiSegmentationNode, name, ctNode)
            one = crosssection.extract_slice(segment, section) if extent is None else \
                crosssection.extract_extent(segment, extent)
            one = sitk.Cast(one, sitk.sitkUInt8)
            one.CopyInformation(base.ct)
            if not sitk.GetArrayViewFromImage(one).any():
                raise ROIError(f"ROI {name} is empty on slice {index}" if extent is None else
                               f"ROI {name} is empty in the {spec.text} section",
                               hint="paint it on the cross-section slice, or make the dose ROIs again")
            masks[name] = one
        # One patient orientation, as the command line cuts the slice (orientation.py): the same anatomy
        # stored head-first or feet-first, supine or prone gives the same features. The ROI segments stay
        # in the CT's own geometry for display; only the arrays handed to pyradiomics are reoriented.
        ct1, dose1 = orientation.canonical_images(base.ct, base.dose)
        masks = OrderedDict((name, orientation.to_canonical(m)) for name, m in masks.items())
        # (a slab flipped to the patient orientation keeps its extent: only its slice order may change)
        return rois.SliceROIs(section=section, ct=ct1, dose=dose1, masks=masks, isodose_gy=isodose, extent=extent)

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
                                             isodoseTouchingGtv=roiSegmentationNode.GetAttribute(self.ATTR_TOUCHING) == "1",
                                             section=sliceRois.extent.spec if sliceRois.extent else "largest")
        self.stability = None   # not the last patient's, should this extraction fail
        # the features and the stability screen, as the command line computes them
        features, self.stability = pipeline.extract_and_screen(sliceRois, options, progress=progress)
        unstable = (self.stability or {}).get("unstable", {})
        # Slicer's table storage writes numbers with 6 significant digits (vtkDelimitedTextWriter's
        # default), so a saved scene would round the features; the exact text column keeps every bit.
        rows = {"ROI": [], "feature": [], "value": [], self.EXACT_VALUE_COLUMN: [], self.STABILITY_COLUMN: []}
        for key, value in features.items():
            roi, name = key.split(pipeline.ROI_SEPARATOR, 1)
            rows["ROI"].append(roi)
            rows["feature"].append(name)
            rows["value"].append(float(value))
            rows[self.EXACT_VALUE_COLUMN].append(repr(float(value)))
            rows[self.STABILITY_COLUMN].append(
                "" if self.stability is None else "unstable" if key in unstable else "stable")
        tableNode = mrml_bridge.table_node_from_columns(rows, "DoseRadiomics features", node=tableNode)
        tableNode.SetAttribute(self.ATTR_UNSTABLE, "" if self.stability is None else str(len(unstable)))
        settingsHash = pipeline.options_settings_hash(options)
        tableNode.SetAttribute(self.ATTR_SETTINGS_HASH, settingsHash)
        tableNode.SetAttribute(self.ATTR_INDEX, str(sliceRois.section.index))
        tableNode.SetAttribute("DoseRadiomics.Config", options.config)
        tableNode.SetAttribute(self.ATTR_SECTION, options.section)
        self._setTableStorage(tableNode)
        return tableNode, features

    @staticmethod
    def _setTableStorage(tableNode) -> None:
        # Tables saved with the scene keep their column types through the schema file.
        if tableNode.GetStorageNode() is None:
            tableNode.AddDefaultStorageNode()

    def lastStabilityScreen(self):
        """The stability screen of the last :meth:`extractFeatures` (the library's record entry), or None."""
        return self.stability

    def unstableFeatures(self, tableNode) -> list:
        """The features the stability screen marked unstable in a features table (``<ROI>__<feature>``)."""
        from DoseRadiomicsLib import mrml_bridge, pipeline
        cols = mrml_bridge.columns_from_table_node(tableNode)
        return [f"{r}{pipeline.ROI_SEPARATOR}{f}" for r, f, s in
                zip(cols["ROI"], cols["feature"], cols.get(self.STABILITY_COLUMN, [])) if s == "unstable"]

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
        """Switch to a layout with a table view and show the table there (no-op headless).

        As SegmentStatistics.py does (v5.8.0, v5.12.3): PropagateTableSelection alone fills only the
        table views the layout already has, and Slicer's default layout has none.
        """
        app = getattr(slicer, "app", None)
        if app is None or tableNode is None:
            return
        layoutManager = app.layoutManager()
        if layoutManager is not None:
            layoutWithTable = slicer.modules.tables.logic().GetLayoutWithTable(layoutManager.layout)
            if layoutWithTable != layoutManager.layout:
                layoutManager.setLayout(layoutWithTable)
        app.applicationLogic().GetSelectionNode().SetActiveTableID(tableNode.GetID())
        app.applicationLogic().PropagateTableSelection()

    @staticmethod
    def showChart(chartNode) -> None:
        """Show a chart in a plot view: ShowChartInLayout switches to a layout with one (keeping a table
        view if the layout had one: GetLayoutWithPlot, v5.8.0 and v5.12.3) and selects the chart."""
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
        if options.section != "largest":
            cmd += ["--section", options.section]
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
        self.skipUnlessDependencies()

    def skipUnlessDependencies(self):
        """Skip (unittest.SkipTest, which ctest and Slicer's unittest runner count as skipped, not
        failed) when a Python package the test needs is missing, saying what to install and how; the
        Extensions Index factory builds the extension without them."""
        logic = DoseRadiomicsLogic()
        missing = logic.missingDependencies()
        problem = logic.pyradiomicsProblem()
        if not missing and not problem:
            return
        lines = [_("DoseRadiomics self-test skipped: Python packages it needs are missing.")]
        if missing:
            lines.append(_("Install them in Slicer: Modules > Radiotherapy > Dose Radiomics, Setup, "
                           "'Install Python packages', or in the Python console: "
                           "slicer.util.pip_install({command})").format(
                               command=repr(" ".join(shlex.quote(r) for r in missing))))
        if problem:
            lines.append(problem)
        message = " ".join(lines)
        self.delayDisplay(message)
        self.skipTest(message)

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
