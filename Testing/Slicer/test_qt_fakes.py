"""The Qt/CTK/qMRML fakes on their own: each test states a documented behaviour of the original class
(Qt reference documentation, PythonQt, Slicer's qMRMLNodeComboBox.cxx) and checks the fake has it,
with no DoseRadiomics code involved. The widget tests rely on exactly these behaviours."""

from __future__ import annotations

import sys

import pytest

import qt_fakes
import widget_harness
from conftest import _make_slicer_session
from qt_fakes import (QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QObject, QProcess, QProgressBar,
                      QPushButton, Signal, qMRMLNodeComboBox, qMRMLSegmentSelectorWidget)


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, *args):
        self.calls.append(args)


@pytest.fixture(autouse=True)
def no_leftovers():
    qt_fakes.SLOT_ERRORS.clear()
    qt_fakes.EVENT_QUEUE.clear()
    yield
    qt_fakes.SLOT_ERRORS.clear()


# --- QComboBox (Qt docs: currentIndexChanged "is sent whenever the currentIndex in the combobox
# changes either through user interaction or programmatically") ---

def test_combo_box_first_item_becomes_current_and_is_announced():
    box, rec = QComboBox(), Recorder()
    box.connect("currentIndexChanged(int)", rec)
    box.addItem("a")
    assert rec.calls == [(0,)] and box.currentText == "a"
    box.addItem("b")  # not the first item: the current one does not change
    assert rec.calls == [(0,)]


def test_combo_box_clear_announces_index_minus_one():
    box, rec = QComboBox(), Recorder()
    box.addItems(["a", "b"])
    box.currentIndex = 1
    box.currentIndexChanged.connect(rec)
    box.clear()
    assert rec.calls == [(-1,)] and box.currentText == "" and box.count() == 0
    box.clear()  # already empty: no change, no signal
    assert rec.calls == [(-1,)]


def test_combo_box_set_current_index_emits_only_on_a_change():
    box, rec = QComboBox(), Recorder()
    box.addItems(["a", "b"])
    box.currentIndexChanged.connect(rec)
    box.currentIndex = 0
    box.currentIndex = 1
    box.currentIndex = 1
    assert rec.calls == [(1,)]


# --- other widgets ---

def test_line_edit_text_changed_also_for_programmatic_changes():
    edit, rec = QLineEdit(), Recorder()
    edit.connect("textChanged(QString)", rec)
    edit.text = "50"
    edit.text = "50"
    assert rec.calls == [("50",)]


def test_settings_contains_only_keys_that_were_set():
    # QSettings::contains(key): true if a setting called key exists (slicer.util.settingsValue relies on it).
    settings = qt_fakes.QSettings()
    key = "DoseRadiomicsTest/neverSet"
    assert not settings.contains(key) and settings.value(key, 7) == 7
    settings.setValue(key, 3)
    try:
        assert qt_fakes.QSettings().contains(key) and qt_fakes.QSettings().value(key) == 3  # persistent store
    finally:
        qt_fakes.QSettings._store.pop(key, None)


def test_check_box_state_changed_and_toggled():
    box, state, toggled = QCheckBox(), Recorder(), Recorder()
    box.stateChanged.connect(state)
    box.toggled.connect(toggled)
    box.checked = True
    box.checked = True
    box.checked = False
    assert state.calls == [(2,), (0,)] and toggled.calls == [(True,), (False,)]


def test_double_spin_box_clamps_and_rounds():
    spin, rec = QDoubleSpinBox(), Recorder()
    spin.valueChanged.connect(rec)
    spin.minimum, spin.maximum = 0.0, 10.0
    spin.value = 12.345
    assert spin.value == 10.0
    spin.value = 3.14159
    assert spin.value == 3.14  # decimals defaults to 2
    spin.value = 3.141
    assert rec.calls == [(10.0,), (3.14,)]


def test_progress_bar_ignores_values_outside_its_range():
    bar = QProgressBar()
    bar.value = 40
    bar.value = 140
    assert bar.value == 40


def test_disabled_button_click_does_nothing():
    button, rec = QPushButton(), Recorder()
    button.connect("clicked(bool)", rec)
    button.enabled = False
    button.click()
    button.enabled = True
    button.click()
    assert rec.calls == [(False,)]


# --- PythonQt signal conventions ---

class Emitter(QObject):
    changed = Signal("changed(int,QString)")


def test_slot_receives_as_many_arguments_as_it_accepts():
    got = []
    e = Emitter()
    e.connect("changed(int, QString)", lambda: got.append("none"))
    e.connect("changed(int,QString)", lambda a: got.append(a))
    e.changed.connect(lambda a, b: got.append((a, b)))
    e.changed.emit(1, "x")
    assert got == ["none", 1, (1, "x")]


def test_unknown_signal_is_not_connected_and_is_recorded():
    assert Emitter().connect("changed(double)", lambda: None) is False
    assert qt_fakes.SLOT_ERRORS and "changed(double)" in qt_fakes.SLOT_ERRORS[0][0]


def test_an_exception_in_a_slot_is_recorded_and_the_other_slots_still_run():
    got = []
    e = Emitter()
    e.changed.connect(lambda a: 1 / 0)
    e.changed.connect(lambda a: got.append(a))
    e.changed.emit(7, "")
    assert got == [7]
    assert "ZeroDivisionError" in qt_fakes.SLOT_ERRORS[0][1]


def test_blocked_signals_are_not_emitted_and_disconnect_removes_a_slot():
    rec = Recorder()
    e = Emitter()
    e.changed.connect(rec)
    e.blockSignals(True)
    e.changed.emit(1, "")
    e.blockSignals(False)
    e.changed.disconnect(rec)
    e.changed.emit(2, "")
    assert rec.calls == []
    with pytest.raises(RuntimeError):
        e.changed.disconnect(rec)  # PythonQt: disconnecting what is not connected fails


# --- qMRMLNodeComboBox on the real scene ---

@pytest.fixture
def scene(monkeypatch):
    return widget_harness.install(monkeypatch, _make_slicer_session).scene


def _combo(scene, **props):
    combo = qMRMLNodeComboBox()
    combo.nodeTypes = ["vtkMRMLScalarVolumeNode"]
    for k, v in props.items():
        setattr(combo, k, v)
    combo.setMRMLScene(scene)
    return combo


def test_node_combo_box_without_none_selects_the_first_node_added(scene):
    combo, rec = _combo(scene, noneEnabled=False), Recorder()
    combo.currentNodeChanged.connect(rec)
    a = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "a")
    scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "b")
    assert combo.currentNode() is a and rec.calls == [(a,)]


def test_node_combo_box_with_none_keeps_none(scene):
    combo = _combo(scene, noneEnabled=True)
    scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "a")
    assert combo.currentNode() is None


def test_node_combo_box_filters(scene):
    scalar = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ct")
    vector = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "picture")
    label = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "label")
    assert _combo(scene).nodes() == [scalar, vector, label]  # subclasses shown by default
    assert _combo(scene, showChildNodeTypes=False).nodes() == [scalar]
    assert _combo(scene, hideChildNodeTypes=["vtkMRMLVectorVolumeNode"]).nodes() == [scalar, label]
    scalar.SetAttribute("Kind", "CT")
    combo = _combo(scene)
    combo.addAttribute("vtkMRMLScalarVolumeNode", "Kind", "CT")
    assert combo.nodes() == [scalar]


def test_node_combo_box_removal_of_the_current_node_and_scene_close(scene):
    a = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "a")
    b = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "b")
    combo, rec = _combo(scene, noneEnabled=True), Recorder()
    combo.setCurrentNode(a)
    combo.currentNodeChanged.connect(rec)
    scene.RemoveNode(a)  # the row at its place (b) becomes current, and it is announced
    assert combo.currentNode() is b and rec.calls == [(b,)]
    scene.Clear(0)
    assert combo.currentNode() is None and rec.calls[-1] == (None,)


def test_node_combo_box_set_current_node_of_an_unlisted_node_selects_none(scene):
    a = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "a")
    other = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    combo = _combo(scene, noneEnabled=True)
    combo.setCurrentNode(a)
    combo.setCurrentNode(other)
    assert combo.currentNode() is None


def test_segment_selector_selects_the_first_segment_of_a_new_node(scene):
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    first = seg.GetSegmentation().AddEmptySegment("GTV", "GTV")
    seg.GetSegmentation().AddEmptySegment("CTV", "CTV")
    selector, rec = qMRMLSegmentSelectorWidget(), Recorder()
    selector.noneEnabled = True
    selector.setMRMLScene(scene)
    selector.currentSegmentChanged.connect(rec)
    selector.setCurrentNode(seg)
    assert selector.currentSegmentID() == first and rec.calls == [(first,)]
    selector.setCurrentSegmentID("CTV")
    assert selector.currentSegmentID() == "CTV"


# --- QProcess: a real process, signals from the event loop ---

@pytest.fixture
def app(monkeypatch):
    return widget_harness.install(monkeypatch, _make_slicer_session).app


def _run(app, program, args):
    process, finished, errors = QProcess(), Recorder(), Recorder()
    process.setProcessChannelMode(QProcess.MergedChannels)
    process.connect("finished(int,QProcess::ExitStatus)", finished)
    process.connect("errorOccurred(QProcess::ProcessError)", errors)
    out = []
    process.connect("readyReadStandardOutput()", lambda: out.append(process.readAllStandardOutput().data()))
    process.start(program, args)
    return process, finished, errors, out


def test_process_output_and_exit_code(app):
    process, finished, errors, out = _run(app, sys.executable, ["-c", "print('hello'); raise SystemExit(4)"])
    assert qt_fakes.wait_for_processes(app)
    assert b"".join(out).strip() == b"hello"
    assert finished.calls == [(4, QProcess.NormalExit)] and errors.calls == []


def test_killed_process_finishes_with_crash_exit(app):
    process, finished, errors, _ = _run(app, sys.executable, ["-c", "import time; time.sleep(60)"])
    process.kill()
    assert qt_fakes.wait_for_processes(app)
    assert finished.calls == [(0, QProcess.CrashExit)]
    assert errors.calls == [(QProcess.Crashed,)]


def test_program_that_cannot_start_reports_failed_to_start_and_never_finishes(app, tmp_path):
    process, finished, errors, _ = _run(app, str(tmp_path / "missing"), [])
    app.processEvents()
    assert errors.calls == [(QProcess.FailedToStart,)] and finished.calls == []
    assert process.state() == QProcess.NotRunning


# --- QUiLoader on the module's real .ui, the layout manager on the real layout logic ---

def test_ui_loader_builds_the_real_ui(monkeypatch):
    import xml.etree.ElementTree as ET
    import slicer
    from conftest import MODULE_DIR
    env = widget_harness.install(monkeypatch, _make_slicer_session)
    path = MODULE_DIR / "Resources" / "UI" / "DoseRadiomics.ui"
    top = slicer.util.loadUI(str(path))
    ui = slicer.util.childWidgetVariables(top)
    names = {w.get("name"): w.get("class") for w in ET.parse(path).getroot().iter("widget")}
    assert {n: type(getattr(ui, n)).__name__ for n in names} == names
    assert [ui.configComboBox.itemText(i) for i in range(ui.configComboBox.count())] == ["paper", "2d"]
    assert ui.ctSelector.property("SlicerParameterName") == "ctVolume"
    assert ui.ctSelector.nodeTypes == ["vtkMRMLScalarVolumeNode"]
    top.setMRMLScene(env.scene)  # the .ui's connections hand the scene to every MRML widget
    assert ui.ctSelector.mrmlScene() is env.scene and ui.segmentEditorWidget.mrmlScene() is env.scene


def test_layout_manager_creates_the_views_of_the_layout(monkeypatch):
    import slicer
    env = widget_harness.install(monkeypatch, _make_slicer_session)
    lm = env.app.layoutManager()
    lm.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutConventionalView)
    assert lm.tableViewCount() == 0 and lm.tableWidget(0) is None
    lm.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView)
    assert lm.layout == slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView
    assert lm.tableWidget(0).mrmlTableViewNode().IsA("vtkMRMLTableViewNode")
    assert lm.plotWidget(0).mrmlPlotViewNode().IsA("vtkMRMLPlotViewNode")
