"""2D, 2.5D and 3D sections (``--section largest | largest:K | volume``) and ``compare``.

The 2.5D and 3D features are checked against pyradiomics called directly (RadiomicsFeatureExtractor
.execute with the bundled parameter file) on a volume and masks the test cuts itself with numpy, every
feature; the slab geometry against hand-made masks; the settings hash against the demo model (written
before sections existed); ``compare`` on a small generated cohort against scikit-learn's AUC.
"""

from __future__ import annotations

import csv
import json
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from DoseRadiomicsLib import synth
from DoseRadiomicsLib.crosssection import largest_cross_section, parse_section, section_extent
from DoseRadiomicsLib.errors import DoseRadiomicsError, ROIError
from DoseRadiomicsLib.extraction import parameter_file
from DoseRadiomicsLib.pipeline import (ExtractionOptions, PatientInputs, extract_patient, options_settings_hash,
                                       section_of_columns)

REPO = Path(__file__).resolve().parents[2]
RTOL = 1e-9


@pytest.fixture(scope="module")
def synth_patient(tmp_path_factory):
    """A small synthetic lung tumour spanning 10 slices (seed 7, patient 4: T3-4, 945 voxels)."""
    folder = tmp_path_factory.mktemp("syn")
    p = synth.draw_patient(7, 4)
    images = synth.make_images(p, 7, 4)
    paths = {}
    for name, img in zip(("ct", "dose", "gtv"), images):
        paths[name] = folder / f"{name}.nrrd"
        sitk.WriteImage(img, str(paths[name]))
    return paths


def _extract(paths, section):
    inputs = PatientInputs("SYN", str(paths["ct"]), str(paths["dose"]), str(paths["gtv"]), gtv_label=1, dose_unit="Gy")
    return extract_patient(inputs, ExtractionOptions(section=section), keep_images=True)


def _direct(image, mask_array, modality):
    """pyradiomics itself on ``image`` and a mask made from ``mask_array`` (numpy k, j, i)."""
    from radiomics import featureextractor
    mask = sitk.GetImageFromArray(mask_array.astype(np.uint8))
    mask.CopyInformation(image)
    ex = featureextractor.RadiomicsFeatureExtractor(str(parameter_file("paper", modality)))
    return {k: float(v) for k, v in ex.execute(image, mask, label=1).items() if not k.startswith("diagnostics_")}


def _assert_equal_features(row, roi, direct):
    prefix = f"{roi}__"
    ours = {k[len(prefix):]: v for k, v in row.items() if k.startswith(prefix)}
    assert set(ours) == set(direct) and len(direct) == 1595
    bad = [k for k in direct if not (math.isclose(ours[k], direct[k], rel_tol=RTOL, abs_tol=1e-12)
                                     or (math.isnan(ours[k]) and math.isnan(direct[k])))]
    assert not bad, f"{roi}: {len(bad)} features differ from pyradiomics, e.g. {bad[:3]}"


def _image_like(array, reference, origin=None):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(reference.GetSpacing())
    img.SetDirection(reference.GetDirection())
    img.SetOrigin(reference.GetOrigin() if origin is None else origin)
    return img


def test_volume_features_equal_pyradiomics_called_directly(synth_patient):
    result = _extract(synth_patient, "volume")
    ct = sitk.ReadImage(str(synth_patient["ct"]))              # identity direction: already LPS
    gtv = sitk.GetArrayFromImage(sitk.ReadImage(str(synth_patient["gtv"]))) != 0
    dose = sitk.Cast(result.dose_on_ct, sitk.sitkFloat32)     # the dose on the CT grid, as pyradiomics gets it
    assert result.record["section"]["n_slices"] == ct.GetSize()[2]
    _assert_equal_features(result.features, "GTV_3D", _direct(ct, gtv, "CT"))
    _assert_equal_features(result.features, "GTV-heat_3D", _direct(dose, gtv, "dose"))
    _assert_equal_features(result.features, "50Gy-heat_3D",
                           _direct(dose, sitk.GetArrayFromImage(dose) >= 50.0, "dose"))
    # diagnostics: the ROI volumes in mm3, and the largest cross-section's areas as in the 2D section
    voxel = float(np.prod(ct.GetSpacing()))
    assert result.features["diag__GTV_volume_mm3"] == pytest.approx(gtv.sum() * voxel, rel=1e-12)
    k = int(np.argmax(gtv.sum(axis=(1, 2))))
    assert result.features["diag__slice_index"] == k
    assert result.features["diag__GTV_area_mm2"] == pytest.approx(gtv[k].sum() * ct.GetSpacing()[0] ** 2, rel=1e-12)


def test_slab_features_equal_pyradiomics_on_the_slab_cut_by_numpy(synth_patient):
    result = _extract(synth_patient, "largest:2")
    ct = sitk.ReadImage(str(synth_patient["ct"]))
    gtv = sitk.GetArrayFromImage(sitk.ReadImage(str(synth_patient["gtv"]))) != 0
    k = int(np.argmax(gtv.sum(axis=(1, 2))))
    z = slice(k - 2, k + 3)
    origin = ct.TransformIndexToPhysicalPoint((0, 0, k - 2))
    ct_slab = _image_like(sitk.GetArrayFromImage(ct)[z], ct, origin)
    dose_slab = _image_like(sitk.GetArrayFromImage(sitk.Cast(result.dose_on_ct, sitk.sitkFloat32))[z], ct, origin)
    rec = result.record["section"]
    assert (rec["first"], rec["last"], rec["centre"], rec["n_slices"]) == (k - 2, k + 2, k, 5)
    assert rec["positions_mm"] == pytest.approx([ct.GetOrigin()[2] + i * ct.GetSpacing()[2] for i in range(k - 2, k + 3)])
    _assert_equal_features(result.features, "GTV_25D2", _direct(ct_slab, gtv[z], "CT"))
    # the dose ROIs share the volume test's code path (extract_many); here their slab is checked by its voxels
    assert result.record["roi_pixels"]["50Gy-heat"] == int((sitk.GetArrayFromImage(dose_slab) >= 50.0).sum())
    assert result.record["roi_pixels"]["GTV-heat"] == int(gtv[z].sum())
    assert result.features["diag__section_slices"] == 5 and result.features["diag__section_gtv_slices"] == 5
    # the stability screen compared every feature of the section's ROIs (names carry the section's suffix;
    # it once looked them up without it and screened none)
    screen = result.record["stability"]
    assert screen["n_features_screened"] == 3 * 1595
    assert all(name in result.features for name in screen["unstable"])


def _mask(shape, boxes):
    arr = np.zeros(shape, np.uint8)
    for z, (y0, y1, x0, x1) in boxes.items():
        arr[z, y0:y1, x0:x1] = 1
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.0, 1.0, 2.5))
    img.SetOrigin((0.0, 0.0, -10.0))
    return img


def test_slab_geometry_k_slices_either_side_cut_at_the_image_end():
    # largest on slice 1 of 8: largest:3 wants 1-3 = -2: cut at 0, so 2 slices missing below, none above
    mask = _mask((8, 12, 12), {0: (2, 5, 2, 5), 1: (2, 9, 2, 9), 2: (3, 6, 3, 6)})
    section = largest_cross_section(mask)
    assert section.index == 1
    e = section_extent(mask, section, "largest:3")
    assert (e.first, e.last, e.n_slices, e.missing_below, e.missing_above) == (0, 4, 5, 2, 0)
    # the GTV is on slices 0-2 only: slices 3 and 4 of the slab hold none, and the record says so
    assert e.gtv_slices == (0, 1, 2)
    notes = " ".join(e.to_dict()["notes"])
    assert "2 slice(s) short below" in notes and "2 slice(s) of the slab hold no GTV" in notes
    assert e.positions_mm == pytest.approx((-10.0, -7.5, -5.0, -2.5, 0.0))
    # inside the image: exactly 2K + 1 slices centred on the largest
    e2 = section_extent(mask, section, "largest:1")
    assert (e2.first, e2.last, e2.missing_below, e2.missing_above) == (0, 2, 0, 0)


def test_slab_rois_keep_the_empty_gtv_slices_in_the_image():
    from DoseRadiomicsLib.rois import make_rois
    mask = _mask((8, 12, 12), {3: (2, 9, 2, 9), 4: (3, 7, 3, 7)})
    ct = sitk.GetImageFromArray(np.arange(8 * 12 * 12, dtype=np.int16).reshape(8, 12, 12))
    ct.CopyInformation(mask)
    dose = sitk.Cast(mask, sitk.sitkFloat32) * 60.0 + 10.0
    section = largest_cross_section(mask)
    extent = section_extent(mask, section, "largest:2")
    rois = make_rois(ct, dose, mask, section, extent=extent)
    assert rois.ct.GetSize() == (12, 12, 5)
    assert np.array_equal(sitk.GetArrayFromImage(rois.ct), sitk.GetArrayFromImage(ct)[1:6])  # slices 1..5
    gtv = sitk.GetArrayFromImage(rois.masks["GTV"])
    assert gtv.sum(axis=(1, 2)).tolist() == [0, 0, 49, 16, 0]
    assert rois.areas_mm2()["GTV"] == 49.0        # on the largest cross-section, as for largest
    assert rois.volumes_mm3()["GTV"] == (49 + 16) * 2.5


def test_section_names_parse_or_say_what_is_allowed():
    assert parse_section("largest").is_single_slice
    assert parse_section("Largest:2").text == "largest:2" and parse_section("largest:2").roi_suffix == "_25D2"
    assert parse_section("volume").roi_suffix == "_3D"
    for bad in ("largest:0", "largest:x", "slab", "largest:-1"):
        with pytest.raises(ROIError, match="unknown section") as err:
            parse_section(bad)
        assert "largest:K" in err.value.hint
    assert section_of_columns(["patient_id", "GTV_25D2__original_firstorder_Mean", "diag__GTV_area_mm2"]) == "largest:2"
    assert section_of_columns(["GTV__a_b_c", "GTV_3D__a_b_c"]) is None


def test_settings_hash_is_todays_for_largest_and_differs_per_section():
    demo = json.loads((REPO / "Resources" / "DemoModel" / "model.json").read_text())
    hashes = {s: options_settings_hash(ExtractionOptions(section=s))
              for s in ("largest", "largest:1", "largest:2", "volume")}
    # the demo model was trained before sections existed: its hash is the paper section's, unchanged
    assert hashes["largest"] == demo["extraction"]["settings_hash"]
    assert len(set(hashes.values())) == 4


def test_cli_refuses_an_unknown_section_in_one_line(tmp_path, capsys):
    from DoseRadiomicsLib.cli import main
    rc = main(["extract", "--ct", "a", "--dose", "b", "--gtv", "c", "--section", "slab", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and "unknown section 'slab'" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- compare

def _cohort(tmp_path, n=90, seed=3):
    """A manifest and three sections' feature tables: the outcome is seen weakly in 2D and strongly in 3D."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    ids = [f"P{i:03d}" for i in range(n)]
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"patient_id": ids, "ct": "ct.nrrd", "dose": "dose.nrrd", "gtv": "gtv.nrrd", "outcome": y, "hb": rng.normal(120, 15, n).round(),
                  "t_stage": rng.choice(["T1-2", "T3-4"], n)}).to_csv(manifest, index=False)
    folders = {}
    for section, signal in (("largest", 0.4), ("largest:2", 0.8), ("volume", 1.6)):
        suffix = parse_section(section).roi_suffix
        cols = OrderedDict(patient_id=ids, settings_hash=[options_settings_hash(ExtractionOptions(section=section))] * n)
        for roi in ("GTV", "GTV-heat", "50Gy-heat"):
            for j in range(4):
                cols[f"{roi}{suffix}__original_firstorder_F{j}"] = rng.normal(0, 1, n) + (signal * y if j == 0 else 0)
        folder = tmp_path / section.replace(":", "_")
        folder.mkdir()
        pd.DataFrame(cols).to_csv(folder / "features.csv", index=False)
        folders[section] = folder
    return manifest, folders, dict(zip(ids, y))


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """``doseradiomics compare`` run once on the generated cohort (three sections)."""
    from DoseRadiomicsLib.cli import main
    tmp = tmp_path_factory.mktemp("cmp")
    manifest, folders, outcome = _cohort(tmp)
    out = tmp / "cmp"
    rc = main(["compare", "--features", *[f"{s}={d}" for s, d in folders.items()], "--manifest", str(manifest),
               "--out", str(out), "--seed", "1"])
    assert rc == 0
    return out, folders, outcome, manifest


def test_compare_trains_each_section_on_one_split_with_paired_delong(compared):
    from sklearn.metrics import roc_auc_score
    from DoseRadiomicsLib.modelfile import load_model
    out, folders, outcome, _ = compared
    result = json.loads((out / "compare.json").read_text())
    assert result["sections"] == ["largest", "largest:2", "volume"]
    models = {s: load_model(out / "models" / f"{s.replace(':', '_')}.json") for s in result["sections"]}
    # each model records its section, and its features are that section's
    for s, m in models.items():
        assert (m["extraction"]["options"] or {}).get("section", "largest") == s or m["extraction"]["options"] is None
        assert m["extraction"]["settings_hash"] == options_settings_hash(ExtractionOptions(section=s))
        assert all(section_of_columns(m["models"][r]["features"]) == s for r in ("RM_GTV", "DM_GTV", "DM_50Gy")
                   if m["models"][r]["features"])
    # the same split for every section
    n_val = {s: m["cohort"]["validation"]["n"] for s, m in models.items()}
    assert len(set(n_val.values())) == 1 and result["validation"]["n"] == n_val["largest"]
    # the same split for every section, patient by patient
    pred = pd.read_csv(out / "predictions.csv", dtype={"patient_id": str})
    cohorts = pred.pivot(index="patient_id", columns="section", values="cohort")
    assert (cohorts.nunique(axis=1) == 1).all()
    # the AUCs are scikit-learn's on the validation patients' probabilities; the strong 3D signal wins
    val = pred[pred["cohort"] == "validation"]
    for s in result["sections"]:
        v = val[val["section"] == s]
        for m in ("clinical", "RM_GTV", "RDM", "combined"):
            y = [outcome[p] for p in v["patient_id"]]
            assert result["validation_auc"][m][s]["auc"] == pytest.approx(roc_auc_score(y, v[f"p_{m}"]), abs=1e-12)
    rdm = {s: result["validation_auc"]["RDM"][s]["auc"] for s in result["sections"]}
    assert rdm["volume"] > rdm["largest"]
    tests = {(t["model"], t["section_a"], t["section_b"]): t for t in result["delong"]}
    assert len(tests) == 6 * 3
    t = tests[("RDM", "largest", "volume")]
    assert t["auc_a"] == pytest.approx(rdm["largest"]) and t["auc_b"] == pytest.approx(rdm["volume"])
    assert t["p"] < 0.05
    assert tests[("clinical", "largest", "volume")]["p"] == pytest.approx(1.0)   # same clinical model, same split
    html = (out / "compare.html").read_text()
    assert "Paired DeLong tests between sections" in html and "largest:2" in html


def test_compare_refuses_a_folder_of_another_section(tmp_path):
    from DoseRadiomicsLib.cli import main
    manifest, folders, _ = _cohort(tmp_path, n=30)
    rc = main(["compare", "--features", f"largest={folders['largest']}", f"largest:2={folders['volume']}",
               "--manifest", str(manifest), "--out", str(tmp_path / "x")])
    assert rc == 1


def test_a_section_model_refuses_features_of_another_section(compared, tmp_path, capsys):
    from DoseRadiomicsLib.cli import main
    out, folders, _, _ = compared
    one = tmp_path / "one.csv"
    pd.read_csv(folders["largest"] / "features.csv").iloc[:1].to_csv(one, index=False)
    rc = main(["predict", "--model", str(out / "models" / "volume.json"), "--features", str(one)])
    err = capsys.readouterr().err
    assert rc == 1 and "trained on features of section volume" in err and "settings hash" in err
    assert "Traceback" not in err
    # without a settings hash column the feature names still tell the sections apart
    pd.read_csv(one).drop(columns=["settings_hash"]).to_csv(one, index=False)
    rc = main(["predict", "--model", str(out / "models" / "volume.json"), "--features", str(one)])
    err = capsys.readouterr().err
    assert rc == 1 and "these features are of section largest" in err and "--section volume" in err
    # and the model of the section takes its own features
    own = tmp_path / "own.csv"
    pd.read_csv(folders["volume"] / "features.csv").iloc[:1].to_csv(own, index=False)
    assert main(["predict", "--model", str(out / "models" / "volume.json"), "--features", str(own)]) == 0


def test_compare_applies_each_sections_stability_screen_as_train_does(tmp_path, capsys):
    """compare reads feature_stability.json beside each section's features (stability.sidecar_text, as
    cohort-extract writes it): the volume section's signal feature, unstable in every patient, is left out
    of its models, and --keep-unstable brings it back."""
    from DoseRadiomicsLib.cli import main
    from DoseRadiomicsLib.modelfile import load_model
    from DoseRadiomicsLib.stability import SIDECAR, sidecar_text
    manifest, folders, _ = _cohort(tmp_path)
    table = pd.read_csv(folders["volume"] / "features.csv")
    columns = [c for c in table.columns if "__" in c]
    signal = [c for c in columns if c.endswith("_F0")]
    screens = [(p, {"unstable": {c: {"relative": 0.5} for c in signal}}) for p in table["patient_id"]]
    (folders["volume"] / SIDECAR).write_text(sidecar_text(columns, screens))
    features = [f"{s}={d}" for s, d in folders.items() if s != "largest:2"]
    runs = {}
    for name, extra in (("screened", []), ("kept", ["--keep-unstable"])):
        out = tmp_path / name
        assert main(["compare", "--features", *features, "--manifest", str(manifest), "--out", str(out),
                     "--seed", "1", *extra]) == 0
        runs[name] = (json.loads((out / "compare.json").read_text()), load_model(out / "models" / "volume.json"),
                      capsys.readouterr().out)
    result, model, printed = runs["screened"]
    assert result["stability_screen"]["volume"]["applied"] and result["stability_screen"]["volume"]["excluded"] == 3
    assert not result["stability_screen"]["largest"]["applied"]
    assert "stability screen, largest: no feature_stability.json beside the features" in printed
    assert "stability screen, volume: 3 feature(s) left out, 9 usable kept" in printed
    used = {f for m in model["models"].values() for f in m["features"]}
    assert not used & set(signal)
    result, model, printed = runs["kept"]
    assert result["stability_screen"]["volume"]["kept_unstable"] == 3
    assert "stability screen, volume: 3 unstable feature(s) kept (--keep-unstable)" in printed
    assert {f for m in model["models"].values() for f in m["features"]} & set(signal)


def test_compare_screens_each_section_by_its_own_robustness_file(tmp_path, capsys):
    """compare --robustness SECTION=CSV --min-icc: the volume section's signal features, given ICC 0.5 in
    its robustness file, leave its models; the largest section, without a file, keeps its features; the
    same file under --min-icc 0.4 removes nothing. Errors name the option."""
    from DoseRadiomicsLib.cli import main
    from DoseRadiomicsLib.modelfile import load_model
    from DoseRadiomicsLib.robustness import CSV_COLUMNS
    manifest, folders, _ = _cohort(tmp_path)
    table = pd.read_csv(folders["volume"] / "features.csv")
    columns = [c for c in table.columns if "__" in c]
    signal = [c for c in columns if c.endswith("_F0")]
    rob = pd.DataFrame({"column": columns, "roi": [c.split("__")[0] for c in columns],
                        "feature": [c.split("__")[1] for c in columns],
                        "icc": [0.5 if c in signal else 0.95 for c in columns], "ci_low": 0.0, "ci_high": 1.0,
                        "icc_form": "ICC(3,1)", "icc_a1": np.nan, "icc_a1_ci_low": np.nan, "icc_a1_ci_high": np.nan,
                        "n_patients": 20, "n_perturbations": 10, "settings_hash": table["settings_hash"].iloc[0]})
    rob[CSV_COLUMNS].to_csv(tmp_path / "rob3d.csv", index=False)
    features = [f"{s}={d}" for s, d in folders.items() if s != "largest:2"]
    base = ["compare", "--features", *features, "--manifest", str(manifest), "--seed", "1",
            "--robustness", f"volume={tmp_path / 'rob3d.csv'}"]
    runs = {}
    for name, icc in (("screened", "0.75"), ("lenient", "0.4")):
        out = tmp_path / name
        assert main(base + ["--out", str(out), "--min-icc", icc]) == 0
        runs[name] = (json.loads((out / "compare.json").read_text()), load_model(out / "models" / "volume.json"),
                      capsys.readouterr().out)
    result, model, printed = runs["screened"]
    assert result["robustness_screen"]["volume"]["removed"] == 3 and result["robustness_screen"]["largest"]["removed"] == 0
    assert "robustness screen, volume: 3 of 12 feature(s) removed (ICC(3,1) below 0.75)" in printed
    assert not {f for m in model["models"].values() for f in m["features"]} & set(signal)
    assert "Robustness (ICC) screen" in (tmp_path / "screened" / "compare.html").read_text()
    result, model, _ = runs["lenient"]
    assert result["robustness_screen"]["volume"]["removed"] == 0
    assert {f for m in model["models"].values() for f in m["features"]} & set(signal)
    assert main(base[:-2] + ["--out", str(tmp_path / "x"), "--min-icc", "0.75"]) == 1
    assert "--min-icc needs --robustness SECTION=CSV" in capsys.readouterr().err
    assert main(base[:-1] + [f"largest:2={tmp_path / 'rob3d.csv'}", "--out", str(tmp_path / "y")]) == 1
    assert "--robustness given for section(s) largest:2, which --features does not have" in capsys.readouterr().err
    # a robustness file of other settings is refused before any section is trained
    rob.assign(settings_hash="ffff0000")[CSV_COLUMNS].to_csv(tmp_path / "other.csv", index=False)
    assert main(base[:-1] + [f"volume={tmp_path / 'other.csv'}", "--out", str(tmp_path / "z"), "--min-icc", "0.75"]) == 1
    err = capsys.readouterr().err
    assert "computed for settings ffff0000" in err and "training the six models" not in err
