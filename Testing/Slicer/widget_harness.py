"""Runs DoseRadiomicsWidget headless: the Qt/CTK/qMRML fakes of qt_fakes.py, the real MRML scene.

What Slicer's application does around a scripted module panel is done here the same way: the panel
(a qSlicerScriptedLoadableModuleWidget, here a qMRMLWidget with ``isEntered``) owns the layout the
Python widget fills; ``enter``/``exit`` set isEntered as qSlicerAbstractModuleWidget does and call the
widget's; Reload (slicer.util.reloadScriptedModule) calls cleanup(), empties the panel, builds a new
widget instance on the same panel, runs setup() and, when the module is shown, enter().
"""

from __future__ import annotations

import sys
import types

import qt_fakes


class Harness:
    def __init__(self, module, scene):
        self.module = module
        self.scene = scene
        import qt
        import slicer
        self.panel = slicer.qMRMLWidget()
        self.panel.isEntered = False
        self.panel.setLayout(qt.QVBoxLayout())
        self.panel.setMRMLScene(scene)
        self.widget = None

    def setup(self):
        self.widget = self.module.DoseRadiomicsWidget(self.panel)
        self.widget.setup()
        return self.widget

    def enter(self):
        self.panel.isEntered = True
        self.widget.enter()

    def exit(self):
        self.widget.exit()
        self.panel.isEntered = False

    def reload(self):
        import slicer
        slicer.app.moduleManager().moduleAboutToBeUnloaded.emit("DoseRadiomics")  # -> cleanup()
        for child in self.panel.children():
            child.setParent(None)
            _destroy(child)
        self.panel.layout().items.clear()
        old = self.widget
        self.setup()
        if self.panel.isEntered:
            self.widget.enter()
        return old

    @property
    def ui(self):
        return self.widget.ui

    def close(self):
        """End of the test: what the application's exit does (cleanup, widgets destroyed)."""
        if self.widget is not None and hasattr(self.widget, "ui"):
            self.widget.cleanup()
        for child in self.panel.children():
            _destroy(child)
        self.panel.setMRMLScene(None)


def _destroy(widget):
    """A destroyed qMRML widget observes no scene any more (the C++ destructors do this)."""
    if hasattr(widget, "setMRMLScene"):
        widget.setMRMLScene(None)


def install(monkeypatch, make_session):
    """Fresh scene and logics (conftest's _make_slicer_session), a layout logic, the fakes as qt/ctk,
    qMRML classes on ``slicer``, ``slicer.app``. Everything is put back by monkeypatch afterwards."""
    import slicer

    for name in ("mrmlScene", "modules", "app"):
        monkeypatch.setattr(slicer, name, getattr(slicer, name, None), raising=False)
    session = make_session()
    layoutLogic = slicer.vtkMRMLLayoutLogic()
    layoutLogic.SetMRMLScene(session.scene)
    qt, ctk, qmrml = qt_fakes.make_qt_modules()
    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.setitem(sys.modules, "ctk", ctk)
    for name, cls in qmrml.items():
        monkeypatch.setattr(slicer, name, cls, raising=False)
    app = qt_fakes.FakeApp(session.app_logic, layoutLogic)
    monkeypatch.setattr(slicer, "app", app, raising=False)
    # DoseRadiomics.py bound qt/ctk at import (None without Qt); the panel code reads the module globals.
    module = sys.modules.get("DoseRadiomics")
    if module is not None:
        monkeypatch.setattr(module, "qt", qt)
        monkeypatch.setattr(module, "ctk", ctk)
    qt_fakes.SLOT_ERRORS.clear()
    qt_fakes.EVENT_QUEUE.clear()
    return types.SimpleNamespace(session=session, scene=session.scene, app=app, layoutLogic=layoutLogic,
                                 qt=qt, ctk=ctk, module=module)
