"""The dose-map picture route in the module's Logic, on real MRML.

The picture is the one the library's own test renders (Testing/Python/test_dosemap.py: the sample
patient's dose slice as a jet wash over its CT, with a colour bar, rotated, scaled and shifted by a
known transform). What a user checks: the dose node on the CT slice is the dose the library's
``extract_dose_map_patient`` recovers from the same picture and the same arrays; the features through
the Logic are the library's; landmarks placed as markups in Slicer give the library's landmark arrays,
whatever RAS/LPS and picture-pixel conventions lie between; bad input gets a clear error.
"""

from __future__ import annotations

import csv
import importlib.util
import types
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]


def _library_dosemap_test():
    """Testing/Python/test_dosemap.py, imported by path for its renderer and truth (one copy of both)."""
    spec = importlib.util.spec_from_file_location("doseradiomics_test_dosemap",
                                                  REPO / "Testing" / "Python" / "test_dosemap.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def picture(slicer_session, module, sample_paths, tmp_path_factory):
    """The picture, the sample case in MRML, and the library's picture route on the same arrays."""
    from PIL import Image

    from DoseRadiomicsLib import dosemap as dm
    from DoseRadiomicsLib import mrml_bridge
    from DoseRadiomicsLib.crosssection import largest_cross_section

    td = _library_dosemap_test()
    out = tmp_path_factory.mktemp("slicer-dosemap")
    slicer_session.scene.Clear(0)
    logic = module.DoseRadiomicsLogic()
    case = logic.loadSampleCase()

    # The arrays as MRML holds them (Slicer's NRRD reader gives 4.679999999999999 mm where SimpleITK
    # reads 4.68; see test_slicer_logic), written out so the library reads exactly them.
    ct = mrml_bridge.image_from_volume_node(case["ct"])
    gtv = mrml_bridge.mask_from_segment(case["gtvSegmentation"], case["gtvSegmentId"], case["ct"])
    sitk.WriteImage(ct, str(out / "ct.nrrd"))
    sitk.WriteImage(gtv, str(out / "gtv.nrrd"))

    section = largest_cross_section(gtv)
    ct_slice = dm.slice_image_2d(ct, section)
    dose_slice = dm.slice_image_2d(sitk.ReadImage(str(sample_paths["dose"]), sitk.sitkFloat32), section)
    rows, cols = np.nonzero(sitk.GetArrayFromImage(ct_slice) > -400)
    spacing = np.array(ct_slice.GetSpacing())
    truth = td.true_transform(np.array([cols.mean(), rows.mean()]) * spacing)
    rgb, _, _ = td.render(ct_slice, dose_slice, truth)
    png = out / "dosemap.png"
    Image.fromarray(rgb).save(png)

    settings = logic.doseMapSettings("colour-bar", td.DOSE_RANGE, colourBar=" ".join(map(str, td.BAR)))
    doseNode, report = logic.importDoseMapPicture(str(png), case["ct"], case["gtvSegmentation"],
                                                  case["gtvSegmentId"], settings)
    roiNode = logic.makeDoseROIs(case["ct"], doseNode, case["gtvSegmentation"], case["gtvSegmentId"])
    table, features = logic.extractFeatures(case["ct"], doseNode, roiNode)
    library = dm.extract_dose_map_patient(
        dm.DoseMapInputs("pt_10", str(out / "ct.nrrd"), str(out / "gtv.nrrd"), str(png)), settings,
        keep_images=True)
    yield types.SimpleNamespace(
        td=td, out=out, logic=logic, case=case, png=png, rgb=rgb, settings=settings, section=section,
        spacing=spacing, truth=truth, true_dose=sitk.GetArrayFromImage(dose_slice), body=(cols, rows),
        doseNode=doseNode, report=report, roiNode=roiNode, table=table, features=features, library=library)
    slicer_session.scene.Clear(0)


def _registration_error_mm(picture, transform):
    """Distance (mm) between where the truth and ``transform`` put the CT body's pixel centres."""
    from DoseRadiomicsLib import dosemap as dm
    pts = np.stack(picture.body, axis=1) * picture.spacing
    return np.linalg.norm(dm.map_points(transform, pts) - dm.map_points(picture.truth, pts), axis=1) / picture.td.SCALE


def _transform(report):
    from DoseRadiomicsLib import dosemap as dm
    return dm._affine(np.array(report["transform"]["matrix"]), report["transform"]["translation_px"])


def test_picture_dose_node_is_the_librarys_dose_on_the_ct_slice(picture):
    import slicer

    got = slicer.util.arrayFromVolume(picture.doseNode)
    np.testing.assert_array_equal(got, sitk.GetArrayFromImage(picture.library.dose_on_ct))
    k = picture.section.index
    assert np.count_nonzero(np.delete(got, k, axis=0)) == 0            # one slice of dose, 0 Gy elsewhere
    # On the CT grid, as a dose volume (what makeDoseROIs/extract take from the RTDOSE route).
    ct, dose = picture.case["ct"], picture.doseNode
    for a, b in ((ct.GetSpacing(), dose.GetSpacing()), (ct.GetOrigin(), dose.GetOrigin())):
        np.testing.assert_array_equal(a, b)
    assert dose.GetAttribute("DoseRadiomics.DoseUnit") == "Gy"
    assert dose.GetAttribute("DoseRadiomics.AlignedDose") == "1"
    assert dose.GetAttribute("DoseRadiomics.DoseMapPicture") == str(picture.png)
    display = dose.GetDisplayNode()
    assert display.GetColorNode().GetName() == picture.logic.DOSE_COLOR_TABLE_NAME and display.GetApplyThreshold()
    # The report is the library's: the same registration, and its residuals for the panel.
    rec = picture.library.record["dose_map"]
    assert picture.report["registration"]["transform"] == rec["registration"]["transform"]
    assert picture.report["decoding"]["residual_levels"] == rec["decoding"]["residual_levels"]
    assert picture.report["gtv_slice_in_wash_fraction"] == picture.library.record["alignment"]["gtv_dose_coverage"]
    # Against the truth the picture was drawn from (not the library): under one CT pixel, 1 Gy RMS.
    assert _registration_error_mm(picture, _transform(picture.report["registration"])).max() < picture.spacing.min()
    shown = picture.true_dose >= picture.td.LOWEST_ISODOSE
    assert np.sqrt(np.mean((got[k][shown] - picture.true_dose[shown]) ** 2)) < 1.0
    text = picture.logic.describeDoseMapImport(picture.report)
    assert f"slice {k}" in text and "Registration metric" in text and "Colour fit residual" in text


def test_features_from_the_picture_equal_the_librarys(picture):
    from DoseRadiomicsLib.pipeline import feature_columns

    names = feature_columns(picture.library.features)
    assert list(picture.features) == names and len(names) == 3 * 1595
    assert {n: picture.features[n] for n in names} == {n: picture.library.features[n] for n in names}
    assert picture.table.GetAttribute("DoseRadiomics.SettingsHash") == picture.library.record["settings_hash"]
    areas = picture.logic.roiAreas(picture.roiNode, picture.case["ct"])
    assert areas == pytest.approx(picture.library.record["roi_areas_mm2"], rel=1e-12)


def _markups(scene, name, points_ras):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    for p in points_ras:
        node.AddControlPoint(*[float(v) for v in p])
    return node


def _ras(volumeNode, ijk):
    """World RAS of voxel indices, from the node's own IJK-to-RAS matrix and parent transform."""
    import vtk
    m = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(m)
    pts = [m.MultiplyPoint((*map(float, p), 1.0))[:3] for p in ijk]
    parent = volumeNode.GetParentTransformNode()
    if parent is not None:
        to_world = vtk.vtkGeneralTransform()
        parent.GetTransformToWorld(to_world)
        pts = [to_world.TransformPoint(*p) for p in pts]
    return np.array(pts)


def test_landmarks_placed_as_markups_give_the_librarys_landmarks_and_dose(picture, tmp_path):
    import slicer
    import vtk

    from DoseRadiomicsLib import dosemap as dm

    scene, logic, ctNode = slicer.mrmlScene, picture.logic, picture.case["ct"]
    section = logic.findLargestCrossSection(picture.case["gtvSegmentation"], picture.case["gtvSegmentId"], ctNode)
    pictureNode = logic.loadDoseMapPicture(str(picture.png), section=section)
    # The picture as a volume: voxel (i, j) is picture pixel (x, y); upright in an axial view.
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(pictureNode)[0], picture.rgb)
    m = vtk.vtkMatrix4x4()
    pictureNode.GetIJKToRASDirectionMatrix(m)
    assert [m.GetElement(r, r) for r in range(3)] == [-1.0, -1.0, 1.0]  # x -> patient left, y -> posterior
    # The user moved the picture in the scene: points placed on it move with it.
    shift = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "moved picture")
    move = vtk.vtkMatrix4x4()
    move.SetElement(0, 3, 31.5)
    move.SetElement(2, 3, -12.0)
    shift.SetMatrixTransformToParent(move)
    pictureNode.SetAndObserveTransformNodeID(shift.GetID())

    ct_px = np.array([[40, 50], [90, 45], [66, 85], [55, 70], [85, 75]], float)    # slice column, row
    ct_mm = ct_px * picture.spacing
    pic_px = dm.map_points(picture.truth, ct_mm)                                 # where the truth puts them
    k = picture.section.index
    ctMarkups = _markups(scene, "CT landmarks", _ras(ctNode, [(c, r, k) for c, r in ct_px]))
    picMarkups = _markups(scene, "picture landmarks", _ras(pictureNode, [(x, y, 0) for x, y in pic_px]))
    got_ct, got_pic, report = logic.landmarksFromMarkups(picMarkups, ctMarkups, pictureNode, ctNode, section)
    np.testing.assert_allclose(got_ct, ct_mm, atol=1e-9)
    np.testing.assert_allclose(got_pic, pic_px, atol=1e-9)
    assert report["pairs"] == 5 and report["max_distance_from_slice_mm"] < 1e-9
    # The library's own reading of the same CT points given in patient LPS mm (the CLI's CSV form),
    # computed by SimpleITK from the file: RAS vs LPS handled alike.
    ct_file = sitk.ReadImage(str(picture.out / "ct.nrrd"))
    lm = tmp_path / "landmarks.csv"
    with open(lm, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["picture_x", "picture_y", "ct_x_mm", "ct_y_mm", "ct_z_mm"])
        for p, (c, r) in zip(pic_px, ct_px):
            w.writerow([*p, *ct_file.TransformContinuousIndexToPhysicalPoint([c, r, float(k)])])
    lib_ct, lib_pic, _ = dm.read_landmarks(lm, ct_file, picture.section)
    np.testing.assert_allclose(got_ct, lib_ct, atol=1e-6)
    np.testing.assert_allclose(got_pic, lib_pic, atol=1e-9)
    # Landmarks in the panel are shown only in their own view.
    logic.showPictureForLandmarks(pictureNode, picMarkups, ctMarkups)
    assert picMarkups.GetDisplayNode().GetViewNodeIDs() == ("vtkMRMLSliceNodeYellow",)
    assert ctMarkups.GetDisplayNode().GetViewNodeIDs() == ("vtkMRMLSliceNodeRed",)

    # Import with the markups: exact pairs give the truth (residual 0) and the library's dose.
    settings = logic.doseMapSettings("colour-bar", picture.td.DOSE_RANGE, colourBar=picture.td.BAR)
    doseNode, rep = logic.importDoseMapPicture(str(picture.png), ctNode, picture.case["gtvSegmentation"],
                                               picture.case["gtvSegmentId"], settings,
                                               landmarks=(got_ct, got_pic, report))
    reg = rep["registration"]
    assert reg["pairs"] == 5 and reg["residual_rms_mm"] < 1e-6 and reg["landmarks"] == report
    assert _registration_error_mm(picture, _transform(reg)).max() < 1e-6
    library = dm.extract_dose_map_patient(
        dm.DoseMapInputs("pt_10", str(picture.out / "ct.nrrd"), str(picture.out / "gtv.nrrd"), str(picture.png),
                         landmarks=str(lm)), settings, keep_images=True)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(doseNode), sitk.GetArrayFromImage(library.dose_on_ct),
                               rtol=0, atol=1e-4)
    assert "Landmark residual 0.00 mm RMS" in logic.describeDoseMapImport(rep)
    # A point clicked 4 picture pixels off: the residual shows it, on that pair most.
    moved = picMarkups.GetNthControlPointPositionWorld(2)
    picMarkups.SetNthControlPointPositionWorld(2, moved[0] - 4.0, moved[1], moved[2])
    lm2 = logic.landmarksFromMarkups(picMarkups, ctMarkups, pictureNode, ctNode, section)
    _, rep2 = logic.importDoseMapPicture(str(picture.png), ctNode, picture.case["gtvSegmentation"],
                                         picture.case["gtvSegmentId"], settings, landmarks=lm2, outputNode=doseNode)
    per_pair = rep2["registration"]["residual_per_pair_mm"]
    assert rep2["registration"]["residual_rms_mm"] > 0.3 and int(np.argmax(per_pair)) == 2


def test_bad_landmarks_and_settings_get_clear_errors(picture):
    import slicer

    from DoseRadiomicsLib.errors import InputError

    scene, logic, ctNode = slicer.mrmlScene, picture.logic, picture.case["ct"]
    section = logic.findLargestCrossSection(picture.case["gtvSegmentation"], picture.case["gtvSegmentId"], ctNode)
    pictureNode = logic.loadDoseMapPicture(str(picture.png))
    k = picture.section.index
    ct3 = _ras(ctNode, [(40, 50, k), (90, 45, k), (70, 95, k)])
    pic3 = _ras(pictureNode, [(100, 100, 0), (300, 120, 0), (200, 300, 0)])
    with pytest.raises(InputError, match="3 landmark.* on the picture but 2 on the CT slice"):
        logic.landmarksFromMarkups(_markups(scene, "p", pic3), _markups(scene, "c", ct3[:2]), pictureNode, ctNode, section)
    off = _ras(ctNode, [(40, 50, k), (90, 45, k + 2), (70, 95, k)])
    with pytest.raises(InputError, match=r"CT landmark\(s\) \[2\] are not on the largest cross-section"):
        logic.landmarksFromMarkups(_markups(scene, "p", pic3), _markups(scene, "c", off), pictureNode, ctNode, section)
    outside = _ras(pictureNode, [(100, 100, 0), (900, 120, 0), (200, 300, 0)])
    with pytest.raises(InputError, match=r"picture landmark\(s\) \[2\] lie outside the picture"):
        logic.landmarksFromMarkups(_markups(scene, "p", outside), _markups(scene, "c", ct3), pictureNode, ctNode, section)
    two = logic.landmarksFromMarkups(_markups(scene, "p", pic3[:2]), _markups(scene, "c", ct3[:2]),
                                     pictureNode, ctNode, section)
    with pytest.raises(InputError, match="2 landmark pair.* at least 3"):
        logic.importDoseMapPicture(str(picture.png), ctNode, picture.case["gtvSegmentation"],
                                   picture.case["gtvSegmentId"], picture.settings, landmarks=two)
    with pytest.raises(InputError, match="the colour bar box must be 4 numbers"):
        logic.doseMapSettings("colour-bar", (0, 75), colourBar="500 80 520")
    with pytest.raises(InputError, match="the dose range must be 2 numbers"):
        logic.doseMapSettings("colour-table", "75")
    with pytest.raises(InputError, match="unknown dose-map mode"):
        logic.doseMapSettings("heat", (0, 75))
    with pytest.raises(InputError, match="no dose-map picture given"):
        logic.importDoseMapPicture("", ctNode, picture.case["gtvSegmentation"], picture.case["gtvSegmentId"],
                                   picture.settings)
    # Intensity and colour-table settings reach the library as given.
    s = logic.doseMapSettings("colour-table", (0, 75), colourTable="rainbow", opacity="0.4", registration="affine")
    assert (s.mode, s.colour_table, s.opacity, s.registration, s.dose_range) == ("colour-table", "rainbow", 0.4,
                                                                                   "affine", (0.0, 75.0))
    assert logic.doseMapSettings("intensity", (0, 75), colourTable="jet").colour_table is None
