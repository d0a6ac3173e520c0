"""doseradiomics robustness: the perturbations do what they say, the run on real patients, resuming,
the ICC table, and train --min-icc."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from DoseRadiomicsLib import robustness as rb
from DoseRadiomicsLib.errors import InputError

# ----------------------------------------------------------------------------- the operations


def disc(n=41, r=12.3, centre=(20.0, 20.0)):
    yy, xx = np.mgrid[:n, :n]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= r * r


def test_erosion_and_dilation_by_one_pixel():
    m = disc()
    inner, outer = rb.erode_mask(m), rb.dilate_mask(m)
    # by the definition, from the four neighbours directly
    pad = np.pad(m, 1)
    neighbours = [pad[1:-1, :-2], pad[1:-1, 2:], pad[:-2, 1:-1], pad[2:, 1:-1]]
    assert np.array_equal(inner, m & np.logical_and.reduce(neighbours))
    assert np.array_equal(outer, m | np.logical_or.reduce(neighbours))
    assert inner.sum() < m.sum() < outer.sum()
    # a disc of radius r loses / gains about one perimeter's worth of pixels
    perimeter = 2 * np.pi * 12.3
    assert 0.6 * perimeter < m.sum() - inner.sum() < 1.4 * perimeter
    assert 0.6 * perimeter < outer.sum() - m.sum() < 1.4 * perimeter


def test_shift_of_a_whole_pixel_moves_the_mask_and_a_sub_pixel_shift_moves_its_centroid():
    m = disc()
    assert np.array_equal(rb.shift_mask(m, 1, 0), np.roll(m, 1, axis=1))     # +x = +column
    assert np.array_equal(rb.shift_mask(m, 0, -2), np.roll(m, -2, axis=0))   # -y = -row
    moved = rb.shift_mask(m, 0.4, 0.3)
    c0, c1 = np.argwhere(m).mean(axis=0), np.argwhere(moved).mean(axis=0)
    assert 0 < c1[1] - c0[1] < 1 and 0 < c1[0] - c0[0] < 1
    assert abs(int(moved.sum()) - int(m.sum())) < 0.1 * m.sum()


def test_rotation_equals_simpleitk_resampling_with_anisotropic_pixels():
    rng = np.random.default_rng(3)
    from scipy import ndimage
    img = ndimage.gaussian_filter(rng.normal(size=(60, 50)), 3)
    sy, sx = 0.8, 1.25                       # mm per row, per column
    centre_rc = (31.3, 22.7)
    ours = rb.rotate_array(img, 4.0, centre_rc, (sy, sx), cval=-5.0)
    # SimpleITK (x = column, y = row): an Euler2D transform maps output points to input points, so
    # content turning by +theta from the row axis to the column axis is angle +theta in (x, y)
    s = sitk.GetImageFromArray(img)
    s.SetSpacing((sx, sy))
    t = sitk.Euler2DTransform()
    t.SetCenter((centre_rc[1] * sx, centre_rc[0] * sy))
    t.SetAngle(np.radians(4.0))
    ref = sitk.GetArrayFromImage(sitk.Resample(s, s, t, sitk.sitkLinear, -5.0))
    inner = (slice(5, -5), slice(5, -5))
    assert np.allclose(ours[inner], ref[inner], atol=1e-9)
    # a quarter turn of a square-pixel rectangle about its centre is its transpose
    rect = np.zeros((21, 21))
    rect[8:13, 3:18] = 1
    assert np.array_equal(rb.rotate_array(rect, 90, (10, 10), (1, 1)) >= 0.5, rect.T >= 0.5)


def _slice_patient(pid="p1"):
    """A PatientSlice of a synthetic one-slice CT (int16 HU), dose and disc GTV."""
    from DoseRadiomicsLib.crosssection import CrossSection
    from DoseRadiomicsLib.rois import make_rois

    yy, xx = np.mgrid[:64, :64]
    ct = sitk.GetImageFromArray((40 + 0 * xx)[None].astype(np.int16))
    dose = sitk.GetImageFromArray((60.0 - 0.1 * np.hypot(yy - 32, xx - 32))[None].astype(np.float32))
    gtv = sitk.GetImageFromArray(disc(64, 10, (32, 32))[None].astype(np.uint8))
    for img in (dose, gtv):
        img.CopyInformation(ct)
    section = CrossSection(axis=2, index=0, position_mm=0.0, area_mm2=float(gtv_area := disc(64, 10, (32, 32)).sum()))
    return rb.PatientSlice(pid, None, section, make_rois(ct, dose, gtv, section, isodose_gy=(59.0,))), gtv_area


def test_ct_noise_is_seeded_scanner_level_and_touches_only_the_ct():
    from DoseRadiomicsLib.pipeline import ExtractionOptions

    options = ExtractionOptions(isodose_gy=(59.0,))
    ps, _ = _slice_patient()
    noise = rb.parse_perturbation("noise:10")
    a = rb.perturbed_rois(ps, noise, options, seed=5)
    diff = sitk.GetArrayFromImage(a.ct).astype(float) - 40
    assert sitk.GetArrayFromImage(a.ct).dtype == np.int16                # whole HU, as stored
    assert abs(diff.mean()) < 0.3 and 9.5 < diff.std() < 10.5
    assert rb._changed_rois(ps.rois, a) == ["GTV"]
    again = rb.perturbed_rois(ps, noise, options, seed=5)
    assert np.array_equal(sitk.GetArrayFromImage(again.ct), sitk.GetArrayFromImage(a.ct))
    other, _ = _slice_patient("p2")
    assert not np.array_equal(sitk.GetArrayFromImage(rb.perturbed_rois(other, noise, options, seed=5).ct),
                              sitk.GetArrayFromImage(a.ct))
    # the dose scaled: the isodose ROI follows the dose, the GTV stays
    up = rb.perturbed_rois(ps, rb.parse_perturbation("dose-scale:1.01"), options)
    assert rb._changed_rois(ps.rois, up) == ["GTV-heat", "59Gy-heat"]
    assert up.pixel_counts()["59Gy-heat"] > ps.rois.pixel_counts()["59Gy-heat"]


def test_perturbation_names_and_errors():
    assert [p.name for p in rb.parse_perturbations(["rotate", "shift:-0.3,0.25", "noise:10"])] == \
        ["rotate:3", "shift:-0.3,0.25", "noise:10"]
    with pytest.raises(InputError, match="unknown perturbation 'blur'.*erode, dilate, shift:X,X"):
        rb.parse_perturbation("blur")
    with pytest.raises(InputError, match="takes 2 finite number"):
        rb.parse_perturbation("shift:0.5")
    with pytest.raises(InputError, match="sub-voxel"):
        rb.parse_perturbation("dose-grid-shift:1.5")
    with pytest.raises(InputError, match="given twice: rotate:3"):
        rb.parse_perturbations(["rotate", "rotate:3"])


# ----------------------------------------------------------------------------- real patients

PATIENTS = ("pt_1", "pt_10", "pt_11")
PERTURBATIONS = ("erode", "dilate", "rotate:3", "noise:10", "dose-scale:1.01", "dose-grid-shift:0.5")
# a light configuration keeps this cheap: what is tested is the perturbation and ICC machinery
LIGHT = """imageType:
  Original: {}
featureClass:
  firstorder:
  glcm:
setting:
  binWidth: %s
  label: 1
  preCrop: true
  padDistance: 5
  additionalInfo: false
"""


@pytest.fixture(scope="module")
def cohort(openkbp, tmp_path_factory):
    from DoseRadiomicsLib.cohort import run_cohort
    from DoseRadiomicsLib.pipeline import ExtractionOptions

    d = tmp_path_factory.mktemp("robust")
    (d / "ct.yaml").write_text(LIGHT % 25)
    (d / "dose.yaml").write_text(LIGHT % 0.5)
    rows = ["patient_id,ct,dose,gtv,dose_unit"]
    for p in PATIENTS:
        f = openkbp(p)
        rows.append(f"{p},{f / 'ct.nrrd'},{f / 'dose.nrrd'},{f / 'mask_PTV70.nrrd'},Gy")
    (d / "manifest.csv").write_text("\n".join(rows) + "\n")
    options = ExtractionOptions(ct_params=str(d / "ct.yaml"), dose_params=str(d / "dose.yaml"))
    run_cohort(d / "manifest.csv", d / "features", options, workers=1, progress=False)
    result = rb.run_robustness(d / "manifest.csv", d / "features", d / "rob", patients=list(PATIENTS),
                               perturbations=PERTURBATIONS, seed=7, progress=False)
    return d, result


def _patient(d, pid):
    return json.loads((d / "rob" / "patients" / f"{pid}.json").read_text())


def _values(d, pid):
    doc = _patient(d, pid)
    columns = json.loads((d / "rob" / "columns" / f"{doc['columns']}.json").read_text())
    return {n: dict(zip(columns, v)) for n, v in doc["values"].items()}


def test_robustness_csv_and_record(cohort):
    d, result = cohort
    table = pd.read_csv(d / "rob" / "robustness.csv")
    features = pd.read_csv(d / "features" / "features.csv")
    cols = [c for c in features.columns if "__" in c and not c.startswith("diag__")]
    assert list(table["column"]) == cols
    assert set(table["roi"]) == {"GTV", "GTV-heat", "50Gy-heat"}
    assert (table["n_patients"] == 3).all() and (table["n_perturbations"] == len(PERTURBATIONS)).all()
    assert set(table["settings_hash"]) == set(features["settings_hash"])
    ok = table["icc"].notna()
    assert ok.sum() > 0.9 * len(table)
    assert ((table.loc[ok, "ci_low"] <= table.loc[ok, "icc"]) & (table.loc[ok, "icc"] <= table.loc[ok, "ci_high"])).all()
    record = json.loads((d / "rob" / "robustness.json").read_text())
    assert record["sample"]["patients"] == list(PATIENTS) and record["seed"] == 7
    assert [p["name"] for p in record["perturbations"]] == list(PERTURBATIONS)
    assert "not re-chosen" in record["cross_section"]
    assert record["icc"]["raters"] == ["unperturbed"] + list(PERTURBATIONS)
    each = record["icc"]["by_perturbation"]
    assert list(each) == list(PERTURBATIONS)
    assert all(sum(v[k] for k in ("at_least_0.75", "below_0.75", "undefined")) == len(table) for v in each.values())
    # one feature's ICC from the stored values, by the Shrout & Fleiss formula written out here
    col = "GTV-heat__original_firstorder_Mean"
    Y = np.array([[rb._reference(d / "features", p)[1][col]] + [_values(d, p)[n][col] for n in PERTURBATIONS] for p in PATIENTS])
    n, k = Y.shape
    msr = k * ((Y.mean(1) - Y.mean()) ** 2).sum() / (n - 1)
    mse = ((Y - Y.mean(1, keepdims=True) - Y.mean(0, keepdims=True) + Y.mean()) ** 2).sum() / ((n - 1) * (k - 1))
    assert table.set_index("column").loc[col, "icc"] == pytest.approx((msr - mse) / (msr + (k - 1) * mse), rel=1e-8)


def test_perturbations_change_what_they_say_on_real_patients(cohort):
    d, _ = cohort
    for pid in PATIENTS:
        doc, values = _patient(d, pid), _values(d, pid)
        ref = rb._reference(d / "features", pid)[1]     # the stored values, bit for bit
        px = {n: r["pixels"] for n, r in doc["rois"].items()}
        assert px["erode"]["GTV"] < px["unperturbed"]["GTV"] < px["dilate"]["GTV"]
        assert px["erode"]["50Gy-heat"] == px["unperturbed"]["50Gy-heat"]           # dose untouched
        assert abs(px["rotate:3"]["GTV"] - px["unperturbed"]["GTV"]) <= 0.05 * px["unperturbed"]["GTV"]
        assert doc["rois"]["noise:10"]["changed"] == ["GTV"]
        assert doc["rois"]["dose-scale:1.01"]["changed"] == ["GTV-heat", "50Gy-heat"]
        # the GTV's dose scaled by 1.01: its mean and maximum dose exactly so
        scaled = values["dose-scale:1.01"]
        for f in ("original_firstorder_Mean", "original_firstorder_Maximum"):
            assert scaled[f"GTV-heat__{f}"] == pytest.approx(1.01 * ref[f"GTV-heat__{f}"], rel=1e-6)
        # the CT untouched by dose perturbations, the dose by CT noise
        same = lambda a, b: a == b or (a != a and b != b)   # noqa: E731 - NaN is NaN
        assert all(same(scaled[c], ref[c]) for c in scaled if c.startswith("GTV__"))
        noisy = values["noise:10"]
        assert all(same(noisy[c], ref[c]) for c in noisy if not c.startswith("GTV__"))
        # zero-mean noise of 10 HU over N pixels moves the mean by about 10 / sqrt(N)
        n = px["unperturbed"]["GTV"]
        assert abs(noisy["GTV__original_firstorder_Mean"] - ref["GTV__original_firstorder_Mean"]) < 5 * 10 / np.sqrt(n)
        # another planning system's dose grid: the GTV's mean dose within 2 %
        shifted = values["dose-grid-shift:0.5"]["GTV-heat__original_firstorder_Mean"]
        assert shifted != ref["GTV-heat__original_firstorder_Mean"]
        assert shifted == pytest.approx(ref["GTV-heat__original_firstorder_Mean"], rel=0.02)


def test_rerun_skips_done_patients_and_a_parallel_resume_gives_the_same_table(cohort, tmp_path):
    d, first = cohort
    out = tmp_path / "rob"
    shutil.copytree(d / "rob", out)
    again = rb.run_robustness(d / "manifest.csv", d / "features", out, patients=list(PATIENTS),
                              perturbations=PERTURBATIONS, seed=7, progress=False)
    assert (again.n_done, again.n_skipped) == (0, 3)
    before = (d / "rob" / "robustness.csv").read_bytes()
    assert (out / "robustness.csv").read_bytes() == before
    for pid in PATIENTS[:2]:                         # a killed run: two patients lost
        (out / "patients" / f"{pid}.json").unlink()
    resumed = rb.run_robustness(d / "manifest.csv", d / "features", out, patients=list(PATIENTS),
                                perturbations=PERTURBATIONS, seed=7, workers=2, progress=False)
    assert (resumed.n_done, resumed.n_skipped) == (2, 1)
    assert resumed.record["engine"]["kind"] == "processes"
    assert (out / "robustness.csv").read_bytes() == before
    # another seed is another job (the noise differs): rerun, and only the noise's ICCs can move
    other = rb.run_robustness(d / "manifest.csv", d / "features", out, patients=list(PATIENTS),
                              perturbations=["noise:10"], seed=8, progress=False)
    assert other.n_done == 3


def test_sample_and_refusals(cohort, tmp_path):
    d, _ = cohort
    ids, how = rb.choose_sample(["a", "b", "c", "d", "e"], sample=3, seed=1)
    assert len(ids) == 3 and ids == sorted(ids) and rb.choose_sample(["a", "b", "c", "d", "e"], 3, seed=1)[0] == ids
    assert "default_rng(1)" in how["rule"]
    with pytest.raises(InputError, match="between 2 and the 3 extracted"):
        rb.run_robustness(d / "manifest.csv", d / "features", tmp_path / "x", sample=5, progress=False)
    with pytest.raises(InputError, match="pt_99 have no valid stored features"):
        rb.run_robustness(d / "manifest.csv", d / "features", tmp_path / "x", patients=["pt_1", "pt_99"],
                          progress=False)
    with pytest.raises(InputError, match="no cohort.json"):
        rb.run_robustness(d / "manifest.csv", tmp_path, tmp_path / "x", sample=2, progress=False)


# ----------------------------------------------------------------------------- train --min-icc

def test_train_min_icc_removes_unrobust_features_and_reports_the_selected_ones(tmp_path, capsys):
    from test_training import synthetic_cohort

    from DoseRadiomicsLib import cli
    from DoseRadiomicsLib.modelfile import load_model
    from DoseRadiomicsLib.report import render_report

    features, manifest, _ = synthetic_cohort(n=130, n_noise=8, seed=21)
    df = manifest.df.copy()
    for col in ("ct", "dose", "gtv"):
        df[col] = [f"images/{p}/{col}.nrrd" for p in df.index]
    df.to_csv(tmp_path / "manifest.csv", index_label="patient_id")
    features.to_csv(tmp_path / "features.csv", index=False)
    cols = [c for c in features.columns if "__" in c and not c.startswith("diag__")]
    # the GTV's informative features are not robust; one noise feature's ICC is undefined
    icc = [0.5 if c.startswith("GTV__") and "Signal" in c else 0.9 for c in cols]
    icc[cols.index("GTV-heat__wavelet-LLH_glcm_Noise0")] = np.nan
    rob = pd.DataFrame({"column": cols, "roi": [c.split("__")[0] for c in cols], "icc": icc,
                        "icc_form": "ICC(3,1)", "settings_hash": "abc123"})
    rob.to_csv(tmp_path / "robustness.csv", index=False)
    base = ["train", "--features", str(tmp_path / "features.csv"), "--manifest", str(tmp_path / "manifest.csv"),
            "--seed", "4", "--repeated-splits", "0", "--loco", "off"]
    assert cli.main(base + ["--out", str(tmp_path / "m.json"), "--robustness", str(tmp_path / "robustness.csv"),
                            "--min-icc", "0.75"]) == 0
    out = capsys.readouterr().out
    model = load_model(tmp_path / "m.json")
    r = model["robustness"]
    assert (r["n_features"], r["n_removed"], r["n_undefined_icc"]) == (len(cols), 4, 1)
    assert r["removed_by_roi"] == {"GTV": 3, "GTV-heat": 1}
    assert "robustness screen (ICC(3,1) >= 0.75): 4 of 33 features removed (GTV 3, GTV-heat 1)" in out
    assert not any("Signal" in f for f in model["models"]["RM_GTV"]["features"])
    for name in ("DM_GTV", "DM_50Gy"):
        assert model["models"][name]["features"], name
        assert r["selected"][name] == {f: 0.9 for f in model["models"][name]["features"]}
    html = render_report(model)
    assert "Robustness of the selected features" in html and "4 of 33" in html
    # a robustness file of other settings is refused, naming both
    rob.assign(settings_hash="ffff0000").to_csv(tmp_path / "other.csv", index=False)
    assert cli.main(base + ["--out", str(tmp_path / "m2.json"), "--robustness", str(tmp_path / "other.csv"),
                            "--min-icc", "0.75"]) == 1
    err = capsys.readouterr().err
    assert "computed for settings ffff0000, the features are settings abc123" in err
    assert not (tmp_path / "m2.json").exists()
    assert cli.main(base + ["--out", str(tmp_path / "m3.json"), "--min-icc", "0.75"]) == 1
    assert "--min-icc needs --robustness" in capsys.readouterr().err


def test_a_local_dask_cluster_resumes_to_the_same_table(cohort, tmp_path):
    pytest.importorskip("distributed")
    d, _ = cohort
    out = tmp_path / "rob"
    shutil.copytree(d / "rob", out)
    (out / "patients" / f"{PATIENTS[1]}.json").unlink()
    r = rb.run_robustness(d / "manifest.csv", d / "features", out, patients=list(PATIENTS),
                          perturbations=PERTURBATIONS, seed=7, local_cluster=1, progress=False)
    assert (r.n_done, r.n_skipped) == (1, 2)
    assert r.record["engine"] == {"kind": "dask", "scheduler": None, "local_cluster": 1}
    assert (out / "robustness.csv").read_bytes() == (d / "rob" / "robustness.csv").read_bytes()


# ----------------------------------------------------------------------------- 2.5D and 3D sections

def test_slice_operations_act_on_each_slice_of_a_stack_alike():
    stack = np.stack([disc(41, r, (20.0, 19.0 + r / 4)) for r in (6.2, 12.3, 9.1)])
    assert np.array_equal(rb.erode_mask(stack), np.stack([rb.erode_mask(s) for s in stack]))
    assert np.array_equal(rb.dilate_mask(stack), np.stack([rb.dilate_mask(s) for s in stack]))
    assert np.array_equal(rb.shift_mask(stack, 0.4, -0.3), np.stack([rb.shift_mask(s, 0.4, -0.3) for s in stack]))
    # a slab eroded slice by slice keeps its end slices (a 3D erosion would empty them)
    assert all(rb.erode_mask(stack)[k].any() for k in range(3))


def test_robustness_on_a_slab_section_perturbs_every_slice_and_matches_pyradiomics(openkbp, tmp_path):
    from radiomics import featureextractor

    from DoseRadiomicsLib.cohort import run_cohort
    from DoseRadiomicsLib.pipeline import ExtractionOptions

    (tmp_path / "ct.yaml").write_text(LIGHT % 25)
    (tmp_path / "dose.yaml").write_text(LIGHT % 0.5)
    pids = ("pt_1", "pt_10")
    rows = ["patient_id,ct,dose,gtv,dose_unit"] + [
        f"{p},{openkbp(p) / 'ct.nrrd'},{openkbp(p) / 'dose.nrrd'},{openkbp(p) / 'mask_PTV70.nrrd'},Gy" for p in pids]
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    options = ExtractionOptions(ct_params=str(tmp_path / "ct.yaml"), dose_params=str(tmp_path / "dose.yaml"),
                                section="largest:1", stability_screen=False)
    run_cohort(tmp_path / "manifest.csv", tmp_path / "features", options, workers=1, progress=False)
    perts = ("erode", "rotate:3", "dose-scale:1.01")
    rb.run_robustness(tmp_path / "manifest.csv", tmp_path / "features", tmp_path / "rob", patients=list(pids),
                      perturbations=perts, seed=7, progress=False)
    table = pd.read_csv(tmp_path / "rob" / "robustness.csv")
    features = pd.read_csv(tmp_path / "features" / "features.csv")
    assert list(table["column"]) == [c for c in features.columns if "__" in c and not c.startswith("diag__")]
    assert set(table["roi"]) == {"GTV_25D1", "GTV-heat_25D1", "50Gy-heat_25D1"}
    assert table["icc"].notna().sum() > 0.9 * len(table)
    record = json.loads((tmp_path / "rob" / "robustness.json").read_text())
    assert record["section"]["spec"] == "largest:1" and "every slice" in record["section"]["perturbed"]

    d = tmp_path / "rob"
    doc = json.loads((d / "patients" / "pt_10.json").read_text())
    columns = json.loads((d / "columns" / f"{doc['columns']}.json").read_text())
    values = {n: dict(zip(columns, v)) for n, v in doc["values"].items()}
    ref = rb._reference(tmp_path / "features", "pt_10")[1]
    scaled = values["dose-scale:1.01"]
    assert scaled["GTV-heat_25D1__original_firstorder_Maximum"] == pytest.approx(
        1.01 * ref["GTV-heat_25D1__original_firstorder_Maximum"], rel=1e-6)
    assert all(scaled[c] == ref[c] for c in scaled if c.startswith("GTV_25D1__") and ref[c] == ref[c])

    # the eroded slab, rebuilt here from the stored inputs with scipy slice by slice, through pyradiomics
    from scipy import ndimage
    from DoseRadiomicsLib.manifest import read_manifest
    inputs = {p.patient_id: p for p in read_manifest(tmp_path / "manifest.csv").patients()}["pt_10"]
    ps = rb.prepare_patient(inputs, options, expected_section=doc["section"]["index"])
    assert ps.extent is not None and ps.extent.n_slices == 3 and doc["extent"]["n_slices"] == 3
    gtv = sitk.GetArrayFromImage(ps.rois.masks["GTV"]) != 0
    eroded = np.stack([ndimage.binary_erosion(s, structure=rb.CROSS) for s in gtv])
    assert 0 < eroded.sum() < gtv.sum() and all(eroded[k].any() for k in range(3) if gtv[k].sum() > 20)
    mask = sitk.GetImageFromArray(eroded.astype(np.uint8))
    mask.CopyInformation(ps.rois.ct)
    direct = featureextractor.RadiomicsFeatureExtractor(str(tmp_path / "ct.yaml")).execute(ps.rois.ct, mask)
    for name, value in direct.items():
        if name.startswith("original_"):
            assert values["erode"][f"GTV_25D1__{name}"] == pytest.approx(float(value), rel=1e-9, abs=1e-12), name
    assert doc["rois"]["erode"]["pixels"]["GTV"] == int(eroded.sum())


def test_volume_section_perturbations_act_on_the_whole_gtv(openkbp, tmp_path):
    from scipy import ndimage

    from DoseRadiomicsLib.manifest import read_manifest
    from DoseRadiomicsLib.pipeline import ExtractionOptions

    f = openkbp("pt_10")
    (tmp_path / "m.csv").write_text("patient_id,ct,dose,gtv,dose_unit\n"
                                    f"pt_10,{f / 'ct.nrrd'},{f / 'dose.nrrd'},{f / 'mask_PTV70.nrrd'},Gy\n")
    inputs = read_manifest(tmp_path / "m.csv").patients()[0]
    options = ExtractionOptions(section="volume", stability_screen=False)
    ps = rb.prepare_patient(inputs, options)
    gtv = sitk.GetArrayFromImage(ps.rois.masks["GTV"]) != 0
    assert ps.extent.spec == "volume" and gtv.shape == sitk.GetArrayFromImage(ps.rois.ct).shape
    assert (gtv.sum(axis=(1, 2)) > 0).sum() > 3                      # the GTV on several slices
    eroded = rb.perturbed_rois(ps, rb.parse_perturbation("erode"), options)
    by_slice = np.stack([ndimage.binary_erosion(s, structure=rb.CROSS) for s in gtv])
    assert np.array_equal(sitk.GetArrayFromImage(eroded.masks["GTV"]) != 0, by_slice)
    assert eroded.extent == ps.extent and rb._changed_rois(ps.rois, eroded) == ["GTV", "GTV-heat"]
    scaled = rb.perturbed_rois(ps, rb.parse_perturbation("dose-scale:1.01"), options)
    assert scaled.pixel_counts()["50Gy-heat"] > ps.rois.pixel_counts()["50Gy-heat"]
    dose, dose_up = (sitk.GetArrayFromImage(r.dose).astype(float) for r in (ps.rois, scaled))
    assert np.allclose(dose_up, 1.01 * dose, rtol=1e-6)


def _slab_patient(radii=(3.2, 6.0, 9.5, 7.0, 2.0), first=3, n=10):
    """A PatientSlice of a synthetic 10-slice CT (int16), dose and a GTV of discs whose centres move from
    slice to slice (so the slab's centroid is not any slice's), cut as --section largest:1 cuts it."""
    from scipy import ndimage

    from DoseRadiomicsLib.crosssection import largest_cross_section, section_extent
    from DoseRadiomicsLib.rois import make_rois

    rng = np.random.default_rng(4)
    ct = sitk.GetImageFromArray((40 + 30 * ndimage.gaussian_filter(rng.normal(size=(n, 48, 48)), 2)).astype(np.int16))
    ct.SetSpacing((0.9, 1.2, 2.5))
    zz, yy, xx = np.mgrid[:n, :48, :48]
    dose = sitk.GetImageFromArray((62.0 - 0.4 * np.hypot(yy - 24, xx - 24)).astype(np.float32))
    gtv_arr = np.zeros((n, 48, 48), np.uint8)
    for k, r in enumerate(radii):
        gtv_arr[first + k] = disc(48, r, (22.0 + k, 20.0 + 1.5 * k))
    gtv = sitk.GetImageFromArray(gtv_arr)
    for img in (dose, gtv):
        img.CopyInformation(ct)
    section = largest_cross_section(gtv)
    extent = section_extent(gtv, section, "largest:1")
    rois = make_rois(ct, dose, gtv, section, isodose_gy=(55.0,), extent=extent)
    return rb.PatientSlice("slab1", None, section, rois, extent)


def test_a_slab_rotates_about_its_own_centroid_and_failures_name_its_slices():
    from DoseRadiomicsLib.errors import ROIError
    from DoseRadiomicsLib.pipeline import ExtractionOptions

    options = ExtractionOptions(isodose_gy=(55.0,), section="largest:1")
    ps = _slab_patient()
    assert (ps.extent.first, ps.extent.last) == (4, 6)
    gtv = sitk.GetArrayFromImage(ps.rois.masks["GTV"]) != 0
    ct = sitk.GetArrayFromImage(ps.rois.ct).astype(float)
    turned = rb.perturbed_rois(ps, rb.parse_perturbation("rotate:5"), options)
    # by hand: every slice about the slab GTV's centroid (row, column), in mm with 1.2 x 0.9 mm pixels
    centre = np.argwhere(gtv).mean(axis=0)[1:]
    per_slice_centres = [np.argwhere(g).mean(axis=0) for g in gtv]
    assert np.abs(per_slice_centres[0] - centre).max() > 1   # the test can tell the two rules apart
    expect_gtv = np.stack([rb.rotate_array(g.astype(float), 5.0, centre, (1.2, 0.9)) >= 0.5 - 1e-9 for g in gtv])
    expect_ct = np.stack([rb.rotate_array(c, 5.0, centre, (1.2, 0.9), cval=ct.min()) for c in ct])
    assert np.array_equal(sitk.GetArrayFromImage(turned.masks["GTV"]) != 0, expect_gtv)
    assert np.array_equal(sitk.GetArrayFromImage(turned.ct), expect_ct.astype(np.float32))
    assert turned.extent == ps.extent and turned.section == ps.section
    # a perturbation that leaves an ROI too small: the message names the patient's slab slices
    tiny = _slab_patient(radii=(1.0, 1.0, 1.5, 1.0, 1.0))
    with pytest.raises(ROIError) as err:
        rb.perturbed_rois(tiny, rb.parse_perturbation("erode"), options)
    text = str(err.value)
    assert "under perturbation erode" in text and f"slices {tiny.extent.first}-{tiny.extent.last}" in text, text
    assert "slices 0-" not in text
