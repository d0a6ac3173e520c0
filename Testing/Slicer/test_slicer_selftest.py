"""The module's own self-test (what Slicer runs from 'Reload and Test' and ctest) passes headless."""

from __future__ import annotations

import types


def test_module_self_test_passes_on_real_mrml(module, sample_paths, slicer_session):
    parent = types.SimpleNamespace(path=module.__file__)
    m = module.DoseRadiomics(parent)
    assert parent.title == "Dose Radiomics" and parent.categories == ["Radiotherapy"]
    test = module.DoseRadiomicsTest()
    test.messageDelay = 0
    test.runTest()
    assert "Feature extraction" in test.messages
    assert "Prediction with the bundled demo model" in test.messages
    assert test.messages[-1] == "Test passed"
    # Through the Module object, as Slicer's SelfTests module calls it.
    m.runTest(msec=0)
    slicer_session.scene.Clear(0)


def test_parameter_node_stores_choices_in_the_scene(module, scene):
    logic = module.DoseRadiomicsLogic()
    params = logic.getParameterNode()
    assert params.isodoseGy == "50" and params.config == "paper" and params.doseOpacity == 0.5
    params.isodoseGy = "45 50"
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    params.ctVolume = volume
    again = logic.getParameterNode()  # a singleton: the same MRML node
    assert again.isodoseGy == "45 50" and again.ctVolume is volume
    assert logic.parseIsodose(again.isodoseGy) == (45.0, 50.0)
