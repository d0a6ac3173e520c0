"""DoseRadiomicsWidget exercised headless, in the sequences users run, with both flavours of
parameterNodeWrapper.connectGui (Slicer 5.8: returns None; 5.10 on: returns the tag).

The Qt side is qt_fakes.py (generic Qt/CTK/qMRML behaviour, checked on its own in test_qt_fakes.py);
MRML is the real scene from slicer-core; the .ui is the module's own file."""

from __future__ import annotations

import logging
import sys

import pytest

import qt_fakes
import slicer_standins
import widget_harness
from conftest import _make_slicer_session


def _env(monkeypatch, flavour):
    monkeypatch.setattr(slicer_standins, "CONNECT_GUI_FLAVOUR", flavour)
    env = widget_harness.install(monkeypatch, _make_slicer_session)
    env.flavour = flavour
    yield env
    for process in list(qt_fakes.LIVE_PROCESSES):
        process.kill()
    qt_fakes.wait_for_processes(env.app, timeout=10)
    qt_fakes.LIVE_PROCESSES.clear()


@pytest.fixture(params=["5.8", "5.12"])
def env(request, monkeypatch, module):
    yield from _env(monkeypatch, request.param)


@pytest.fixture
def env_newest(monkeypatch, module):
    """For what does not depend on the connectGui flavour (run once)."""
    yield from _env(monkeypatch, "5.12")


def _harness(env):
    h = widget_harness.Harness(env.module, env.scene)
    yield h
    h.close()
    assert not qt_fakes.SLOT_ERRORS, "a slot raised:\n" + "\n".join(t for _, t in qt_fakes.SLOT_ERRORS)
    assert env.app.overrideCursorDepth == 0, "a wait cursor was not restored"


@pytest.fixture
def harness(env):
    yield from _harness(env)


@pytest.fixture
def harness_newest(env_newest):
    yield from _harness(env_newest)


# ---------------------------------------------------------------------------------------------
# helpers

def _volume(scene, name, dose=False, cls="vtkMRMLScalarVolumeNode"):
    node = scene.AddNewNodeByClass(cls, name)
    if dose:
        node.SetAttribute("DicomRtImport.DoseVolume", "1")
    return node


def _segmentation(scene, name="GTV segmentation", segment="GTV"):
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentId = node.GetSegmentation().AddEmptySegment(segment, segment)
    return node, segmentId


def _editor_node(scene):
    import DoseRadiomics
    return scene.GetSingletonNode(DoseRadiomics.DoseRadiomicsWidget.SEGMENT_EDITOR_SINGLETON_TAG,
                                  "vtkMRMLSegmentEditorNode")


def _assert_editor_node_ok(harness):
    node = _editor_node(harness.scene)
    assert node is not None, "no singleton segment editor node in the scene"
    editor = harness.ui.segmentEditorWidget
    assert editor.mrmlSegmentEditorNode() is node
    assert harness.scene.GetNumberOfNodesByClass("vtkMRMLSegmentEditorNode") == 1
    assert not editor.errors, editor.errors


def _choose(combo, text):
    """What a user does: pick an item (QComboBox emits currentIndexChanged)."""
    index = combo.findText(text)
    assert index >= 0, f"{text!r} not among the items of {combo.objectName}"
    combo.currentIndex = index


CHOICES = {"configComboBox": ("config", "2d"), "sectionComboBox": ("section", "largest:2"),
           "dosePictureModeComboBox": ("dosePictureMode", "intensity"),
           "dosePictureColourTableComboBox": ("dosePictureColourTable", "rainbow"),
           "dosePictureBarOrientationComboBox": ("dosePictureBarOrientation", "horizontal"),
           "dosePictureRegistrationComboBox": ("dosePictureRegistration", "landmarks"),
           "dosePictureTransformComboBox": ("dosePictureTransform", "affine")}


def _choose_non_default_choices(harness):
    for widget, (param, value) in CHOICES.items():
        _choose(getattr(harness.ui, widget), value)
    p = harness.widget._parameterNode
    assert {param: getattr(p, param) for param, _ in CHOICES.values()} == dict(CHOICES.values())


def _assert_choices_kept(harness):
    p = harness.widget.logic.getParameterNode()
    stored = {param: getattr(p, param) for param, _ in CHOICES.values()}
    assert stored == dict(CHOICES.values())
    shown = {param: getattr(harness.ui, widget).currentText for widget, (param, _) in CHOICES.items()}
    assert shown == dict(CHOICES.values())


# ---------------------------------------------------------------------------------------------
# parameters survive what users do

def test_choice_parameters_survive_exit_and_reenter(harness):
    harness.setup()
    harness.enter()
    _choose_non_default_choices(harness)
    harness.ui.isodoseLineEdit.text = "45 50"
    harness.ui.isodoseTouchingGtvCheckBox.checked = True
    for _ in range(3):
        harness.exit()
        harness.enter()
        _assert_choices_kept(harness)
    p = harness.widget._parameterNode
    assert (p.isodoseGy, p.isodoseTouchingGtv) == ("45 50", True)
    # Still connected both ways after the re-entries: the panel edits the node, the node the panel.
    _choose(harness.ui.configComboBox, "paper")
    assert p.config == "paper"
    p.config = "2d"
    assert harness.ui.configComboBox.currentText == "2d"


def test_exit_disconnects_the_panel_from_the_parameter_node(harness):
    harness.setup()
    harness.enter()
    harness.exit()
    _choose(harness.ui.configComboBox, "2d")  # nobody should listen while the module is hidden
    assert harness.widget.logic.getParameterNode().config == "paper"
    harness.enter()  # entering shows the node's value again
    assert harness.ui.configComboBox.currentText == "paper"


def test_the_stand_in_reproduces_the_5_8_connectGui_defect(env, harness):
    """The fixture is able to fail: with connectGui/disconnectGui as the module used them, the 5.8 flavour
    resets a Choice to its first item on the second connect, the 5.12 flavour keeps it (upstream
    wrapper.py v5.8.0 vs v5.12.3)."""
    import slicer
    module = env.module
    ui = slicer.util.childWidgetVariables(slicer.util.loadUI(str(module.MODULE_DIR / "Resources/UI/DoseRadiomics.ui")))
    ui_top = None  # noqa: F841 - the ui object keeps the widgets alive
    node = module.DoseRadiomicsLogic().getParameterNode().parameterNode
    first = module.DoseRadiomicsParameterNode(node)
    tag = first.connectGui(ui)
    _choose(ui.configComboBox, "2d")
    assert first.config == "2d"
    first.disconnectGui(tag)
    second = module.DoseRadiomicsParameterNode(node)
    secondTag = second.connectGui(ui)
    expected = "paper" if env.flavour == "5.8" else "2d"
    assert second.config == expected
    assert (tag is None) == (env.flavour == "5.8")
    # ... and, as upstream's _connectParametersToGui up to v5.10.0, leaves its ModifiedEvent observer behind
    import vtk
    second.disconnectGui(secondTag)
    assert bool(node.HasObserver(vtk.vtkCommand.ModifiedEvent)) == (env.flavour == "5.8")


def test_the_panel_leaves_no_observer_on_the_parameter_node(harness):
    """Slicer <= 5.10 leaves the observer that connectParametersToGui adds; the panel removes it. A left
    observer holds the old panel's wrapper, and once the garbage collector has cleared it (VTK shows it the
    observer) the node's next change calls freed code: this crashed the test process (VTK 9.6.2)."""
    import gc
    import vtk
    harness.setup()
    harness.enter()
    node = harness.widget._parameterNode.parameterNode
    harness.exit()
    assert not node.HasObserver(vtk.vtkCommand.ModifiedEvent), "exit left an observer on the parameter node"
    harness.enter()
    harness.reload()
    harness.exit()
    assert not node.HasObserver(vtk.vtkCommand.ModifiedEvent), "reload left an observer on the parameter node"
    harness.enter()
    gc.collect()
    _choose(harness.ui.configComboBox, "2d")
    assert harness.widget._parameterNode.config == "2d"


def test_selections_reach_the_parameter_node_and_the_editor_follows_the_ct(harness):
    scene = harness.scene
    harness.setup()
    harness.enter()
    ct1, ct2 = _volume(scene, "CT 1"), _volume(scene, "CT 2")
    dose = _volume(scene, "dose", dose=True)
    segmentation, segmentId = _segmentation(scene)
    ui, p = harness.ui, harness.widget._parameterNode
    ui.ctSelector.setCurrentNode(ct1)
    ui.doseSelector.setCurrentNode(dose)
    ui.gtvSegmentSelector.setCurrentNode(segmentation)
    assert (p.ctVolume, p.doseVolume, p.gtvSegmentation, p.gtvSegmentId) == (ct1, dose, segmentation, segmentId)
    editor = ui.segmentEditorWidget
    assert editor.segmentationNode() is segmentation
    assert editor.sourceVolumeNode() is ct1
    ui.ctSelector.setCurrentNode(ct2)
    assert editor.sourceVolumeNode() is ct2
    p.ctVolume = ct1  # from Python / a loaded scene: the editor follows too
    assert editor.sourceVolumeNode() is ct1 and ui.ctSelector.currentNode() is ct1
    _assert_editor_node_ok(harness)


def test_exit_deactivates_the_effect_and_removes_view_observations(harness):
    harness.setup()
    harness.enter()
    editor = harness.ui.segmentEditorWidget
    assert editor.keyboardShortcutsInstalled
    editor.setActiveEffectByName("Paint")
    assert editor.activeEffect() is not None and editor.viewObservations > 0
    harness.exit()
    assert editor.activeEffect() is None
    assert editor.viewObservations == 0
    assert not editor.keyboardShortcutsInstalled


# ---------------------------------------------------------------------------------------------
# scene close, scene load, reload

def _load_case(harness):
    scene = harness.scene
    ct, dose = _volume(scene, "CT"), _volume(scene, "dose", dose=True)
    segmentation, segmentId = _segmentation(scene)
    ui = harness.ui
    ui.ctSelector.setCurrentNode(ct)
    ui.doseSelector.setCurrentNode(dose)
    ui.gtvSegmentSelector.setCurrentNode(segmentation)
    return ct, dose, segmentation, segmentId


@pytest.mark.parametrize("entered", [True, False])
def test_scene_close_leaves_a_working_panel_and_editor(harness, entered):
    harness.setup()
    harness.enter()
    _load_case(harness)
    _choose_non_default_choices(harness)
    harness.ui.segmentEditorWidget.setActiveEffectByName("Threshold")
    if not entered:
        harness.exit()
    harness.scene.Clear(0)  # File / Close Scene
    # No slot raised while the selectors emptied (checked by the fixture), the editor node is back.
    _assert_editor_node_ok(harness)
    editor = harness.ui.segmentEditorWidget
    assert editor.segmentationNode() is None and editor.viewObservations == 0
    if not entered:
        harness.enter()
    p = harness.widget._parameterNode
    assert p is not None and p.parameterNode.GetScene() is harness.scene
    assert p.ctVolume is None and p.config == "paper"  # a closed scene starts afresh
    # The panel works on the new scene: new data, new selections, editor follows.
    ct, dose, segmentation, segmentId = _load_case(harness)
    assert (p.ctVolume, p.doseVolume, p.gtvSegmentId) == (ct, dose, segmentId)
    assert editor.sourceVolumeNode() is ct and editor.segmentationNode() is segmentation
    _choose(harness.ui.configComboBox, "2d")
    assert p.config == "2d"
    _assert_editor_node_ok(harness)


def test_scene_load_restores_parameters_and_selections(harness, tmp_path):
    harness.setup()
    harness.enter()
    ct, dose, segmentation, segmentId = _load_case(harness)
    _choose_non_default_choices(harness)
    harness.ui.clinicalLineEdit.text = "hb=118 t_stage=T3"
    ids = ct.GetID(), dose.GetID(), segmentation.GetID()
    scene = harness.scene
    # The segmentation is saved with the scene (its segment must come back for the selector).
    segmentation.AddDefaultStorageNode()
    segmentation.GetStorageNode().SetFileName(str(tmp_path / "gtv.seg.nrrd"))
    assert segmentation.GetStorageNode().WriteData(segmentation)
    scene.SetURL(str(tmp_path / "study.mrml"))
    assert scene.Commit()
    scene.Clear(0)
    scene.SetURL(str(tmp_path / "study.mrml"))
    assert scene.Connect()  # File / Load Scene: close, then import
    _assert_editor_node_ok(harness)
    _assert_choices_kept(harness)
    p, ui = harness.widget._parameterNode, harness.ui
    assert (p.ctVolume.GetID(), p.doseVolume.GetID(), p.gtvSegmentation.GetID()) == ids
    assert p.gtvSegmentId == segmentId and p.clinicalValues == "hb=118 t_stage=T3"
    assert ui.ctSelector.currentNode() is p.ctVolume and ui.doseSelector.currentNode() is p.doseVolume
    assert ui.gtvSegmentSelector.currentNode() is p.gtvSegmentation
    assert ui.gtvSegmentSelector.currentSegmentID() == segmentId
    assert ui.segmentEditorWidget.sourceVolumeNode() is p.ctVolume
    assert ui.clinicalLineEdit.text == "hb=118 t_stage=T3"


def test_reload_builds_a_new_panel_that_keeps_the_parameters(harness):
    harness.setup()
    harness.enter()
    ct, dose, segmentation, _ = _load_case(harness)
    _choose_non_default_choices(harness)
    old = harness.reload()
    assert old.Observations == [], "the old panel still observes the scene"
    _assert_choices_kept(harness)
    assert harness.widget._parameterNode.ctVolume is ct
    _assert_editor_node_ok(harness)
    # The old panel's widgets no longer write into the node, the new ones do.
    _choose(old.ui.configComboBox, "paper")
    assert harness.widget._parameterNode.config == "2d"
    _choose(harness.ui.configComboBox, "paper")
    assert harness.widget._parameterNode.config == "paper"
    harness.scene.Clear(0)  # only the new panel reacts; the fixture checks that no slot raised
    _assert_editor_node_ok(harness)


# ---------------------------------------------------------------------------------------------
# what the selectors offer and guess

def test_ct_and_dose_selectors_never_offer_the_picture_or_a_labelmap(harness):
    scene = harness.scene
    picture = _volume(scene, "dose-map picture", cls="vtkMRMLVectorVolumeNode")
    label = _volume(scene, "mask", cls="vtkMRMLLabelMapVolumeNode")
    ct, dose = _volume(scene, "CT"), _volume(scene, "dose", dose=True)
    harness.setup()
    harness.enter()
    ui = harness.ui
    for selector in (ui.ctSelector, ui.doseSelector, ui.alignedDoseSelector):
        listed = selector.nodes()
        assert picture not in listed and label not in listed, selector.objectName
        assert ct in listed and dose in listed
    p = harness.widget._parameterNode
    assert p.ctVolume is not picture and p.doseVolume is not picture
    assert p.doseVolume is dose and p.ctVolume is not dose


def test_loading_ct_and_dose_together_does_not_put_the_ct_in_the_dose_slot(harness):
    harness.setup()
    harness.enter()
    scene = harness.scene
    ct = _volume(scene, "CT")  # the CT arrives first (DICOM loads a study's series one by one)
    _volume(scene, "dose", dose=True)
    p = harness.widget._parameterNode
    assert p.doseVolume is not ct and harness.ui.doseSelector.currentNode() is not ct


def test_alignment_refuses_the_ct_as_the_dose(env, harness):
    from DoseRadiomicsLib.errors import InputError
    ct = _volume(harness.scene, "CT")
    with pytest.raises(InputError, match="the dose and the CT are the same volume"):
        env.module.DoseRadiomicsLogic().alignDose(ct, ct)


# ---------------------------------------------------------------------------------------------
# tables and charts end up in views that exist

def _table(scene, name="features"):
    import vtk
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    column = vtk.vtkDoubleArray()
    column.SetName("value")
    column.InsertNextValue(1.0)
    table.AddColumn(column)
    return table


def _chart(scene, table):
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", "series")
    series.SetAndObserveTableNodeID(table.GetID())
    series.SetXColumnName("value")
    series.SetYColumnName("value")
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", "ROC")
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart


def _shown_tables(scene):
    return [scene.GetNthNodeByClass(i, "vtkMRMLTableViewNode").GetTableNodeID()
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLTableViewNode"))]


def _shown_charts(scene):
    return [scene.GetNthNodeByClass(i, "vtkMRMLPlotViewNode").GetPlotChartNodeID()
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLPlotViewNode"))]


def test_table_and_chart_are_shown_in_a_layout_with_their_views(env, harness):
    import slicer
    harness.setup()
    harness.enter()
    layoutManager = slicer.app.layoutManager()
    layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutConventionalView)  # Slicer's default
    scene = harness.scene
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableViewNode") == 0
    table = _table(scene)
    logic = harness.widget.logic
    logic.showTable(table)
    assert layoutManager.layout == slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView
    assert table.GetID() in _shown_tables(scene)
    # The prediction: its table, then its chart; both views stay in the layout.
    prediction = _table(scene, "prediction")
    chart = _chart(scene, prediction)
    logic.showTable(prediction)
    logic.showChart(chart)
    assert layoutManager.layout == slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView
    assert prediction.GetID() in _shown_tables(scene)
    assert chart.GetID() in _shown_charts(scene)
    assert layoutManager.tableWidget(0).mrmlTableViewNode().GetTableNodeID() == prediction.GetID()


def test_table_in_a_plot_only_layout_goes_to_a_layout_with_both(env, harness):
    import slicer
    harness.setup()
    layoutManager = slicer.app.layoutManager()
    layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutOneUpPlotView)
    table = _table(harness.scene)
    harness.widget.logic.showTable(table)
    assert layoutManager.layout == slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView
    assert table.GetID() in _shown_tables(harness.scene)


# ---------------------------------------------------------------------------------------------
# the background cohort job

PY = sys.executable


def _job(harness, monkeypatch, *scripts):
    commands = [[PY, "-c", s] for s in scripts]
    monkeypatch.setattr(harness.widget.logic, "cohortCommands", lambda manifest, out, options: [list(c) for c in commands])
    harness.ui.cohortRunButton.click()
    return commands


def test_cohort_job_runs_its_commands_in_order_with_progress(env, harness, monkeypatch):
    harness.setup()
    harness.enter()
    _job(harness, monkeypatch, "print('cohort-extract [##--] 1/2', flush=True); print('cohort-extract [####] 2/2')",
         "print('train done')", "print('report written')")
    process = harness.widget._process
    assert process is not None and process.parent() is harness.panel, "the QProcess must be owned by the panel"
    assert qt_fakes.wait_for_processes(env.app)
    for _ in range(5):
        env.app.processEvents()
    log = harness.ui.cohortLog.toPlainText()
    assert log.index("2/2") < log.index("train done") < log.index("report written")
    assert harness.ui.statusLabel.text == "Cohort job finished."
    assert harness.ui.cohortProgressBar.value == 100 and harness.ui.openReportButton.enabled
    assert harness.widget._process is None


def _run_until_idle(env, harness, seconds=30):
    import time
    end = time.monotonic() + seconds
    while harness.widget._process is not None and time.monotonic() < end:
        env.app.processEvents()
        time.sleep(0.01)
    env.app.processEvents()


def test_a_killed_job_is_reported_as_failed(env, harness, monkeypatch, caplog):
    import os
    import signal
    import time
    harness.setup()
    harness.enter()
    _job(harness, monkeypatch, "import time; print('started', flush=True); time.sleep(60)", "print('train')")
    process = harness.widget._process
    end = time.monotonic() + 20
    while "started" not in harness.ui.cohortLog.toPlainText() and time.monotonic() < end:
        env.app.processEvents()
        time.sleep(0.01)
    caplog.set_level(logging.ERROR)
    os.kill(process._popen.pid, signal.SIGKILL)  # killed from outside (OOM killer, kill -9): exit code 0
    _run_until_idle(env, harness)
    status = harness.ui.statusLabel.text
    assert "failed" in status and "crashed or was killed" in status, status
    assert "train" not in harness.ui.cohortLog.toPlainText().split("$")[-1], "the next step must not run"
    assert not harness.ui.openReportButton.enabled
    assert any("failed" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def test_a_job_exiting_with_an_error_code_is_reported_with_it(env, harness, monkeypatch):
    harness.setup()
    harness.enter()
    _job(harness, monkeypatch, "import sys; print('bad manifest'); sys.exit(3)", "print('train')")
    _run_until_idle(env, harness)
    assert "exit code 3" in harness.ui.statusLabel.text
    assert "bad manifest" in harness.ui.cohortLog.toPlainText()
    assert not harness.ui.openReportButton.enabled


def test_a_job_that_cannot_start_is_reported(env, harness, monkeypatch, tmp_path):
    harness.setup()
    harness.enter()
    missing = str(tmp_path / "no-such-PythonSlicer")
    monkeypatch.setattr(harness.widget.logic, "cohortCommands", lambda manifest, out, options: [[missing, "-m", "x"]])
    harness.ui.cohortRunButton.click()
    _run_until_idle(env, harness, seconds=5)
    status = harness.ui.statusLabel.text
    assert "could not be started" in status and missing in status, status
    assert harness.widget._process is None


def test_cancel_stops_the_job_and_says_cancelled(env, harness, monkeypatch):
    import time
    harness.setup()
    harness.enter()
    _job(harness, monkeypatch, "import time; print('started', flush=True); time.sleep(60)", "print('train')")
    end = time.monotonic() + 20
    while "started" not in harness.ui.cohortLog.toPlainText() and time.monotonic() < end:
        env.app.processEvents()
        time.sleep(0.01)
    harness.ui.cohortCancelButton.click()
    _run_until_idle(env, harness)
    assert harness.ui.statusLabel.text == "Cohort job cancelled."
    assert "train" not in harness.ui.cohortLog.toPlainText().split("$")[-1]


def test_reload_during_a_job_kills_it(env, harness, monkeypatch):
    harness.setup()
    harness.enter()
    _job(harness, monkeypatch, "import time; time.sleep(60)")
    process = harness.widget._process
    harness.reload()
    assert process.waitForFinished(10000)
    assert process._popen.returncode < 0


def test_choosing_a_segmentation_in_python_selects_its_first_segment_everywhere(harness):
    harness.setup()
    harness.enter()
    segmentation, segmentId = _segmentation(harness.scene)
    p = harness.widget._parameterNode
    p.gtvSegmentation = segmentation
    assert harness.ui.gtvSegmentSelector.currentSegmentID() == segmentId == p.gtvSegmentId


# ---------------------------------------------------------------------------------------------
# the whole single-patient workflow through the panel's buttons (one flavour: it extracts features)

def test_buttons_from_sample_case_to_prediction_show_tables_and_chart(env_newest, harness_newest):
    import slicer
    env, harness = env_newest, harness_newest
    harness.setup()
    harness.enter()
    ui, scene = harness.ui, harness.scene
    slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutConventionalView)
    ui.loadSampleButton.click()
    p = harness.widget._parameterNode
    assert p.ctVolume is not None and p.doseVolume is not None and p.gtvSegmentId
    assert ui.ctSelector.currentNode() is p.ctVolume and ui.doseSelector.currentNode() is p.doseVolume
    assert ui.segmentEditorWidget.sourceVolumeNode() is p.ctVolume
    for button in (ui.alignButton, ui.largestSliceButton, ui.makeRoisButton, ui.extractButton):
        button.click()
        assert not qt_fakes.SLOT_ERRORS, f"{button.objectName}: " + qt_fakes.SLOT_ERRORS[-1][1]
    assert p.alignedDose is not None and p.roiSegmentation is not None and p.featureTable is not None
    assert "features extracted" in ui.statusLabel.text
    unstable = harness.widget.logic.unstableFeatures(p.featureTable)    # the screen's count, as shown
    assert unstable and f"; {len(unstable)} numerically unstable" in ui.statusLabel.text, ui.statusLabel.text
    assert p.featureTable.GetID() in _shown_tables(scene)
    ui.modelPathLineEdit.currentPath = str(harness.widget.logic.demoModelPath())
    ui.clinicalLineEdit.text = env.module.ILLUSTRATIVE_CLINICAL_VALUES
    ui.predictButton.click()
    assert "risk group" in ui.predictionLabel.text, ui.predictionLabel.text
    prediction = scene.GetFirstNodeByName("DoseRadiomics prediction")
    assert prediction.GetID() in _shown_tables(scene)
    assert any(scene.GetNodeByID(c).GetName().startswith("ROC") for c in _shown_charts(scene) if c)
    assert slicer.app.layoutManager().layout == slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView


def test_a_dicom_loaded_study_fills_ct_dose_and_gtv_segment_on_enter(harness):
    """A study loaded by the DICOM module (as SlicerRT puts it in the subject hierarchy) before the
    panel is opened: entering offers its CT, dose, RTSTRUCT and GTV segment, never the picture."""
    import numpy as np
    import SimpleITK as sitk
    import slicer

    import dicom_study_scene as dss
    from DoseRadiomicsLib import mrml_bridge

    scene = harness.scene
    picture = mrml_bridge.picture_volume_node(np.zeros((20, 30, 3)), "dose-map picture")  # first volume
    study = dss.Study("PAT-W", "Patient^W", "1.2.826.0.1.3680043.10.543.7", "1.2.826.0.1.3680043.10.543.7.9")
    series = study.study_uid + ".3"
    ct = slicer.util.addVolumeFromArray(np.full((6, 24, 24), -800, np.int16), name="W CT")
    dss.add_ct_series(ct, study, series, [series + ".1"])
    dose = dss.add_rtdose(np.full((6, 24, 24), 60.0), ct, study, study.study_uid + ".5", study.study_uid + ".5.1",
                          dose_units="GY", name="W RTDOSE")
    mask = sitk.Image(24, 24, 6, sitk.sitkUInt8)
    mask[10:14, 10:14, 2:4] = 1
    mask.CopyInformation(mrml_bridge.image_from_volume_node(ct))
    other = sitk.Image(mask)
    other[4:8, 4:8, 2:4] = 1
    rtstruct = dss.add_rtstruct([("BODY", other), ("GTV", mask)], ct, study, study.study_uid + ".4",
                                study.study_uid + ".4.1", referenced_series_uid=series, name="W RTSTRUCT")
    harness.setup()
    harness.enter()
    p = harness.widget._parameterNode
    assert p.ctVolume is ct and p.doseVolume is dose and p.gtvSegmentation is rtstruct
    assert rtstruct.GetSegmentation().GetSegment(p.gtvSegmentId).GetName() == "GTV"
    assert picture not in (p.ctVolume, p.doseVolume)
    assert harness.ui.ctSelector.currentNode() is ct and harness.ui.doseSelector.currentNode() is dose
