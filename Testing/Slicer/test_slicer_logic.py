"""The module's Logic on real MRML with the bundled case: every node it makes holds the library's numbers.

One workflow (align, largest slice, ROIs, extraction: ~3 s) is shared by the tests of this file;
each compares the MRML result with the library run on the same arrays, or with numpy.
"""

from __future__ import annotations

import math
import subprocess
import sys
import types

import numpy as np
import pytest
import SimpleITK as sitk


@pytest.fixture(scope="module")
def workflow(slicer_session, module, sample_paths):
    import slicer
    from DoseRadiomicsLib import alignment, crosssection, pipeline, rois
    from DoseRadiomicsLib.readers import LoadedImage

    slicer_session.scene.Clear(0)
    logic = module.DoseRadiomicsLogic()
    case = logic.loadSampleCase()
    aligned = logic.alignDose(case["ct"], case["dose"], case["gtvSegmentation"], case["gtvSegmentId"])
    section = logic.findLargestCrossSection(case["gtvSegmentation"], case["gtvSegmentId"], case["ct"])
    roiNode = logic.makeDoseROIs(case["ct"], aligned, case["gtvSegmentation"], case["gtvSegmentId"],
                                 isodoseGy=(50.0,))
    table, features = logic.extractFeatures(case["ct"], aligned, roiNode)

    # The library alone, from the files (no MRML anywhere).
    ct = sitk.ReadImage(str(sample_paths["ct"]))
    dose = sitk.ReadImage(str(sample_paths["dose"]), sitk.sitkFloat32)
    gtv = sitk.Cast(sitk.ReadImage(str(sample_paths["gtv"])) != 0, sitk.sitkUInt8)
    lib_dose, _ = alignment.align_dose_to_ct(LoadedImage(image=ct, path=str(sample_paths["ct"]), details={}),
                                             LoadedImage(image=dose, path=str(sample_paths["dose"]), details={}),
                                             gtv=gtv)
    lib_section = crosssection.largest_cross_section(gtv)
    lib_rois = rois.make_rois(ct, lib_dose, gtv, lib_section, isodose_gy=(50.0,))
    options = pipeline.ExtractionOptions()
    lib_features = pipeline.extract_rois(lib_rois, options)
    # The library on the arrays as MRML holds them. Slicer's NRRD reader derives the spacing from the
    # space directions with its own arithmetic (4.679999999999999 where SimpleITK reads 4.68), so these,
    # not the file-based ones, are what the Logic's features must equal bit for bit.
    from DoseRadiomicsLib import mrml_bridge
    m_ct = mrml_bridge.image_from_volume_node(case["ct"])
    m_gtv = mrml_bridge.mask_from_segment(case["gtvSegmentation"], case["gtvSegmentId"], case["ct"])
    m_dose = mrml_bridge.image_from_volume_node(aligned)
    m_rois = rois.make_rois(m_ct, m_dose, m_gtv, crosssection.largest_cross_section(m_gtv), isodose_gy=(50.0,))
    mrml_features = pipeline.extract_rois(m_rois, options)
    yield types.SimpleNamespace(
        logic=logic, case=case, aligned=aligned, section=section, roiNode=roiNode, table=table,
        features=features, ct=ct, dose=dose, gtv=gtv, lib_dose=lib_dose, lib_section=lib_section,
        lib_rois=lib_rois, lib_features=lib_features, mrml_features=mrml_features, m_rois=m_rois, options=options, settings_hash=pipeline.options_settings_hash(options),
        scene=slicer.mrmlScene)
    slicer_session.scene.Clear(0)


def test_aligned_dose_node_holds_the_librarys_dose_on_the_ct_grid(workflow):
    import slicer
    arr = slicer.util.arrayFromVolume(workflow.aligned)
    np.testing.assert_array_equal(arr, sitk.GetArrayFromImage(workflow.lib_dose))
    assert workflow.aligned.GetAttribute("DoseRadiomics.AlignedDose") == "1"
    # Displayed as a dose wash: our colour table, doses below 5 % of the maximum hidden.
    display = workflow.aligned.GetDisplayNode()
    assert display.GetColorNode().GetName() == workflow.logic.DOSE_COLOR_TABLE_NAME
    assert display.GetApplyThreshold()
    assert display.GetLowerThreshold() == pytest.approx(0.05 * float(arr.max()), rel=1e-6)
    assert workflow.logic.lastAlignmentReport["gtv_dose_coverage"] == pytest.approx(1.0)


def test_largest_cross_section_matches_numpy(workflow):
    gtv = sitk.GetArrayFromImage(workflow.gtv).astype(bool)
    sx, sy, _ = workflow.ct.GetSpacing()
    areas = gtv.sum(axis=(1, 2)) * sx * sy
    assert workflow.section["index"] == int(np.argmax(areas)) == workflow.lib_section.index
    assert workflow.section["area_mm2"] == pytest.approx(float(areas.max()), rel=1e-12)
    # The RAS point the views jump to lies on that slice (identity direction: z = origin + k * dz).
    assert workflow.section["ras"][2] == pytest.approx(workflow.ct.GetOrigin()[2] + workflow.section["index"] *
                                                       workflow.ct.GetSpacing()[2])


def test_roi_segments_are_the_papers_three_rois_with_numpy_areas(workflow):
    seg = workflow.roiNode.GetSegmentation()
    names = [seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())]
    assert names == ["GTV", "GTV-heat", "50Gy-heat"]
    k = workflow.section["index"]
    gtv = sitk.GetArrayFromImage(workflow.gtv)[k].astype(bool)
    dose = sitk.GetArrayFromImage(workflow.dose)[k]
    px = workflow.ct.GetSpacing()[0] * workflow.ct.GetSpacing()[1]
    expected = {"GTV": gtv.sum() * px, "GTV-heat": gtv.sum() * px, "50Gy-heat": (dose >= 50.0).sum() * px}
    got = workflow.logic.roiAreas(workflow.roiNode, workflow.case["ct"])
    assert got == pytest.approx(expected, rel=1e-12)
    assert workflow.lib_rois.areas_mm2() == pytest.approx(expected, rel=1e-12)
    assert workflow.roiNode.GetAttribute("DoseRadiomics.SliceIndex") == str(k)


def test_feature_table_holds_the_librarys_features(workflow):
    from DoseRadiomicsLib import mrml_bridge
    assert list(workflow.features) == list(workflow.lib_features) == list(workflow.mrml_features)
    assert len(workflow.features) == 3 * 1595  # the paper's configuration
    assert dict(workflow.features) == dict(workflow.mrml_features)  # bit for bit
    # Against the files read by SimpleITK: equal up to the reader's last-bit spacing difference.
    np.testing.assert_allclose(list(workflow.features.values()), list(workflow.lib_features.values()),
                               rtol=1e-9, atol=1e-12)
    cols = mrml_bridge.columns_from_table_node(workflow.table)
    assert workflow.table.GetNumberOfRows() == len(workflow.features)
    assert cols["ROI"][0] == "GTV" and cols["ROI"][-1] == "50Gy-heat"
    assert workflow.logic.featuresFromTable(workflow.table) == dict(workflow.features)
    assert workflow.table.GetAttribute("DoseRadiomics.SettingsHash") == workflow.settings_hash
    # An independent number: the GTV's mean HU on the slice.
    k = workflow.section["index"]
    ct = sitk.GetArrayFromImage(workflow.ct)[k]
    gtv = sitk.GetArrayFromImage(workflow.gtv)[k].astype(bool)
    assert workflow.features["GTV__original_firstorder_Mean"] == pytest.approx(float(ct[gtv].mean()), rel=1e-9)


def test_feature_table_marks_the_features_the_librarys_stability_screen_finds_unstable(workflow):
    """The panel's features table: a stability column and the count, as the library's screen of the
    same slice gives them (the command line's extraction.json and feature_stability.json)."""
    from DoseRadiomicsLib import mrml_bridge, stability
    screen = stability.screen_rois(workflow.m_rois, workflow.options, workflow.mrml_features)
    marked = workflow.logic.unstableFeatures(workflow.table)
    assert set(marked) == set(screen["unstable"]) and len(marked) > 100
    assert workflow.table.GetAttribute("DoseRadiomics.UnstableFeatures") == str(len(marked))
    assert not [k for k in marked if "__original_" in k or "_shape_" in k]
    cols = mrml_bridge.columns_from_table_node(workflow.table)
    assert set(cols["stability"]) == {"stable", "unstable"}


def test_the_same_anatomy_stored_head_first_prone_gives_the_same_features(workflow):
    """The CT and dose stored with rows and columns reversed (as head-first prone, or another scanner's
    row order): the Logic puts the slice in the patient's orientation as the command line does, so the
    features describe the anatomy, not the storage (without it, every wavelet sub-band differs)."""
    from DoseRadiomicsLib import mrml_bridge
    logic, case = workflow.logic, workflow.case
    stored = {}
    for key in ("ct", "dose"):
        image = sitk.DICOMOrient(mrml_bridge.image_from_volume_node(case[key]), "RAS")  # same physical space
        stored[key] = mrml_bridge.volume_node_from_image(image, f"{key} stored RAS")
    assert np.allclose(np.asarray(stored["ct"].GetSpacing()), np.asarray(case["ct"].GetSpacing()))
    aligned = logic.alignDose(stored["ct"], stored["dose"], case["gtvSegmentation"], case["gtvSegmentId"])
    roiNode = logic.makeDoseROIs(stored["ct"], aligned, case["gtvSegmentation"], case["gtvSegmentId"],
                                 isodoseGy=(50.0,))
    _, features = logic.extractFeatures(stored["ct"], aligned, roiNode)
    assert list(features) == list(workflow.features)
    np.testing.assert_allclose(list(features.values()), list(workflow.features.values()), rtol=1e-6, atol=1e-9)


def test_edited_roi_segment_changes_the_extracted_roi(workflow):
    """An edit in the Segment Editor (here: a labelmap written into the segment) is what gets extracted."""
    import slicer
    from DoseRadiomicsLib import mrml_bridge
    ctNode = workflow.case["ct"]
    k = workflow.section["index"]
    edited = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "edited")
    edited.Copy(workflow.roiNode)
    mask = mrml_bridge.mask_from_segment(edited, "50Gy-heat", ctNode)
    arr = sitk.GetArrayFromImage(mask)
    rows = np.nonzero(arr[k].any(axis=1))[0]
    arr[k, rows[: len(rows) // 2]] = 0  # erase the upper half of the isodose region
    new = sitk.GetImageFromArray(arr)
    new.CopyInformation(mask)
    mrml_bridge.add_segment_from_mask(edited, new, "50Gy-heat")
    rois = workflow.logic.sliceROIs(ctNode, workflow.aligned, edited)
    assert rois.pixel_counts()["50Gy-heat"] == int(arr[k].sum())
    assert rois.pixel_counts()["GTV"] == workflow.lib_rois.pixel_counts()["GTV"]


def _hand_made_model(tmp_path, features, settings_hash):
    """A small model file, valid for DoseRadiomicsLib.modelfile, built on this patient's feature names."""
    from DoseRadiomicsLib import fingerprint, modelfile
    from DoseRadiomicsLib.pipeline import ExtractionOptions
    from DoseRadiomicsLib.training import RDM_SCORE

    def roi_model(names, coefs, intercept):
        lo = [features[n] - 1.0 - abs(features[n]) for n in names]
        hi = [features[n] + 2.0 + abs(features[n]) for n in names]
        return {"features": names, "sources": ["feature"] * len(names), "min": lo, "max": hi,
                "coefficients": coefs, "intercept": intercept, "intercept_only": False}

    rm = roi_model(["GTV__original_firstorder_Mean", "GTV__original_glcm_Contrast"], [1.2, -0.7], -0.3)
    dm = roi_model(["GTV-heat__original_firstorder_Mean"], [2.0], -1.0)
    d50 = roi_model(["50Gy-heat__original_firstorder_Maximum"], [0.5], 0.1)
    rdm = roi_model(["GTV__original_firstorder_Mean", "50Gy-heat__original_firstorder_Maximum"], [0.8, 0.4], -0.2)
    content = {
        "models": {"clinical": {"features": [], "sources": [], "min": [], "max": [], "coefficients": [],
                                "intercept": -0.4, "intercept_only": True},
                   "RM_GTV": rm, "DM_GTV": dm, "DM_50Gy": d50, "RDM": rdm,
                   "combined": {"features": [RDM_SCORE], "sources": ["model:RDM"], "min": [None], "max": [None],
                                "coefficients": [1.1], "intercept": 0.05, "intercept_only": False}},
        "model_order": ["clinical", "RM_GTV", "DM_GTV", "DM_50Gy", "RDM", "combined"],
        "clinical_coding": {}, "risk": {"model": "combined", "cutoff": 0.498, "rule": "Youden"},
        "extraction": {"settings_hash": settings_hash, "options": None,
                       "fingerprint": fingerprint.compute(ExtractionOptions())}, "cohort": {"n": 10},
        "library_versions": {},
        "evaluation": {"validation": {
            "combined": {"roc": {"fpr": [0, 0.2, 0.5, 1], "tpr": [0, 0.6, 0.9, 1]},
                         "classification": {"sensitivity": 0.6, "specificity": 0.8},
                         "decision_curve": {"thresholds": [0.1, 0.3, 0.5, 0.7], "model": [0.3, 0.2, 0.1, 0.02],
                                            "treat_all": [0.35, 0.1, -0.3, -1.0], "treat_none": [0, 0, 0, 0]}},
            "RDM": {"roc": {"fpr": [0, 0.3, 1], "tpr": [0, 0.7, 1]}}}},
        "survival": {"cutoff": 0.498, "endpoints": {"pfs": {"validation": {"groups": {
            "high": {"n": 4, "events": 3, "km": {"time": [2.0, 5.0, 9.0], "survival": [0.75, 0.5, 0.25]}},
            "low": {"n": 6, "events": 1, "km": {"time": [11.0], "survival": [0.8333]}}}}}}},
    }
    path = tmp_path / "model.json"
    modelfile.save_model(content, path)
    return path, content


def test_predict_gives_the_librarys_probabilities_in_tables_and_charts(workflow, tmp_path):
    import slicer
    from DoseRadiomicsLib import modelfile, mrml_bridge, prediction

    path, content = _hand_made_model(tmp_path, workflow.lib_features, workflow.settings_hash)
    out = workflow.logic.predict(workflow.features, str(path),
                                 settingsHash=workflow.table.GetAttribute("DoseRadiomics.SettingsHash"))
    expected = prediction.predict_from_features(modelfile.load_model(path), workflow.mrml_features)
    assert out["result"]["probabilities"] == expected["probabilities"]
    # Independent of the library: RM_GTV by the model file's formula.
    m = content["models"]["RM_GTV"]
    z = m["intercept"] + sum(c * (workflow.features[f] - lo) / (hi - lo)
                             for f, lo, hi, c in zip(m["features"], m["min"], m["max"], m["coefficients"]))
    assert out["result"]["probabilities"]["RM_GTV"] == pytest.approx(1 / (1 + math.exp(-z)), rel=1e-12)
    assert out["result"]["risk_group"] == ("high" if expected["combined_probability"] >= 0.498 else "low")

    cols = mrml_bridge.columns_from_table_node(out["tableNode"])
    assert cols["model"] == list(expected["probabilities"])
    np.testing.assert_allclose(cols["probability"], list(expected["probabilities"].values()), rtol=0, atol=0)
    summary = mrml_bridge.dict_from_table_node(out["summaryTableNode"], "item", "value")
    assert summary["risk group"] == expected["risk_group"]
    assert summary["cut-off"] == "0.4980"

    charts = out["chartNodes"]
    assert set(charts) == {"ROC", "Decision curve", "Kaplan-Meier PFS"}
    roc_series = [charts["ROC"].GetNthPlotSeriesNode(i) for i in range(charts["ROC"].GetNumberOfPlotSeriesNodes())]
    assert [s.GetName() for s in roc_series] == ["RDM", "combined", "risk cut-off"]  # model order
    dc = charts["Decision curve"]
    marker = dc.GetNthPlotSeriesNode(dc.GetNumberOfPlotSeriesNodes() - 1)
    assert marker.GetName() == "this patient"
    table = marker.GetTableNode()
    px = slicer.util.arrayFromTableColumn(table, "this patient threshold probability")[0]
    py = slicer.util.arrayFromTableColumn(table, "this patient net benefit")[0]
    p = expected["combined_probability"]
    assert px == pytest.approx(p)
    assert py == pytest.approx(np.interp(p, [0.1, 0.3, 0.5, 0.7], [0.3, 0.2, 0.1, 0.02]))
    assert expected["risk_group"] in charts["Kaplan-Meier PFS"].GetTitle()


def test_predict_refuses_features_with_other_settings(workflow, tmp_path):
    from DoseRadiomicsLib.errors import ModelFileError
    path, _ = _hand_made_model(tmp_path, workflow.lib_features, "0123456789abcdef")
    with pytest.raises(ModelFileError, match="settings hash mismatch"):
        workflow.logic.predict(workflow.features, str(path), settingsHash=workflow.settings_hash)


def test_predict_refuses_a_model_this_installation_does_not_reproduce(workflow, tmp_path, monkeypatch):
    """The library's compatibility check runs in the Logic too: a changed pyradiomics formula is refused."""
    from changed_pyradiomics import glcm_contrast_plus_one_percent
    from DoseRadiomicsLib import fingerprint
    from DoseRadiomicsLib.errors import ModelFileError

    path, _ = _hand_made_model(tmp_path, workflow.lib_features, workflow.settings_hash)
    glcm_contrast_plus_one_percent(monkeypatch)
    fingerprint.clear_cache()
    try:
        with pytest.raises(ModelFileError, match=r"reference features differently.*glcm_Contrast"):
            workflow.logic.predict(workflow.features, str(path), settingsHash=workflow.settings_hash)
    finally:
        monkeypatch.undo()
        fingerprint.clear_cache()
    assert workflow.logic.predict(workflow.features, str(path), settingsHash=workflow.settings_hash)["result"]


def test_bundled_demo_model_predicts_the_librarys_probabilities(workflow, module):
    """The demo model shipped with the extension, on the sample patient's features from MRML."""
    from DoseRadiomicsLib import modelfile, mrml_bridge, prediction

    path = module.DoseRadiomicsLogic.demoModelPath()
    assert path.is_file(), f"the bundled demo model is missing: {path}"
    model = modelfile.load_model(path)
    settings_hash = workflow.table.GetAttribute("DoseRadiomics.SettingsHash")
    assert settings_hash == model["extraction"]["settings_hash"] == workflow.settings_hash

    # Without clinical values (pt_10 has none) the models needing them are not computed, and say so.
    bare = workflow.logic.predict(workflow.features, str(path), settingsHash=settings_hash)
    assert bare["result"]["risk_group"] is None and "combined" not in bare["result"]["probabilities"]
    assert bare["result"]["missing"] and set(bare["result"]["missing"]) <= set(model["clinical_coding"])
    summary = mrml_bridge.dict_from_table_node(bare["summaryTableNode"], "item", "value")
    assert summary["risk group"] == "not computed"
    assert summary["missing inputs"] == ", ".join(bare["result"]["missing"])

    clinical = workflow.logic.parseClinical(module.ILLUSTRATIVE_CLINICAL_VALUES)
    out = workflow.logic.predict(workflow.features, str(path), clinical=clinical, settingsHash=settings_hash)
    expected = prediction.predict_from_features(model, workflow.mrml_features, clinical)
    assert out["result"]["probabilities"] == expected["probabilities"]
    assert list(out["result"]["probabilities"]) == model["model_order"]      # all six models
    # Independent of the library: each radiomics model by the model file's formula.
    for name in ("RM_GTV", "DM_GTV", "DM_50Gy", "RDM"):
        m = model["models"][name]
        z = m["intercept"] + sum(c * (workflow.features[f] - lo) / (hi - lo)
                                 for f, lo, hi, c in zip(m["features"], m["min"], m["max"], m["coefficients"]))
        assert out["result"]["probabilities"][name] == pytest.approx(1 / (1 + math.exp(-z)), rel=1e-12), name
    cutoff = model["risk"]["cutoff"]
    p = out["result"]["combined_probability"]
    assert out["result"]["risk_group"] == ("high" if p >= cutoff else "low")
    summary = mrml_bridge.dict_from_table_node(out["summaryTableNode"], "item", "value")
    assert summary["cut-off"] == f"{cutoff:.4f}" and summary["combined probability"] == f"{p:.4f}"
    assert "ROC" in out["chartNodes"]


def test_results_survive_saving_and_reopening_the_scene_as_mrb(workflow, tmp_path):
    import slicer
    from DoseRadiomicsLib import mrml_bridge

    params = workflow.logic.getParameterNode()
    params.roiSegmentation = workflow.roiNode
    params.featureTable = workflow.table
    params.isodoseGy = "45 50"
    mrb = tmp_path / "case.mrb"
    assert workflow.scene.WriteToMRB(str(mrb))

    scene = slicer.vtkMRMLScene()
    cache = slicer.vtkCacheManager()
    cache.SetRemoteCacheDirectory(str(tmp_path / "cache"))
    scene.SetCacheManager(cache)
    io = slicer.vtkDataIOManager()
    io.SetCacheManager(cache)
    scene.SetDataIOManager(io)
    assert scene.ReadFromMRB(str(mrb))

    table = scene.GetFirstNodeByName(workflow.table.GetName())
    # Bit for bit: the numeric column is written with 6 digits by Slicer's table storage, the exact
    # text column is what the features are read back from.
    assert workflow.logic.featuresFromTable(table) == dict(workflow.features)
    rounded = mrml_bridge.columns_from_table_node(table)["value"]
    np.testing.assert_allclose(rounded, list(workflow.features.values()), rtol=1e-5, atol=1e-12)
    assert table.GetAttribute("DoseRadiomics.SettingsHash") == workflow.settings_hash
    ct = scene.GetFirstNodeByName(workflow.case["ct"].GetName())
    rois = scene.GetFirstNodeByName(workflow.roiNode.GetName())
    k = workflow.section["index"]
    for name, area in workflow.lib_rois.areas_mm2().items():
        mask = mrml_bridge.mask_from_segment(rois, name, ct, scene=scene)
        px = ct.GetSpacing()[0] * ct.GetSpacing()[1]
        assert sitk.GetArrayFromImage(mask)[k].sum() * px == pytest.approx(area, rel=1e-12), name
    assert rois.GetAttribute("DoseRadiomics.SliceIndex") == str(k)
    node = scene.GetSingletonNode("DoseRadiomics", "vtkMRMLScriptedModuleNode")
    assert node.GetParameter("isodoseGy") == "45 50"
    assert node.GetNodeReference("featureTable").GetName() == workflow.table.GetName()
    scene.Clear(1)


def test_cohort_command_lines(module, tmp_path):
    logic = module.DoseRadiomicsLogic()
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("patient_id,ct,dose,gtv\n")
    options = logic.extractionOptions(isodoseGy=(45.0, 50.0), isodoseTouchingGtv=True, config="2d")
    extract, train, report = logic.cohortCommands(str(manifest), str(tmp_path / "out"), options)
    py = logic.pythonExecutable()
    assert extract == [py, "-m", "DoseRadiomicsLib.cli", "cohort-extract", "--manifest", str(manifest),
                       "--out", str(tmp_path / "out" / "extraction"), "--config", "2d", "--isodose", "45", "50",
                       "--isodose-touching-gtv"]
    assert train == [py, "-m", "DoseRadiomicsLib.cli", "train", "--features",
                     str(tmp_path / "out" / "extraction" / "features.csv"), "--manifest", str(manifest),
                     "--out", str(tmp_path / "out" / "model.json"), "--seed", "0"]
    assert report[3] == "report" and report[-1] == str(tmp_path / "out" / "report.html")
    # Each command line is accepted by the doseradiomics command's own parser.
    from DoseRadiomicsLib import cli
    parser = cli.build_parser()
    for cmd in (extract, train, report):
        args = parser.parse_args(cmd[3:])
        assert args.command == cmd[3] and callable(args.func)
    assert logic.progressFromLine("cohort-extract [######......] 12/48 3m elapsed") == 0.25
    assert logic.progressFromLine("reading manifest") is None
    from DoseRadiomicsLib.errors import InputError
    with pytest.raises(InputError, match="manifest not found"):
        logic.cohortCommands(str(tmp_path / "absent.csv"), str(tmp_path / "out"))


def test_cohort_extract_command_runs_on_the_sample_patient(module, sample_paths, tmp_path):
    """The command the Widget starts in the background, run here with subprocess on a one-patient cohort."""
    import csv
    import os
    logic = module.DoseRadiomicsLogic()
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["patient_id", "ct", "dose", "gtv", "dose_unit"])
        w.writerow(["pt_10", sample_paths["ct"], sample_paths["dose"], sample_paths["gtv"], "Gy"])
    cmd = logic.cohortExtractCommand(str(manifest), str(tmp_path / "out"))
    cmd[0] = sys.executable  # PythonSlicer is Slicer's; here the test's interpreter stands in for it
    env = dict(os.environ, **logic.processEnvironment())
    done = subprocess.run(cmd + ["--workers", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    features = logic.cohortPaths(str(tmp_path / "out"))["features"]
    header = features.read_text().splitlines()[0].split(",")
    assert "GTV__original_firstorder_Mean" in header and len(header) > 3 * 1595


def test_dependency_check_names_requirement_lines(module, monkeypatch):
    import importlib.util
    logic = module.DoseRadiomicsLogic()
    assert logic.missingDependencies() == []
    assert logic.pyradiomicsProblem() is None
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("lifelines", "radiomics") else real(name, *a))
    assert logic.missingDependencies() == ["lifelines>=0.27"]
    assert "SlicerRadiomics" in logic.pyradiomicsProblem()
    # restartNeeded compares versions (loaded vs installed): test_slicer_dependencies.py.
