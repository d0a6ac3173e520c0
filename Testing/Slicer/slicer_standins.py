"""Stand-ins for the parts of Slicer's Python that the ``slicer-core`` wheel does not ship.

Only what is absent is provided, and only as far as DoseRadiomics.py uses it (the widget's parts need
the Qt fakes of qt_fakes.py):
``slicer.ScriptedLoadableModule`` (the four base classes), ``slicer.parameterNodeWrapper``
(the decorator and the two validators the module uses), ``slicer.i18n`` (identity translation).
MRML itself (scene, nodes, module logics) is never faked: the fixtures use the real one.
Upstream: Base/Python/slicer/ScriptedLoadableModule.py, parameterNodeWrapper/, i18n.py in Slicer.
"""

from __future__ import annotations

import logging
import os
import pathlib
import sys
import types
import typing
import unittest


def _make_scripted_loadable_module():
    import slicer

    mod = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent
            self.moduleName = self.__class__.__name__
            parent.title = ""
            parent.categories = []
            parent.dependencies = []
            parent.contributors = []
            parent.helpText = ""
            parent.acknowledgementText = ""

        def resourcePath(self, filename):
            return os.path.join(os.path.dirname(self.parent.path), "Resources", filename)

        def runTest(self, msec=100, **kwargs):
            import importlib
            module = importlib.import_module(self.__module__)
            testCase = getattr(module, self.moduleName + "Test")()
            testCase.messageDelay = msec
            testCase.runTest(**kwargs)

    class ScriptedLoadableModuleWidget:
        """Upstream's (v5.8.0 = v5.12.3 for what is used here): needs ``qt`` and ``slicer.app`` (the Qt
        fakes of qt_fakes.py in the widget tests). The developer section is off, as for users."""

        def __init__(self, parent=None):
            import qt
            super().__init__()
            self.moduleName = self.__class__.__name__
            if self.moduleName.endswith("Widget"):
                self.moduleName = self.moduleName[:-6]
            self.developerMode = False
            if not parent:
                self.parent = slicer.qMRMLWidget()
                self.parent.setLayout(qt.QVBoxLayout())
                self.parent.setMRMLScene(slicer.mrmlScene)
            else:
                self.parent = parent
            self.layout = self.parent.layout()
            if not parent:
                self.setup()
                self.parent.show()
            slicer.app.moduleManager().connect("moduleAboutToBeUnloaded(QString)", self._onModuleAboutToBeUnloaded)

        def resourcePath(self, filename):
            module = sys.modules[type(self).__module__]
            return os.path.join(os.path.dirname(module.__file__), "Resources", filename)

        def setup(self):
            pass

        def cleanup(self):
            pass

        def _onModuleAboutToBeUnloaded(self, moduleName):
            if moduleName == self.moduleName:
                self.cleanup()
                slicer.app.moduleManager().disconnect("moduleAboutToBeUnloaded(QString)",
                                                      self._onModuleAboutToBeUnloaded)

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            self.moduleName = self.__class__.__name__
            if self.moduleName.endswith("Logic"):
                self.moduleName = self.moduleName[:-5]
            self.isSingletonParameterNode = True

        def getParameterNode(self):
            scene = slicer.mrmlScene
            node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if node is None:
                node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
                node.UnRegister(None)
                node.SetSingletonTag(self.moduleName)
                node.SetAttribute("ModuleName", self.moduleName)
                node.SetName(scene.GenerateUniqueName(self.moduleName))
                node = scene.AddNode(node)
            return node

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.messages = []

        def delayDisplay(self, message, requestedDelay=None, msec=None):
            self.messages.append(message)
            logging.info(message)

    mod.ScriptedLoadableModule = ScriptedLoadableModule
    mod.ScriptedLoadableModuleWidget = ScriptedLoadableModuleWidget
    mod.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    mod.ScriptedLoadableModuleTest = ScriptedLoadableModuleTest
    mod.__all__ = ["ScriptedLoadableModule", "ScriptedLoadableModuleWidget",
                   "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleTest"]
    return mod


def _make_parameter_node_wrapper():
    """Typed properties over a vtkMRMLScriptedModuleNode: node references for MRML types,
    text parameters for str/float/int/bool/Path, as the real wrapper stores them."""
    import slicer

    mod = types.ModuleType("slicer.parameterNodeWrapper")

    class WithinRange:
        def __init__(self, minimum, maximum):
            self.minimum, self.maximum = minimum, maximum

        def validate(self, value):
            if not self.minimum <= value <= self.maximum:
                raise ValueError(f"{value} not in [{self.minimum}, {self.maximum}]")

    class Choice:
        def __init__(self, choices):
            self.choices = list(choices)

        def validate(self, value):
            if value not in self.choices:
                raise ValueError(f"{value!r} not one of {self.choices}")

    def _property(name, hint, default):
        validators = []
        if typing.get_origin(hint) is typing.Annotated:
            hint, *extras = typing.get_args(hint)
            validators = [e for e in extras if hasattr(e, "validate")]
        is_node = isinstance(hint, type) and hint.__name__.startswith("vtkMRML")

        def getter(self):
            node = self.parameterNode
            if is_node:
                return node.GetNodeReference(name)
            text = node.GetParameter(name)
            if text == "":
                # upstream's Path serializer defaults to Path() ("."), not None
                return pathlib.Path() if default is None and hint is pathlib.Path else default
            if hint is bool:
                return text == "True"
            if hint in (int, float):
                return hint(text)
            if hint is pathlib.Path:
                return pathlib.Path(text)
            return text

        def setter(self, value):
            node = self.parameterNode
            if is_node:
                node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
                return
            for v in validators:
                v.validate(value)
            node.SetParameter(name, str(value))

        return property(getter, setter)

    def parameterNodeWrapper(cls):
        hints = typing.get_type_hints(cls, include_extras=True)

        def __init__(self, parameterNode):
            self.parameterNode = parameterNode
            self._parameterGUIs = {}
            self._nextParameterGUIsTag = 0
            if CONNECT_GUI_FLAVOUR != "5.8":  # v5.12.0 on: wrapper.py's __init__ creates it
                self._guiVtkObserverTags = {}
            self._updatingGUIFromParameterNode = False
            for name, hint in hints.items():  # write defaults once, as the real wrapper does
                base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
                if (not (isinstance(base, type) and base.__name__.startswith("vtkMRML"))
                        and not parameterNode.GetParameter(name) and name in cls.__dict__):
                    parameterNode.SetParameter(name, str(cls.__dict__[name]))

        attrs = {"__init__": __init__, "__doc__": cls.__doc__, "allParameters": dict(hints)}
        for name, hint in hints.items():
            default = cls.__dict__.get(name)
            attrs[name] = _property(name, hint, default)
        attrs.update(_gui_methods(hints))
        return type(cls.__name__, (), attrs)

    mod.parameterNodeWrapper = parameterNodeWrapper
    mod.WithinRange = WithinRange
    mod.Choice = Choice
    return mod


# Which flavour of connectGui the stand-in wrapper has (set by the widget tests):
# "5.8"  - Slicer v5.8.0/v5.8.1 wrapper.py: _connectGui drops the tag (returns None) and disconnectGui
#          leaves the ModifiedEvent observer on the node;
# "5.12" - v5.12.0 on (v5.12.3, main): connectGui returns the tag and disconnectGui removes the observer
#          too. (v5.10.0 is in between: it returns the tag but leaves the observer, like 5.8.)
CONNECT_GUI_FLAVOUR = "5.12"


def _gui_methods(hints) -> dict:
    """connectGui, connectParametersToGui, disconnectGui and friends, as upstream wrapper.py writes them."""
    import vtk
    import slicer

    def getValue(self, name):
        return getattr(self, name)

    def setValue(self, name, value):
        setattr(self, name, value)

    def dataType(self, name):
        return hints[name]

    def updateGui(self):
        if self._updatingGUIFromParameterNode:
            return
        try:
            self._updatingGUIFromParameterNode = True
            with slicer.util.NodeModify(self):
                for mapping in self._parameterGUIs.values():
                    for name, connector in mapping.items():
                        connector.write(self.getValue(name))
        finally:
            self._updatingGUIFromParameterNode = False

    def makeCallback(self, name, connector):
        def callback():
            with slicer.util.NodeModify(self):
                if not self._updatingGUIFromParameterNode:
                    self.setValue(name, connector.read())
        return callback

    def connectParametersToGui(self, mapping):
        for name in mapping:
            if name not in hints:
                raise ValueError(f"Cannot find a param with the given name: {name}")
        connectors = {name: create_gui_connector(widget, hints[name]) for name, widget in mapping.items()}
        tag = self._nextParameterGUIsTag
        self._nextParameterGUIsTag += 1
        self._parameterGUIs[tag] = connectors
        for name, connector in connectors.items():
            connector.write(self.getValue(name))
            connector.onChanged(makeCallback(self, name, connector))
        observer = self.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event: updateGui(self))
        if CONNECT_GUI_FLAVOUR != "5.8":
            self._guiVtkObserverTags[tag] = observer
        return tag

    def connectGui(self, gui):
        mapping = {}
        if getattr(gui, "isWidgetType", lambda: False)():
            import qt
            widgets = gui.findChildren(qt.QWidget)
        else:
            widgets = gui.__dict__.values()
        for widget in widgets:
            if widget.property("SlicerParameterName"):
                mapping[widget.property("SlicerParameterName")] = widget
        tag = connectParametersToGui(self, mapping)
        return None if CONNECT_GUI_FLAVOUR == "5.8" else tag

    def disconnectGui(self, guiTag):
        if guiTag in self._parameterGUIs:
            for connector in self._parameterGUIs[guiTag].values():
                connector.onChanged(None)
            del self._parameterGUIs[guiTag]
        if guiTag in getattr(self, "_guiVtkObserverTags", {}):
            self.RemoveObserver(self._guiVtkObserverTags[guiTag])
            del self._guiVtkObserverTags[guiTag]

    return {
        "getValue": getValue, "setValue": setValue, "dataType": dataType,
        "connectGui": connectGui, "connectParametersToGui": connectParametersToGui,
        "disconnectGui": disconnectGui,
        "StartModify": lambda self: self.parameterNode.StartModify(),
        "EndModify": lambda self, wasModified: self.parameterNode.EndModify(wasModified),
        "AddObserver": lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(event, callback, priority),
        "RemoveObserver": lambda self, tag: self.parameterNode.RemoveObserver(tag),
        "Modified": lambda self: self.parameterNode.Modified(),
    }


def create_gui_connector(widget, hint):
    """The connectors of upstream guiConnectors.py (v5.8.0 = v5.12.3 for these widget types), same
    widget-type tests (exact types), same constructor side effects (QComboBox cleared and refilled with
    the Choice items; qMRMLNodeComboBox nodeTypes set from the parameter type; ranges set)."""
    import ctk
    import qt
    import slicer

    base, annotations = hint, ()
    if typing.get_origin(hint) is typing.Annotated:
        base, *annotations = typing.get_args(hint)
    kind = type(widget)

    def find(cls_name):
        return next((a for a in annotations if type(a).__name__ == cls_name), None)

    class Connector:
        signal = None

        def __init__(self):
            self._callback = None

        def onChanged(self, callback):
            self._callback = callback
            bound = getattr(widget, self.signal)
            if callback is None:
                bound.disconnect(self.changed)
            else:
                bound.connect(self.changed)

        def changed(self):
            if self._callback:
                self._callback()

    if base is bool and kind in (qt.QCheckBox, ctk.ctkCheckBox):
        class C(Connector):
            signal = "stateChanged"
            read = staticmethod(lambda: widget.checked)
            write = staticmethod(lambda v: setattr(widget, "checked", v))
        return C()
    if base is float and kind in (qt.QDoubleSpinBox, ctk.ctkSliderWidget):
        withinRange = find("WithinRange")
        if kind is ctk.ctkSliderWidget and withinRange is None:
            raise RuntimeError("Cannot have a connection to ctkSliderWidget where the float types is unbounded.")
        if withinRange is not None:
            widget.minimum, widget.maximum = withinRange.minimum, withinRange.maximum
        else:
            widget.minimum, widget.maximum = float("-inf"), float("inf")

        class C(Connector):
            signal = "valueChanged"
            read = staticmethod(lambda: widget.value)
            write = staticmethod(lambda v: setattr(widget, "value", v))
        return C()
    if kind in (qt.QComboBox, ctk.ctkComboBox) and base in (int, float, str, bool):
        choice = find("Choice")
        if choice is None:
            raise RuntimeError("ComboBoxToStringableConnector requires the Choice annotation to be used.")
        choices = choice.choices
        widget.clear()
        for c in choices:
            widget.addItem(str(c))

        class C(Connector):
            signal = "currentIndexChanged"

            @staticmethod
            def read():
                return choices[widget.currentIndex]  # index -1 reads the last choice, as upstream

            @staticmethod
            def write(value):
                for index, c in enumerate(choices):
                    if c == value:
                        widget.currentIndex = index
                        break
                else:
                    raise ValueError(f"Unable to find value {value} in choices {choices}")
        return C()
    if base is str and kind is qt.QLineEdit:
        class C(Connector):
            signal = "textChanged"
            read = staticmethod(lambda: widget.text)
            write = staticmethod(lambda v: setattr(widget, "text", v))
        return C()
    if base is pathlib.Path and kind is ctk.ctkPathLineEdit:
        class C(Connector):
            signal = "currentPathChanged"
            read = staticmethod(lambda: pathlib.Path(widget.currentPath))
            write = staticmethod(lambda v: setattr(widget, "currentPath", str(v)))
        return C()
    if isinstance(base, type) and base.__name__.startswith("vtkMRML") and kind is slicer.qMRMLNodeComboBox:
        widget.nodeTypes = [base.__name__]

        class C(Connector):
            signal = "currentNodeChanged"
            read = staticmethod(lambda: widget.currentNode())
            write = staticmethod(lambda v: widget.setCurrentNode(v))
        return C()
    raise RuntimeError(f"Unable to create GUI connector from datatype '{hint}' to widget type '{kind}'.")


def _make_i18n():
    mod = types.ModuleType("slicer.i18n")
    mod.tr = lambda text: text
    mod.translate = lambda context, text: text
    return mod


def install() -> None:
    """Register the stand-ins as submodules of the real ``slicer`` package (idempotent)."""
    import slicer

    for name, factory in (("i18n", _make_i18n), ("ScriptedLoadableModule", _make_scripted_loadable_module),
                          ("parameterNodeWrapper", _make_parameter_node_wrapper)):
        full = f"slicer.{name}"
        if full not in sys.modules:
            sys.modules[full] = factory()
            setattr(slicer, name, sys.modules[full])
