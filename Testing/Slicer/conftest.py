"""Real Slicer MRML without the application, for the module's Logic and Test.

One scene per test session (importing slicer costs ~2 s): an application logic, the Colors logic
with its default colour nodes, and the module logics Slicer would register, given the scene and
reachable both by name from the application logic and through ``slicer.modules.<name>.logic()``.
Between tests the scene is cleared. The stand-ins in ``slicer_standins`` cover only the pure-Python
parts of Slicer that the wheel lacks (ScriptedLoadableModule, parameterNodeWrapper, i18n).
"""

from __future__ import annotations

import sys
import tempfile
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "DoseRadiomics"
HERE = Path(__file__).resolve().parent

for p in (str(REPO), str(MODULE_DIR), str(HERE), str(REPO / "Testing" / "Python")):   # test support modules
    if p not in sys.path:
        sys.path.insert(0, p)


def _make_slicer_session():
    import slicer

    import slicer_standins

    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    # The Colors logic looks for optional colour files under the home directory; there are none.
    home = tempfile.mkdtemp(prefix="doseradiomics-slicer-home-")
    (Path(home) / "share" / "ColorFiles").mkdir(parents=True)
    app_logic.SetHomeDirectory(home)
    app_logic.SetShareDirectory("share")

    colors = slicer.vtkSlicerColorLogic()
    colors.SetMRMLApplicationLogic(app_logic)
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    app_logic.SetModuleLogic("Colors", colors)

    logics = {"colors": colors}
    for name, cls in (("Volumes", slicer.vtkSlicerVolumesLogic),
                      ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
                      ("Tables", slicer.vtkSlicerTablesLogic),
                      ("Plots", slicer.vtkSlicerPlotsLogic),
                      ("Transforms", slicer.vtkSlicerTransformLogic),
                      ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic)):
        logic = cls()
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        app_logic.SetModuleLogic(name, logic)
        logics[name.lower()] = logic

    slicer.mrmlScene = scene
    # What slicer.util reaches through slicer.modules.<name>.logic() in the application.
    slicer.modules = types.SimpleNamespace(**{
        name: types.SimpleNamespace(logic=(lambda lg=lg: lg)) for name, lg in logics.items()})
    slicer_standins.install()
    return types.SimpleNamespace(scene=scene, app_logic=app_logic, logics=logics)


@pytest.fixture(scope="session")
def slicer_session():
    """The process-wide scene and logics (created once)."""
    return _make_slicer_session()


@pytest.fixture
def scene(slicer_session):
    """The shared scene, emptied after the test."""
    yield slicer_session.scene
    slicer_session.scene.Clear(0)


@pytest.fixture(scope="session")
def module(slicer_session):
    """The DoseRadiomics.py module, imported the way Slicer's scripted-module loader would."""
    import DoseRadiomics
    return DoseRadiomics


@pytest.fixture
def logic(module, scene):
    return module.DoseRadiomicsLogic()


@pytest.fixture(scope="session")
def sample_paths(module):
    paths = module.DoseRadiomicsLogic.sampleCasePaths()
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        pytest.fail(f"bundled sample case missing: {missing}")
    return paths
