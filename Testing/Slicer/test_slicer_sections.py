"""The module's Logic runs 2.5D sections (``largest:K``) on real MRML: segments on the slab, the
library's features, the section recorded and passed to the cohort job."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk


def test_logic_makes_the_slab_rois_and_extracts_the_librarys_25d_features(scene, logic):
    from DoseRadiomicsLib import crosssection, mrml_bridge, pipeline, rois
    from DoseRadiomicsLib.errors import ROIError

    case = logic.loadSampleCase()
    aligned = logic.alignDose(case["ct"], case["dose"], case["gtvSegmentation"], case["gtvSegmentId"])
    roiNode = logic.makeDoseROIs(case["ct"], aligned, case["gtvSegmentation"], case["gtvSegmentId"],
                                 isodoseGy=(50.0,), section="largest:1")
    assert roiNode.GetAttribute(logic.ATTR_SECTION) == "largest:1"
    # the GTV segment covers exactly the three slices around the largest cross-section
    gtv = mrml_bridge.mask_from_segment(case["gtvSegmentation"], case["gtvSegmentId"], case["ct"])
    k = int(np.argmax(sitk.GetArrayFromImage(gtv).sum(axis=(1, 2))))
    seg = sitk.GetArrayFromImage(mrml_bridge.mask_from_segment(roiNode, "GTV", case["ct"])) != 0
    assert np.flatnonzero(seg.sum(axis=(1, 2))).tolist() == [k - 1, k, k + 1]
    np.testing.assert_array_equal(seg[k - 1:k + 2], sitk.GetArrayFromImage(gtv)[k - 1:k + 2] != 0)

    table, features = logic.extractFeatures(case["ct"], aligned, roiNode)
    assert table.GetAttribute(logic.ATTR_SECTION) == "largest:1"
    # the library on the same MRML arrays, bit for bit
    m_ct = mrml_bridge.image_from_volume_node(case["ct"])
    m_dose = mrml_bridge.image_from_volume_node(aligned)
    section = crosssection.largest_cross_section(gtv)
    lib = rois.make_rois(m_ct, m_dose, gtv, section, isodose_gy=(50.0,),
                         extent=crosssection.section_extent(gtv, section, "largest:1"))
    options = pipeline.ExtractionOptions(section="largest:1")
    expected = pipeline.extract_rois(lib, options)
    assert list(features) == list(expected) and list(features)[0].startswith("GTV_25D1__")
    assert dict(features) == dict(expected)
    assert table.GetAttribute(logic.ATTR_SETTINGS_HASH) == pipeline.options_settings_hash(options)

    # slab ROIs cannot be extracted as another section, and the message says what to do
    with pytest.raises(ROIError, match="made for section largest:1") as err:
        logic.extractFeatures(case["ct"], aligned, roiNode, options=logic.extractionOptions(section="volume"))
    assert "make the ROIs again" in err.value.hint


def test_cohort_job_passes_the_section(tmp_path, logic):
    manifest = tmp_path / "m.csv"
    manifest.write_text("patient_id,ct,dose,gtv\n")
    cmd = logic.cohortExtractCommand(str(manifest), tmp_path / "out", logic.extractionOptions(section="volume"))
    assert cmd[cmd.index("--section") + 1] == "volume"
    assert "--section" not in logic.cohortExtractCommand(str(manifest), tmp_path / "out", logic.extractionOptions())
