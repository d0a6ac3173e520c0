"""Stand-ins for the parts of Slicer's Python that the ``slicer-core`` wheel does not ship.

Only what is absent is provided, and only as far as DoseRadiomics.py uses it:
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

    class ScriptedLoadableModuleWidget:  # never instantiated headless
        def __init__(self, parent=None):
            self.parent = parent

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
                return default
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
            for name, hint in hints.items():  # write defaults once, as the real wrapper does
                base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
                if (not (isinstance(base, type) and base.__name__.startswith("vtkMRML"))
                        and not parameterNode.GetParameter(name) and name in cls.__dict__):
                    parameterNode.SetParameter(name, str(cls.__dict__[name]))

        attrs = {"__init__": __init__, "__doc__": cls.__doc__}
        for name, hint in hints.items():
            default = cls.__dict__.get(name)
            attrs[name] = _property(name, hint, default)
        return type(cls.__name__, (), attrs)

    mod.parameterNodeWrapper = parameterNodeWrapper
    mod.WithinRange = WithinRange
    mod.Choice = Choice
    return mod


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
