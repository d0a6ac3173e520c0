"""The dose-map picture route against a picture whose truth is known.

The bundled patient's dose slice is drawn over its CT the way a planning system shows it (CT in a
soft-tissue window, jet wash at 50 % opacity from 5 Gy up, a colour bar with labels beside it),
shifted, scaled and rotated by a known transform, saved as PNG and read back. What a user checks:
the registration puts CT points where the truth puts them (under one CT pixel), the recovered dose
equals the true dose (within 1 Gy RMS where the wash shows it), and the features equal those of the
RTDOSE route on the same patient.
"""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image, ImageDraw

from DoseRadiomicsLib import dosemap as dm
from DoseRadiomicsLib import dosemap_colour as dc
from make_rt_fixtures import save_dicom_file
from DoseRadiomicsLib.crosssection import largest_cross_section
from DoseRadiomicsLib.errors import InputError
from DoseRadiomicsLib.pipeline import PatientInputs, extract_patient, feature_columns

from conftest import REPO

SAMPLE = REPO / "Resources" / "SampleData" / "OpenKBP-pt_10"
DOSE_RANGE = (0.0, 75.0)
LOWEST_ISODOSE = 5.0
OPACITY = 0.5
SIZE = (560, 480)                       # picture columns, rows
BAR = (500, 80, 520, 400)               # colour bar x0, y0, x1, y1 (vertical, 75 Gy on top)
SCALE, ANGLE_DEG = 1.9, -14.0           # picture pixels per mm, rotation


def _table_colours(table, dose):
    return np.stack([np.interp(dose, table.doses, table.colours[:, k]) for k in range(3)], axis=-1)


def true_transform(centre_mm):
    """CT-slice mm -> picture pixels: the body centre lands left of the picture's middle."""
    a = np.radians(ANGLE_DEG)
    m = SCALE * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    t = np.array([SIZE[0] * 0.43, SIZE[1] * 0.52]) - m @ centre_mm
    return dm._affine(m, t)


def render(ct_slice, dose_slice, transform, grey_only=False):
    """The planning system's picture (uint8 RGB), the true dose and the CT grey at each picture pixel."""
    ref = sitk.Image(list(SIZE), sitk.sitkFloat32)
    inverse = transform.GetInverse()
    ct = sitk.GetArrayFromImage(sitk.Resample(ct_slice, ref, inverse, sitk.sitkLinear, -1024.0))
    dose = sitk.GetArrayFromImage(sitk.Resample(dose_slice, ref, inverse, sitk.sitkLinear, 0.0))
    if grey_only:   # a grey dose map: black 0 Gy, white 75 Gy
        grey = np.clip(dose / DOSE_RANGE[1], 0, 1)
        return np.round(np.repeat(grey[..., None], 3, axis=2) * 255).astype(np.uint8), dose, grey
    table = dc.load_colour_table("jet", DOSE_RANGE).densified()
    grey = np.clip((ct + 160.0) / 400.0, 0, 1)            # window level 40, width 400
    rgb = np.repeat(grey[..., None], 3, axis=2)
    wash = dose >= LOWEST_ISODOSE
    rgb[wash] = OPACITY * _table_colours(table, dose[wash]) + (1 - OPACITY) * grey[wash][:, None]
    x0, y0, x1, y1 = BAR
    rgb[y0 - 2:y1 + 3, x0 - 2:x1 + 3] = 1.0               # white frame
    bar_dose = DOSE_RANGE[1] * (y1 - np.arange(y0, y1 + 1)) / (y1 - y0)
    rgb[y0:y1 + 1, x0:x1 + 1] = _table_colours(table, bar_dose)[:, None, :]
    im = Image.fromarray(np.round(rgb * 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    draw.text((x0 - 40, y0 - 5), "75 Gy", fill=(255, 255, 255))
    draw.text((x0 - 32, y1 - 5), "0 Gy", fill=(255, 255, 255))
    draw.text((10, 10), "Plan 1  axial", fill=(255, 255, 0))
    return np.asarray(im), dose, np.clip((ct + 160.0) / 400.0, 0, 1)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    out = tmp_path_factory.mktemp("dosemap")
    ct = sitk.ReadImage(str(SAMPLE / "ct.nrrd"))
    dose = sitk.ReadImage(str(SAMPLE / "dose.nrrd"))
    gtv = sitk.ReadImage(str(SAMPLE / "mask_PTV70.nrrd"))
    section = largest_cross_section(gtv)
    ct_slice, dose_slice = dm.slice_image_2d(ct, section), dm.slice_image_2d(dose, section)
    body = sitk.GetArrayFromImage(ct_slice) > -400
    rows, cols = np.nonzero(body)
    spacing = np.array(ct_slice.GetSpacing())
    centre = np.array([cols.mean(), rows.mean()]) * spacing
    truth = true_transform(centre)
    rgb, dose_px, grey_px = render(ct_slice, dose_slice, truth)
    Image.fromarray(rgb).save(out / "dosemap.png")
    return {"out": out, "ct": ct, "section": section, "ct_slice": ct_slice,
            "dose_slice": sitk.GetArrayFromImage(dose_slice), "truth": truth, "dose_px": dose_px, "grey_px": grey_px,
            "body_points_mm": np.stack([cols, rows], axis=1) * spacing, "rgb": rgb,
            "png": out / "dosemap.png", "spacing": spacing}


@pytest.fixture(scope="module")
def routes(case):
    """The same patient through the RTDOSE route and through the picture route (colour bar)."""
    rt = extract_patient(PatientInputs("pt_10", str(SAMPLE / "ct.nrrd"), str(SAMPLE / "dose.nrrd"),
                                       str(SAMPLE / "mask_PTV70.nrrd"), dose_unit="Gy"))
    settings = dm.DoseMapSettings("colour-bar", DOSE_RANGE, colour_bar=BAR)
    pic = dm.extract_dose_map_patient(
        dm.DoseMapInputs("pt_10", str(SAMPLE / "ct.nrrd"), str(SAMPLE / "mask_PTV70.nrrd"), str(case["png"])),
        settings, keep_images=True)
    return rt, pic


def _registration_error_mm(case, transform):
    """Distance (mm) between where the truth and ``transform`` put the CT body's pixel centres."""
    pts = case["body_points_mm"]
    return np.linalg.norm(dm.map_points(transform, pts) - dm.map_points(case["truth"], pts), axis=1) / SCALE


# ----------------------------------------------------------------------------- colour decoding

def test_colour_bar_decoding_recovers_the_dose_and_opacity_in_picture_pixels(case):
    pic = dc.read_dose_map_picture(case["png"])
    decoded = dm.decode_picture(pic, dm.DoseMapSettings("colour-bar", DOSE_RANGE, colour_bar=BAR))
    shown = case["dose_px"] >= LOWEST_ISODOSE
    shown[:, BAR[0] - 2:] = False
    assert decoded.report["opacity"] == pytest.approx(OPACITY, abs=0.02)
    assert decoded.report["opacity_source"] == "estimated"
    # the wash is exactly the shown region (bar, labels and text excluded) up to a few edge pixels
    assert (decoded.wash != shown).sum() <= 0.002 * shown.sum()
    both = decoded.wash & shown
    rms = np.sqrt(np.mean((decoded.dose[both] - case["dose_px"][both]) ** 2))
    assert rms < 0.3, rms
    assert decoded.report["residual_levels"]["median"] < 1.5      # of 255: 8-bit rounding only
    assert np.isnan(decoded.dose[~decoded.wash]).all()
    assert decoded.report["wash_dose_range_gy"][0] == pytest.approx(LOWEST_ISODOSE, abs=0.3)
    # the grey under the wash (what registration sees) is the CT's windowed grey
    grey_error = decoded.grey[both] - case["grey_px"][both]
    assert np.sqrt(np.mean(grey_error ** 2)) < 0.01


def test_named_colour_table_gives_the_same_dose_as_the_bar(case):
    pic = dc.read_dose_map_picture(case["png"])
    by_bar = dm.decode_picture(pic, dm.DoseMapSettings("colour-bar", DOSE_RANGE, colour_bar=BAR))
    by_table = dm.decode_picture(pic, dm.DoseMapSettings("colour-table", DOSE_RANGE, colour_table="jet",
                                                         exclude_boxes=(BAR,), opacity=OPACITY))
    both = by_bar.wash & by_table.wash
    assert both.sum() > 0.99 * by_bar.wash.sum()
    assert np.sqrt(np.mean((by_bar.dose[both] - by_table.dose[both]) ** 2)) < 0.3
    assert by_table.report["opacity_source"] == "given"
    assert set(dc.available_colour_tables()) >= {"jet", "rainbow"}
    rainbow = dc.load_colour_table("rainbow", (10, 60))
    assert rainbow.doses[0] == 10 and rainbow.doses[-1] == 60
    assert rainbow.colours[0].tolist() == [0, 0, 1] and rainbow.colours[-1].tolist() == [1, 0, 0]


def test_jpeg_and_dicom_secondary_capture_pictures(case, tmp_path):
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    png = dc.read_dose_map_picture(case["png"])
    # DICOM secondary capture, RGB: the same pixels as the PNG
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.7", generate_uid(), "OT"
    ds.Rows, ds.Columns = case["rgb"].shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = case["rgb"].tobytes()
    save_dicom_file(ds, tmp_path / "dosemap.dcm")
    sc = dc.read_dose_map_picture(tmp_path / "dosemap.dcm")
    assert sc.details["format"] == "DICOM" and np.array_equal(sc.rgb, png.rgb)
    # JPEG at quality 90: compression noise, the dose still within 1 Gy RMS where it is shown
    Image.fromarray(case["rgb"]).save(tmp_path / "dosemap.jpg", quality=90)
    jpg = dc.read_dose_map_picture(tmp_path / "dosemap.jpg")
    decoded = dm.decode_picture(jpg, dm.DoseMapSettings("colour-bar", DOSE_RANGE, colour_bar=BAR))
    both = decoded.wash & (case["dose_px"] >= LOWEST_ISODOSE)
    rms = np.sqrt(np.mean((decoded.dose[both] - case["dose_px"][both]) ** 2))
    assert rms < 1.0, rms
    assert both.sum() > 0.97 * (case["dose_px"][:, :BAR[0] - 2] >= LOWEST_ISODOSE).sum()


# ----------------------------------------------------------------------------- registration

def test_intensity_registration_error_is_under_one_ct_pixel(case, routes):
    _, pic = routes
    reg = pic.record["dose_map"]["registration"]
    tx = dm._affine(np.array(reg["transform"]["matrix"]), reg["transform"]["translation_px"])
    err = _registration_error_mm(case, tx)
    pixel = case["spacing"].min()
    assert err.max() < pixel, (err.mean(), err.max())
    assert err.mean() < 0.25 * pixel
    assert reg["transform"]["scale_px_per_mm"] == pytest.approx(SCALE, rel=0.01)
    assert reg["transform"]["rotation_deg"] == pytest.approx(ANGLE_DEG, abs=0.5)
    assert np.isfinite(reg["final_metric"]) and reg["final_metric"] < 0


def test_affine_registration_also_lands_under_one_ct_pixel(case):
    pic = dc.read_dose_map_picture(case["png"])
    decoded = dm.decode_picture(pic, dm.DoseMapSettings("colour-bar", DOSE_RANGE, colour_bar=BAR))
    tx, report = dm.register_picture(decoded, case["ct_slice"], "affine")
    err = _registration_error_mm(case, tx)
    assert err.max() < case["spacing"].min(), (err.mean(), err.max())
    assert report["kind"] == "affine" and report["transform"]["anisotropy"] < 1.02


def test_landmarks_recover_the_transform_and_report_their_residual(case, tmp_path):
    rng = np.random.default_rng(7)
    ct_px = np.array([[40, 50], [90, 45], [70, 95], [55, 70], [85, 80]], float)   # slice column, row
    ct_mm = ct_px * case["spacing"]
    pic_px = dm.map_points(case["truth"], ct_mm)
    # exact pairs: the transform itself, residual 0
    tx, rep = dm.fit_landmarks(ct_mm[:3], pic_px[:3], "similarity")
    assert _registration_error_mm(case, tx).max() < 1e-6 and rep["residual_rms_mm"] < 1e-6
    # pairs clicked with 1-pixel noise: residual near the noise, error still well under a CT pixel
    noisy = pic_px + rng.normal(0, 1.0, pic_px.shape)
    for kind in ("similarity", "affine"):
        tx, rep = dm.fit_landmarks(ct_mm, noisy, kind)
        assert 0.1 < rep["residual_rms_px"] < 2.0 and rep["pairs"] == 5
        assert rep["residual_rms_mm"] == pytest.approx(rep["residual_rms_px"] / SCALE, rel=0.05)
        assert _registration_error_mm(case, tx).max() < 0.5 * case["spacing"].min()
    # the CSV forms: slice pixels, or patient LPS millimetres as Slicer shows them
    ct = case["ct"]
    k = case["section"].index
    rows = [{"picture_x": p[0], "picture_y": p[1], "ct_x_mm": "", "ct_y_mm": "", "ct_z_mm": "",
             "ct_column": c[0], "ct_row": c[1]} for p, c in zip(pic_px[:2], ct_px[:2])]
    for p, c in zip(pic_px[2:], ct_px[2:]):
        x, y, z = ct.TransformContinuousIndexToPhysicalPoint([float(c[0]), float(c[1]), float(k)])
        rows.append({"picture_x": p[0], "picture_y": p[1], "ct_x_mm": x, "ct_y_mm": y, "ct_z_mm": z,
                     "ct_column": "", "ct_row": ""})
    with open(tmp_path / "lm.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    got_ct, got_pic, lm = dm.read_landmarks(tmp_path / "lm.csv", ct, case["section"])
    assert np.allclose(got_ct, ct_mm, atol=1e-6) and np.allclose(got_pic, pic_px)
    assert lm["pairs"] == 5 and lm["max_distance_from_slice_mm"] < 1e-6


# ----------------------------------------------------------------------------- dose and features

def test_recovered_dose_on_the_ct_slice_is_within_1_gy_rms(case, routes):
    _, pic = routes
    k = case["section"].index
    got = sitk.GetArrayFromImage(pic.dose_on_ct)
    true = case["dose_slice"]
    shown = true >= LOWEST_ISODOSE
    rms = np.sqrt(np.mean((got[k][shown] - true[shown]) ** 2))
    assert rms < 1.0, rms
    assert np.count_nonzero(np.delete(got, k, axis=0)) == 0          # every other slice is 0 Gy
    on = pic.record["dose_map"]["on_ct"]
    assert abs(on["ct_slice_pixels_in_wash"] - shown.sum()) <= 0.03 * shown.sum()


def test_picture_route_features_match_the_rtdose_route(routes):
    rt, pic = routes
    names = feature_columns(rt.features)
    assert feature_columns(pic.features) == names and len(names) == 3 * 1595
    assert pic.record["expected_features_per_roi"] == rt.record["expected_features_per_roi"]
    assert pic.record["settings_hash"] == rt.record["settings_hash"]
    f_rt, f_pic = rt.features, pic.features
    # the GTV on CT does not depend on the dose: identical
    gtv = [c for c in names if c.startswith("GTV__")]
    assert all(f_rt[c] == f_pic[c] for c in gtv)
    a_rt, a_pic = f_rt["diag__50Gy-heat_area_mm2"], f_pic["diag__50Gy-heat_area_mm2"]
    assert a_pic == pytest.approx(a_rt, rel=0.05)
    for roi in ("GTV-heat", "50Gy-heat"):
        assert f_pic[f"{roi}__original_firstorder_Mean"] == pytest.approx(f_rt[f"{roi}__original_firstorder_Mean"], abs=1.0)
        assert f_pic[f"{roi}__original_firstorder_Median"] == pytest.approx(f_rt[f"{roi}__original_firstorder_Median"], abs=1.0)
        cols = [c for c in names if c.startswith(roi + "__")]
        a = np.array([f_rt[c] for c in cols])
        b = np.array([f_pic[c] for c in cols])
        within = np.abs(b - a) <= 0.10 * np.maximum(np.abs(a), 1e-12)
        # measured 1,312 (GTV-heat) and 1,289 (50Gy-heat) of 1,595; texture at 0.5 Gy bins is fragile
        assert within.sum() >= 0.70 * len(cols), (roi, int(within.sum()))


def test_record_holds_registration_and_colour_fit(routes, tmp_path):
    from DoseRadiomicsLib.pipeline import write_patient_outputs

    _, pic = routes
    paths = write_patient_outputs(pic, tmp_path)
    record = json.loads(paths["record"].read_text())
    dmap = record["dose_map"]
    assert record["route"] == "dose-map picture"
    assert dmap["decoding"]["table"]["kind"] == "colour bar" and dmap["decoding"]["table"]["box"] == list(BAR)
    assert dmap["decoding"]["residual_levels"]["rms"] < 3
    assert dmap["registration"]["method"].startswith("intensity registration (similarity")
    assert record["alignment"]["gtv_dose_coverage"] == 1.0
    with open(paths["features"], newline="") as fh:
        row = next(csv.DictReader(fh))
    assert len(feature_columns(row)) == 3 * 1595


# ----------------------------------------------------------------------------- command line

def _cli(argv) -> int:
    """``doseradiomics extract-dosemap`` as cli.main runs it (errors -> message, exit code 1)."""
    from DoseRadiomicsLib.errors import DoseRadiomicsError

    parser = argparse.ArgumentParser(prog="doseradiomics")
    dm.register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except DoseRadiomicsError as exc:
        import sys
        print(f"doseradiomics {args.command}: error: {exc}", file=sys.stderr)
        return 1


def test_cli_intensity_mode_with_landmarks(case, tmp_path, capsys):
    """A grey dose map (the paper's DICOM conversion), placed by landmarks."""
    dose_slice = sitk.GetImageFromArray(case["dose_slice"].astype(np.float32))
    dose_slice.CopyInformation(case["ct_slice"])
    grey, _, _ = render(case["ct_slice"], dose_slice, case["truth"], grey_only=True)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    ct_px = np.array([[40, 50], [90, 45], [70, 95], [85, 80]], float)
    pic_px = dm.map_points(case["truth"], ct_px * case["spacing"])
    with open(tmp_path / "lm.csv", "w") as fh:
        fh.write("picture_x,picture_y,ct_column,ct_row\n")
        for p, c in zip(pic_px, ct_px):
            fh.write(f"{p[0]:.2f},{p[1]:.2f},{c[0]:g},{c[1]:g}\n")
    out = tmp_path / "out"
    code = _cli(["extract-dosemap", "--ct", str(SAMPLE / "ct.nrrd"), "--gtv", str(SAMPLE / "mask_PTV70.nrrd"),
                 "--dose-map", str(tmp_path / "grey.png"), "--intensity", "--dose-range", "0", "75",
                 "--landmarks", str(tmp_path / "lm.csv"), "--patient-id", "pt_10", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "extraction.json").read_text())
    reg = record["dose_map"]["registration"]
    assert reg["pairs"] == 4 and reg["residual_rms_mm"] < 0.05      # coordinates rounded to 0.01 px
    assert record["dose_map"]["decoding"]["mode"] == "intensity"
    with open(out / "features.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert len(feature_columns(row)) == 3 * 1595 and row["patient_id"] == "pt_10"
    true_mean = case["dose_slice"][case["dose_slice"] >= 50].mean()
    assert float(row["50Gy-heat__original_firstorder_Mean"]) == pytest.approx(true_mean, abs=0.5)
    assert (out / "slice.png").read_bytes()[:4] == b"\x89PNG"


# ----------------------------------------------------------------------------- bad input

def test_clear_errors_for_bad_input(case, tmp_path, capsys):
    pic = dc.read_dose_map_picture(case["png"])
    # a picture with no wash (grey CT only)
    grey = np.repeat(pic.luminance()[..., None], 3, axis=2)
    Image.fromarray(np.round(grey * 255).astype(np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(InputError, match="no colour wash") as e:
        dm.decode_picture(dc.read_dose_map_picture(tmp_path / "grey.png"),
                          dm.DoseMapSettings("colour-table", DOSE_RANGE, colour_table="jet"))
    assert "grey.png" in str(e.value)
    # a colour bar box outside the picture
    with pytest.raises(InputError, match=r"outside the picture, which is 560 x 480"):
        dm.decode_picture(pic, dm.DoseMapSettings("colour-bar", DOSE_RANGE, colour_bar=(500, 80, 600, 400)))
    # a bar box on grey pixels
    with pytest.raises(InputError, match="holds grey"):
        dm.decode_picture(pic, dm.DoseMapSettings("colour-bar", DOSE_RANGE, colour_bar=(5, 400, 30, 470)))
    # fewer than three landmarks, or three on a line
    with pytest.raises(InputError, match="2 landmark pair.* at least 3"):
        dm.fit_landmarks([[0, 0], [10, 0]], [[5, 5], [25, 5]])
    with pytest.raises(InputError, match="on one line"):
        dm.fit_landmarks([[0, 0], [10, 0], [20, 0]], [[5, 5], [25, 5], [45, 5]])
    # an unknown table names the bundled ones; a file that is not a picture names the file
    with pytest.raises(InputError, match="unknown colour table 'viridis'.*jet"):
        dc.load_colour_table("viridis", DOSE_RANGE)
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(InputError, match="unknown dose-map picture type") as e:
        dc.read_dose_map_picture(tmp_path / "notes.txt")
    assert "notes.txt" in str(e.value)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    with pytest.raises(InputError, match="cannot be read"):
        dc.read_dose_map_picture(tmp_path / "broken.png")
    # on the command line: one clear line naming the patient and the file, exit code 1
    with open(tmp_path / "two.csv", "w") as fh:
        fh.write("picture_x,picture_y,ct_column,ct_row\n1,2,3,4\n5,6,7,9\n")
    code = _cli(["extract-dosemap", "--ct", str(SAMPLE / "ct.nrrd"), "--gtv", str(SAMPLE / "mask_PTV70.nrrd"),
                 "--dose-map", str(case["png"]), "--colour-bar", *map(str, BAR), "--dose-range", "0", "75",
                 "--landmarks", str(tmp_path / "two.csv"), "--patient-id", "pt_10", "--quiet",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and "patient pt_10" in err and "2 landmark pair(s) given; at least 3" in err
