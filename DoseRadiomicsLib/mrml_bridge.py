"""Slicer MRML <-> DoseRadiomics: the only library module that touches ``slicer``/MRML.

Conversions, each keeping physical geometry:

- volume node <-> SimpleITK image (MRML stores geometry in RAS, ITK in LPS: the first two
  physical axes change sign; voxel data is shared in the same k, j, i order);
- a dose-map picture -> an RGB volume node whose IJK is the picture's pixel (x, y), and world
  (RAS) points, e.g. markups control points, -> continuous IJK of any volume node;
- segment of a segmentation node <-> UInt8 0/1 mask on a reference volume's grid;
- table node <- a dict of columns / a pandas DataFrame (and back);
- plot chart node <- named curves (x, y), as Slicer's Plots module draws them.

Every function takes the scene explicitly (default: ``slicer.mrmlScene``) so that the same code
runs inside Slicer and headless on the ``slicer-core`` wheel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import SimpleITK as sitk

import slicer
import vtk

from .errors import InputError, ROIError

# RAS (Slicer) <-> LPS (ITK, DICOM): the first two physical axes change sign.
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _scene(scene=None):
    scene = scene if scene is not None else getattr(slicer, "mrmlScene", None)
    if scene is None:
        raise RuntimeError("no MRML scene: pass scene= or set slicer.mrmlScene")
    return scene


# --------------------------------------------------------------------------------------------
# Volumes


def _node_geometry_lps(volumeNode):
    """Spacing, origin and direction (ITK order, LPS) of a volume node, without matrix arithmetic.

    The node stores spacing, origin and direction cosines separately; flipping the signs of the first
    two physical rows is exact, so a round trip reproduces the geometry bit for bit.
    """
    directions = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASDirectionMatrix(directions)
    ras_dir = np.array([[directions.GetElement(r, c) for c in range(3)] for r in range(3)])
    lps_dir = _RAS_TO_LPS @ ras_dir
    origin = _RAS_TO_LPS @ np.array(volumeNode.GetOrigin(), dtype=float)
    return (tuple(float(v) for v in volumeNode.GetSpacing()), tuple(float(v) for v in origin),
            tuple(float(v) for v in lps_dir.ravel()))


def image_from_volume_node(volumeNode, pixel_type=None) -> sitk.Image:
    """A 3D SimpleITK image (LPS geometry) holding a copy of a scalar volume node's voxels.

    A parent transform on the node is not applied: harden it first (the Logic does), so that
    what the library sees is what the viewer shows.
    """
    if volumeNode is None or volumeNode.GetImageData() is None:
        name = volumeNode.GetName() if volumeNode is not None else None
        raise InputError("the volume has no image data", path=f"Slicer node {name}",
                         hint="load or select a volume first")
    array = slicer.util.arrayFromVolume(volumeNode)
    if array.ndim != 3:
        raise InputError(f"expected a scalar 3D volume, got an array of shape {array.shape}",
                         path=f"Slicer node {volumeNode.GetName()}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    spacing, origin, direction = _node_geometry_lps(volumeNode)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    if pixel_type is not None:
        image = sitk.Cast(image, pixel_type)
    return image


def update_volume_node_from_image(volumeNode, image: sitk.Image):
    """Write a 3D SimpleITK image's voxels and geometry into an existing volume node."""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"expected a scalar 3D image, got {image.GetDimension()}D with "
                         f"{image.GetNumberOfComponentsPerPixel()} component(s)")
    slicer.util.updateVolumeFromArray(volumeNode, sitk.GetArrayFromImage(image))
    ras_dir = _RAS_TO_LPS @ np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    directions = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            directions.SetElement(r, c, float(ras_dir[r, c]))
    volumeNode.SetIJKToRASDirectionMatrix(directions)
    volumeNode.SetSpacing(*image.GetSpacing())
    volumeNode.SetOrigin(*(float(v) for v in _RAS_TO_LPS @ np.array(image.GetOrigin(), dtype=float)))
    volumeNode.Modified()
    return volumeNode


def volume_node_from_image(image: sitk.Image, name: str, scene=None, node=None,
                           class_name: str = "vtkMRMLScalarVolumeNode"):
    """A new (or the given) volume node holding ``image``, with display nodes created."""
    scene = _scene(scene)
    if node is None:
        node = scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))
    update_volume_node_from_image(node, image)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def picture_volume_node(rgb, name: str, centre_ras=None, scene=None, node=None):
    """A one-slice RGB vector volume showing a picture (``rgb`` (rows, columns, 3), 0..1 or uint8).

    Its IJK is the picture's pixel: i = column x, j = row y (origin top left), k = 0; spacing 1 mm.
    The direction is LPS-identity, so an axial slice view shows the picture upright (x to the right,
    y down), as it shows a CT. ``centre_ras`` puts the picture's centre pixel at that point (e.g. the
    GTV's centre on the cross-section, so that jumping there keeps both in view).
    """
    scene = _scene(scene)
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"a picture is (rows, columns, 3) RGB, got an array of shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        rgb = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", scene.GenerateUniqueName(name))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(rgb[None]))
    directions = vtk.vtkMatrix4x4()
    for r, v in enumerate(np.diag(_RAS_TO_LPS)):
        directions.SetElement(r, r, float(v))
    node.SetIJKToRASDirectionMatrix(directions)
    node.SetSpacing(1.0, 1.0, 1.0)
    rows, cols = rgb.shape[:2]
    centre_ijk = np.array([(cols - 1) / 2.0, (rows - 1) / 2.0, 0.0])
    centre = np.zeros(3) if centre_ras is None else np.asarray(centre_ras, dtype=float)
    node.SetOrigin(*(float(v) for v in centre - _RAS_TO_LPS @ centre_ijk))
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    node.Modified()
    return node


def ijk_from_ras(volumeNode, points_ras) -> np.ndarray:
    """Continuous voxel indices (n, 3; i, j, k as ITK's index) of world RAS points in a volume node.

    A parent transform of the node is undone first (world -> the node's own RAS), so a point placed
    where the viewer shows a voxel gets that voxel's index.
    """
    pts = np.atleast_2d(np.asarray(points_ras, dtype=float)).reshape(-1, 3)
    parent = volumeNode.GetParentTransformNode()
    if parent is not None:
        to_local = vtk.vtkGeneralTransform()
        parent.GetTransformFromWorld(to_local)
        pts = np.array([to_local.TransformPoint(*(float(v) for v in p)) for p in pts]).reshape(-1, 3)
    ras_to_ijk = vtk.vtkMatrix4x4()
    volumeNode.GetRASToIJKMatrix(ras_to_ijk)
    m = np.array([[ras_to_ijk.GetElement(r, c) for c in range(4)] for r in range(4)])
    return pts @ m[:3, :3].T + m[:3, 3]


def markups_points_ras(markupsNode) -> np.ndarray:
    """World RAS positions (n, 3) of a markups node's placed control points, in their order."""
    defined = slicer.vtkMRMLMarkupsNode.PositionDefined
    out = []
    for i in range(markupsNode.GetNumberOfControlPoints()):
        if markupsNode.GetNthControlPointPositionStatus(i) == defined:
            p = [0.0, 0.0, 0.0]
            markupsNode.GetNthControlPointPositionWorld(i, p)
            out.append(p)
    return np.array(out, dtype=float).reshape(-1, 3)


# --------------------------------------------------------------------------------------------
# Segmentations


def segment_id(segmentationNode, name_or_id: str) -> str:
    """The segment ID for a segment name or ID; ROIError listing the names if none matches."""
    segmentation = segmentationNode.GetSegmentation()
    if segmentation.GetSegment(name_or_id) is not None:
        return name_or_id
    found = segmentation.GetSegmentIdBySegmentName(name_or_id)
    if found:
        return found
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    raise ROIError(f"segmentation '{segmentationNode.GetName()}' has no segment '{name_or_id}'",
                   hint=f"available segments: {', '.join(names) or 'none'}")


def mask_from_segment(segmentationNode, segment: str, referenceVolumeNode, scene=None) -> sitk.Image:
    """The segment as a UInt8 0/1 mask on the grid of ``referenceVolumeNode`` (LPS geometry)."""
    scene = _scene(scene)
    sid = segment_id(segmentationNode, segment)
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(sid)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__DoseRadiomics_temp__")
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentationNode, ids, labelmap, referenceVolumeNode)
        if not ok:
            raise ROIError(f"segment '{segment}' of '{segmentationNode.GetName()}' could not be "
                           f"exported on the grid of '{referenceVolumeNode.GetName()}'")
        image = image_from_volume_node(labelmap)
    finally:
        display = labelmap.GetDisplayNode()
        scene.RemoveNode(labelmap)
        if display is not None:
            scene.RemoveNode(display)
    mask = sitk.Cast(image != 0, sitk.sitkUInt8)
    return mask


def add_segment_from_mask(segmentationNode, mask: sitk.Image, name: str, color=None,
                          replace: bool = True, scene=None) -> str:
    """Add (or replace) segment ``name`` holding the non-zero voxels of ``mask``; its ID.

    The mask may be any sub-grid (e.g. one slice) of the segmentation's reference geometry; its
    voxels land where its physical geometry puts them.
    """
    scene = _scene(scene)
    segmentation = segmentationNode.GetSegmentation()
    if replace:
        old = segmentation.GetSegmentIdBySegmentName(name)
        if old:
            segmentation.RemoveSegment(old)
    binary = sitk.Cast(mask != 0, sitk.sitkUInt8)
    labelmap = volume_node_from_image(binary, "__DoseRadiomics_temp__", scene=scene,
                                      class_name="vtkMRMLLabelMapVolumeNode")
    before = {segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())}
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
            labelmap, segmentationNode)
    finally:
        display = labelmap.GetDisplayNode()
        scene.RemoveNode(labelmap)
        if display is not None:
            scene.RemoveNode(display)
    added = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())
             if segmentation.GetNthSegmentID(i) not in before]
    if not ok or len(added) != 1:
        raise ROIError(f"mask for segment '{name}' could not be imported (empty mask?)")
    new = segmentation.GetSegment(added[0])
    new.SetName(name)
    if color is not None:
        new.SetColor(*[float(c) for c in color])
    return added[0]


# --------------------------------------------------------------------------------------------
# Tables


def table_node_from_columns(columns: Mapping[str, Sequence], name: str, scene=None, node=None):
    """A table node with one column per entry: numbers become double columns, anything else text.

    All columns must have the same length. Existing columns of ``node`` are replaced.
    """
    scene = _scene(scene)
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns have different lengths: {sorted(lengths)}")
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    table = vtk.vtkTable()
    for column, values in columns.items():
        values = list(values)
        if values and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                          for v in values):
            arr = vtk.vtkDoubleArray()
            arr.SetNumberOfTuples(len(values))
            for i, v in enumerate(values):
                arr.SetValue(i, float(v))
        else:
            arr = vtk.vtkStringArray()
            arr.SetNumberOfValues(len(values))
            for i, v in enumerate(values):
                arr.SetValue(i, "" if v is None else str(v))
        arr.SetName(str(column))
        table.AddColumn(arr)
    node.SetAndObserveTable(table)
    node.Modified()
    return node


def table_node_from_dataframe(frame, name: str, scene=None, node=None):
    """A table node from a pandas DataFrame (index dropped; numeric columns stay numeric)."""
    columns = {}
    for column in frame.columns:
        series = frame[column]
        if series.dtype.kind in "biuf":
            columns[str(column)] = [float(v) for v in series.to_numpy()]
        else:
            columns[str(column)] = ["" if v is None else str(v) for v in series.tolist()]
    return table_node_from_columns(columns, name, scene=scene, node=node)


def table_node_from_dict(values: Mapping[str, object], name: str, key_column: str = "name",
                         value_column: str = "value", scene=None, node=None):
    """A two-column table (``key_column``, ``value_column``), one row per dict entry.

    Used for the feature row (thousands of features read better as rows than as columns).
    """
    keys = list(values.keys())
    return table_node_from_columns({key_column: keys, value_column: [values[k] for k in keys]},
                                   name, scene=scene, node=node)


def columns_from_table_node(tableNode) -> dict:
    """The table node's columns as a dict name -> list (floats for numeric columns, else str)."""
    table = tableNode.GetTable()
    out = {}
    for c in range(table.GetNumberOfColumns()):
        arr = table.GetColumn(c)
        n = arr.GetNumberOfTuples() if hasattr(arr, "GetNumberOfTuples") else arr.GetNumberOfValues()
        if isinstance(arr, vtk.vtkDataArray):
            out[arr.GetName()] = [float(arr.GetValue(i)) for i in range(n)]
        else:
            out[arr.GetName()] = [str(arr.GetValue(i)) for i in range(n)]
    return out


def dict_from_table_node(tableNode, key_column: str = "name", value_column: str = "value") -> dict:
    """Inverse of :func:`table_node_from_dict`."""
    cols = columns_from_table_node(tableNode)
    if key_column not in cols or value_column not in cols:
        raise ValueError(f"table '{tableNode.GetName()}' lacks column '{key_column}' or '{value_column}'")
    return dict(zip(cols[key_column], cols[value_column]))


# --------------------------------------------------------------------------------------------
# Plots


def plot_chart_from_curves(curves: Mapping[str, tuple], name: str, x_label: str = "x",
                           y_label: str = "y", markers: Mapping[str, tuple] | None = None,
                           colors: Mapping[str, tuple] | None = None, scene=None):
    """A plot chart node showing named curves; returns ``(chartNode, tableNode, seriesNodes)``.

    ``curves``: name -> (x values, y values) drawn as lines (pass Kaplan-Meier curves through
    :func:`step_curve`). ``markers``: name -> (x values, y values) drawn as points only (e.g. where this
    patient falls). All curves share one table node, two columns per curve, padded with NaN
    (Slicer's plots skip NaN points).
    """
    scene = _scene(scene)
    everything = [(n, c, False) for n, c in curves.items()] + \
                 [(n, c, True) for n, c in (markers or {}).items()]
    length = max((len(c[0]) for _, c, _ in everything), default=0)
    columns = {}
    for curve_name, (xs, ys), _ in everything:
        xs = np.asarray(xs, dtype=float)
        ys = np.asarray(ys, dtype=float)
        if xs.shape != ys.shape:
            raise ValueError(f"curve '{curve_name}': x and y differ in length ({xs.size} vs {ys.size})")
        pad = np.full(length - xs.size, np.nan)
        columns[f"{curve_name} {x_label}"] = list(np.concatenate([xs, pad]))
        columns[f"{curve_name} {y_label}"] = list(np.concatenate([ys, pad]))
    table = table_node_from_columns(columns, f"{name} data", scene=scene)
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(name))
    chart.SetTitle(name)
    chart.SetXAxisTitle(x_label)
    chart.SetYAxisTitle(y_label)
    series_nodes = []
    for curve_name, _, is_marker in everything:
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", scene.GenerateUniqueName(curve_name))
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName(f"{curve_name} {x_label}")
        series.SetYColumnName(f"{curve_name} {y_label}")
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        if is_marker:
            series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleNone)
            series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
            series.SetMarkerSize(12)
        else:
            series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
        if colors and curve_name in colors:
            series.SetColor(*[float(c) for c in colors[curve_name]])
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
        series_nodes.append(series)
    return chart, table, series_nodes


def step_curve(times, values):
    """The (x, y) polyline drawing a right-continuous step function (Kaplan-Meier)."""
    t = np.asarray(times, dtype=float)
    v = np.asarray(values, dtype=float)
    if t.size == 0:
        return t, v
    xs = np.repeat(t, 2)[1:]
    ys = np.repeat(v, 2)[:-1]
    return xs, ys
