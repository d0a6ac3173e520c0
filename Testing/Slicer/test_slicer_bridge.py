"""mrml_bridge on real MRML: geometry survives RAS<->LPS with a rotated grid; segments, tables, plots."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk


def _rotated_image(pixel=sitk.sitkFloat32):
    """A 3D image whose direction is a rotation about an oblique axis (no axis-aligned shortcut)."""
    rng = np.random.default_rng(3)
    arr = rng.normal(size=(7, 9, 11)).astype(np.float32)  # k, j, i
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 1.3, 2.5))
    img.SetOrigin((-12.5, 40.25, 101.0))
    rot = sitk.VersorTransform((1.0, 2.0, 0.5), math.radians(25.0))
    img.SetDirection(rot.GetMatrix())
    return sitk.Cast(img, pixel)


def test_volume_geometry_is_lps_in_itk_and_ras_in_mrml(scene):
    from DoseRadiomicsLib import mrml_bridge

    img = _rotated_image()
    node = mrml_bridge.volume_node_from_image(img, "rotated", scene=scene)
    # Every voxel centre: ITK gives LPS, MRML's IJKToRAS must give the same point with x, y negated.
    import vtk
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    for ijk in [(0, 0, 0), (10, 8, 6), (3, 5, 2)]:
        lps = np.array(img.TransformIndexToPhysicalPoint(ijk))
        ras = np.array(m.MultiplyPoint((*ijk, 1.0))[:3])
        np.testing.assert_allclose(ras, lps * [-1, -1, 1], atol=1e-9)
    back = mrml_bridge.image_from_volume_node(node)
    np.testing.assert_allclose(back.GetSpacing(), img.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(back.GetDirection(), img.GetDirection(), atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(img))


def test_bridge_agrees_with_slicers_own_nrrd_reader(scene, tmp_path):
    """Independent check of the convention: a file written by SimpleITK, read by Slicer's storage node."""
    import slicer
    from DoseRadiomicsLib import mrml_bridge

    img = _rotated_image(sitk.sitkInt16)
    path = tmp_path / "rotated.nrrd"
    sitk.WriteImage(img, str(path))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "read")
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    back = mrml_bridge.image_from_volume_node(node)
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(back.GetDirection(), img.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(back.GetSpacing(), img.GetSpacing(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(img))
    assert slicer.util.arrayFromVolume(node).dtype == np.int16


def test_segment_round_trip_on_rotated_grid_and_one_slice_masks(scene):
    from DoseRadiomicsLib import crosssection, mrml_bridge

    ref = _rotated_image()
    refNode = mrml_bridge.volume_node_from_image(ref, "ref", scene=scene)
    arr = np.zeros(sitk.GetArrayFromImage(ref).shape, np.uint8)
    arr[2:5, 3:7, 4:9] = 1
    arr[3, 1, 1] = 1
    mask = sitk.GetImageFromArray(arr)
    mask.CopyInformation(ref)
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    seg.SetReferenceImageGeometryParameterFromVolumeNode(refNode)
    sid = mrml_bridge.add_segment_from_mask(seg, mask, "GTV", color=(1, 0, 0))
    assert seg.GetSegmentation().GetSegment(sid).GetName() == "GTV"
    back = mrml_bridge.mask_from_segment(seg, "GTV", refNode)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), arr)
    # A one-slice mask (what the ROIs are) lands on its slice of the full grid.
    section = crosssection.CrossSection(axis=2, index=3, position_mm=0.0, area_mm2=0.0)
    one = crosssection.extract_slice(mask, section)
    mrml_bridge.add_segment_from_mask(seg, one, "slice")
    back = sitk.GetArrayFromImage(mrml_bridge.mask_from_segment(seg, "slice", refNode))
    expected = np.zeros_like(arr)
    expected[3] = arr[3]
    np.testing.assert_array_equal(back, expected)
    # Replacing keeps one segment of that name.
    mrml_bridge.add_segment_from_mask(seg, one, "slice")
    assert seg.GetSegmentation().GetNumberOfSegments() == 2


def test_unknown_segment_lists_the_available_ones(scene):
    from DoseRadiomicsLib import mrml_bridge
    from DoseRadiomicsLib.errors import ROIError

    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    seg.GetSegmentation().AddEmptySegment("a", "Tumour")
    with pytest.raises(ROIError, match="no segment 'GTV'.*available segments: Tumour"):
        mrml_bridge.segment_id(seg, "GTV")


def test_tables_keep_types_and_plot_nodes_reference_their_columns(scene):
    import pandas as pd
    import slicer
    from DoseRadiomicsLib import mrml_bridge

    frame = pd.DataFrame({"model": ["RDM", "combined"], "probability": [0.25, 0.75], "n": [3, 4]})
    table = mrml_bridge.table_node_from_dataframe(frame, "t", scene=scene)
    cols = mrml_bridge.columns_from_table_node(table)
    assert cols == {"model": ["RDM", "combined"], "probability": [0.25, 0.75], "n": [3.0, 4.0]}
    d = mrml_bridge.table_node_from_dict({"x": 1.5, "y": -2.0}, "d", scene=scene)
    assert mrml_bridge.dict_from_table_node(d) == {"x": 1.5, "y": -2.0}
    with pytest.raises(ValueError, match="different lengths"):
        mrml_bridge.table_node_from_columns({"a": [1], "b": [1, 2]}, "bad", scene=scene)

    xs, ys = mrml_bridge.step_curve([0, 1, 2], [1.0, 0.5, 0.25])
    assert list(xs) == [0, 1, 1, 2, 2] and list(ys) == [1.0, 1.0, 0.5, 0.5, 0.25]
    chart, data, series = mrml_bridge.plot_chart_from_curves(
        {"high": (xs, ys), "low": ([0, 2], [1.0, 0.9])}, "KM", x_label="months", y_label="survival",
        markers={"patient": ([1.0], [0.5])}, scene=scene)
    assert chart.GetNumberOfPlotSeriesNodes() == 3
    assert [s.GetName() for s in series] == ["high", "low", "patient"]
    assert series[2].GetLineStyle() == slicer.vtkMRMLPlotSeriesNode.LineStyleNone
    low_y = slicer.util.arrayFromTableColumn(data, "low survival")
    np.testing.assert_allclose(low_y[:2], [1.0, 0.9])
    assert np.isnan(low_y[2:]).all()  # padding is NaN, which Slicer's plots skip


def test_world_points_give_voxel_indices_through_rotation_and_parent_transform(scene):
    """ijk_from_ras inverts what the viewer shows: ITK's index of the LPS point, transform undone."""
    import vtk
    from DoseRadiomicsLib import mrml_bridge

    img = _rotated_image()
    node = mrml_bridge.volume_node_from_image(img, "rotated", scene=scene)
    ijk = np.array([[0.0, 0.0, 0.0], [10.0, 8.0, 6.0], [3.25, 5.5, 2.75]])
    lps = np.array([img.TransformContinuousIndexToPhysicalPoint(list(p)) for p in ijk])
    ras = lps * [-1, -1, 1]
    np.testing.assert_allclose(mrml_bridge.ijk_from_ras(node, ras), ijk, atol=1e-9)
    # Under a parent transform the node is shown moved: a world point there is the same voxel.
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "t")
    m = vtk.vtkMatrix4x4()
    rot = sitk.VersorTransform((0.0, 0.0, 1.0), math.radians(30.0)).GetMatrix()
    for r in range(3):
        for c in range(3):
            m.SetElement(r, c, rot[3 * r + c])
    m.SetElement(0, 3, 12.0)
    m.SetElement(1, 3, -7.5)
    transform.SetMatrixTransformToParent(m)
    node.SetAndObserveTransformNodeID(transform.GetID())
    a = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
    world = ras @ a[:3, :3].T + a[:3, 3]
    np.testing.assert_allclose(mrml_bridge.ijk_from_ras(node, world), ijk, atol=1e-9)


def test_picture_volume_shows_the_picture_upright_and_markups_read_back(scene):
    import slicer
    from DoseRadiomicsLib import mrml_bridge
    from DoseRadiomicsLib.errors import InputError

    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, size=(30, 45, 3)).astype(np.uint8)     # rows (y), columns (x)
    node = mrml_bridge.picture_volume_node(rgb, "picture", centre_ras=(10.0, -20.0, 55.0), scene=scene)
    assert node.IsA("vtkMRMLVectorVolumeNode")
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node)[0], rgb)
    # Picture pixel (x, y) is voxel (i, j); x runs to patient left (screen right in an axial view),
    # y to posterior (screen down); the centre pixel sits at centre_ras.
    centre = ((45 - 1) / 2, (30 - 1) / 2, 0)
    corner = (0.0, 0.0, 0.0)
    ras = np.array([(10.0, -20.0, 55.0), (10.0 + 22.0, -20.0 + 14.5, 55.0)])
    np.testing.assert_allclose(mrml_bridge.ijk_from_ras(node, ras), [centre, corner], atol=1e-9)
    with pytest.raises(InputError, match="RGB"):
        mrml_bridge.picture_volume_node(rgb[..., 0], "grey", scene=scene)
    # Control points in placement order, unplaced ones skipped.
    markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "points")
    markups.AddControlPoint(1.0, 2.0, 3.0)
    markups.AddControlPoint(4.0, 5.0, 6.0)
    markups.AddControlPoint(7.0, 8.0, 9.0)
    markups.UnsetNthControlPointPosition(1)
    np.testing.assert_array_equal(mrml_bridge.markups_points_ras(markups), [[1, 2, 3], [7, 8, 9]])
    assert mrml_bridge.markups_points_ras(scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")).shape == (0, 3)
