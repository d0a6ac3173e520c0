"""The synthetic cohort: deterministic, Table-1-like, and following its documented ground truth."""

from __future__ import annotations

import filecmp
import math

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from DoseRadiomicsLib import synth
from DoseRadiomicsLib.manifest import CLINICAL_COLUMNS, read_manifest


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_same_seed_same_bytes_other_seed_other_cohort(tmp_path):
    a = synth.generate_cohort(3, seed=11, out_dir=tmp_path / "a")
    b = synth.generate_cohort(3, seed=11, out_dir=tmp_path / "b")
    c = synth.generate_cohort(3, seed=12, out_dir=tmp_path / "c")
    names = _files(tmp_path / "a")
    assert len(names) == 3 * 3 + 3 and names == _files(tmp_path / "b")
    for n in names:
        assert filecmp.cmp(tmp_path / "a" / n, tmp_path / "b" / n, shallow=False), n
    assert not filecmp.cmp(tmp_path / "a/images/SYN0001/ct.nrrd", tmp_path / "c/images/SYN0001/ct.nrrd",
                           shallow=False)
    assert a.manifest.equals(b.manifest) and not a.manifest.equals(c.manifest)
    # a patient does not depend on the cohort size: the first 3 of 5 are the 3 of 3
    d = synth.generate_cohort(5, seed=11, images=False)
    assert d.ground_truth.head(3).equals(a.ground_truth)


def test_written_cohort_reopens_as_a_valid_manifest_with_plausible_images(tmp_path):
    cohort = synth.generate_cohort(4, seed=5, out_dir=tmp_path)
    m = read_manifest(tmp_path / "manifest.csv", check_files=True)
    assert m.has_outcome and m.has_survival and len(m.df) == 4
    assert m.clinical_columns == list(CLINICAL_COLUMNS)  # synth writes all of them
    gt = cohort.ground_truth.set_index("patient_id")
    stds = {}
    for p in m.patients():
        ct, dose, gtv = (sitk.ReadImage(x) for x in (p.ct, p.dose, p.gtv))
        assert ct.GetPixelID() == sitk.sitkInt16 and gtv.GetPixelID() == sitk.sitkUInt8
        assert dose.GetPixelID() == sitk.sitkFloat32 and dose.GetMetaData("dose_unit") == "Gy"
        g = sitk.GetArrayFromImage(gtv).astype(bool)
        c = sitk.GetArrayFromImage(ct)
        assert g.sum() > 50 and not g[:, :, 0].any() and not g[:, 0, :].any()  # inside the field
        k = int(np.argmax(g.sum(axis=(1, 2))))                       # largest cross-section
        assert -30 < np.median(c[k][g[k]]) < 100 and np.median(c[~g]) < -700  # soft tissue in lung
        core = ndimage.binary_erosion(g[k], iterations=2)          # away from the partial-volume rim
        stds[p.patient_id] = c[k][core].std()
        # dose on the CT grid: the GTV is covered near the prescription unless a cold spot was planted
        d = sitk.GetArrayFromImage(sitk.Resample(dose, ct, sitk.Transform(), sitk.sitkLinear, 0.0))
        rx = m.df.loc[p.patient_id, "prescribed_dose"]
        depth = gt.loc[p.patient_id, "cold_depth"]
        assert d[g].max() < 1.1 * rx and d.max() < 1.1 * rx
        if depth == 0:
            assert np.percentile(d[g], 50) > 0.95 * rx
            assert np.percentile(d[g], 2) > 0.85 * rx
        else:
            assert d[g].min() < rx * (1 - 0.4 * depth)
    # texture amplitude shows in the HU spread inside the GTV
    order = gt.loc[list(stds), "hetero_hu"].sort_values().index
    assert stds[order[-1]] > stds[order[0]]


def test_marginals_follow_table_1_and_the_outcome_follows_the_documented_model():
    import statsmodels.api as sm
    from sklearn.metrics import roc_auc_score

    c = synth.generate_cohort(4000, seed=3, images=False)
    m, gt = c.manifest, c.ground_truth
    assert abs(m.age.mean() - 60.3) < 0.8 and abs(m.age.std() - 9.4) < 0.8
    assert abs((m.sex == "M").mean() - 0.81) < 0.03
    assert m.kps.median() == 80 and m.kps.quantile(0.25) == 80 and m.kps.quantile(0.75) == 90
    assert 2.6 < m.cea.median() < 3.6 and 1.4 < m.cea.quantile(0.25) < 2.2
    assert abs(m.hb.mean() - 121.8) < 1.5 and abs(m.hb.std() - 17.3) < 1.5
    assert abs(m.smoking.mean() - 0.61) < 0.03 and abs(m.diabetes.mean() - 0.09) < 0.02
    assert abs((m.t_stage == "T3-4").mean() - 0.71) < 0.03
    assert ((m.m_stage == "M1") == (m.tnm_stage == "IV")).all()
    assert m.prescribed_dose.between(60, 66).all() and m.prescribed_dose.median() == 63
    assert 0.45 <= m.outcome.mean() <= 0.55
    auc = roc_auc_score(gt.outcome, gt.true_p)
    assert 0.78 <= auc <= 0.87 and math.isclose(auc, c.oracle_auc)
    assert ((m.response.isin(["SD", "PD"])).astype(int) == m.outcome).all()
    assert (m.pfs_months <= m.os_months).all() and 0.5 < m.pfs_event.mean() < 0.95
    assert m.groupby("outcome").pfs_months.median()[1] < m.groupby("outcome").pfs_months.median()[0]
    # refitting the documented logistic model on the drawn outcomes recovers its coefficients
    X = np.column_stack([gt.z_hetero, gt.z_deficit, m.hb - synth.HB_MEAN, (m.t_stage == "T3-4").astype(float)])
    fit = sm.Logit(m.outcome.to_numpy(), sm.add_constant(X)).fit(disp=0)
    truth = [synth.INTERCEPT, synth.BETA_HETERO, synth.BETA_DEFICIT, synth.LOG_OR_HB, synth.LOG_OR_T34]
    lo, hi = fit.conf_int(alpha=0.001).T
    assert np.all((lo <= truth) & (truth <= hi)), (fit.params, truth)
    assert math.isclose(math.exp(synth.LOG_OR_HB), 0.975) and math.isclose(math.exp(synth.LOG_OR_T34), 0.432)


def test_cli_writes_the_cohort_and_refuses_a_file_as_folder(tmp_path, capsys):
    from DoseRadiomicsLib.cli import main

    assert main(["synth", "--n", "2", "--seed", "1", "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s/manifest.csv").is_file() and (tmp_path / "s/README.md").is_file()
    assert "oracle AUC" in (tmp_path / "s/README.md").read_text()
    (tmp_path / "f").write_text("x")
    assert main(["synth", "--n", "2", "--out", str(tmp_path / "f")]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_centres_change_the_images_by_their_documented_effect_and_nothing_else(tmp_path):
    from DoseRadiomicsLib.cli import main

    plain = synth.draw_patient(9, 0)
    none = synth.CentreDesign.make(1, 0.0, ["X"])
    shifted = synth.CentreDesign.make(1, 1.0, ["X"])
    p0, p1 = synth.draw_patient(9, 0, none), synth.draw_patient(9, 0, shifted)
    # the centre is one draw in either design: every other variable and the truth are the same
    same = {k: v for k, v in plain.items() if k != "centre"}
    assert {k: p1[k] for k in same} == same and p1["centre"] == "X"
    assert p1["centre_hu_offset"] == 30.0 and math.isclose(p1["centre_texture_gain"], math.exp(0.4))
    ct0, dose0, gtv0 = (sitk.GetArrayFromImage(i) for i in synth.make_images(p0, 9, 0))
    ct1, dose1, gtv1 = (sitk.GetArrayFromImage(i) for i in synth.make_images(p1, 9, 0))
    assert (gtv0 == gtv1).all()
    np.testing.assert_allclose(dose1, dose0 * 1.03, rtol=1e-6)
    g = gtv0.astype(bool)
    core = ndimage.binary_erosion(g, iterations=2)
    # inside the tumour: +30 HU on the mean, spread x exp(0.4) around the 35 HU soft-tissue level
    assert abs((ct1[core].mean() - 35) - math.exp(0.4) * (ct0[core].mean() - 35) - 30) < 2
    assert math.isclose(ct1[core].std() / ct0[core].std(), math.exp(0.4), rel_tol=0.02)
    air = ct0 < -950                                      # outside the body: no offset, only noise gain
    assert abs(np.median(ct1[air]) - np.median(ct0[air])) <= 1
    # three centres: directions +1, -1, +0.5, names drawn uniformly, README and truth columns state them
    c = synth.generate_cohort(300, 4, images=False, centres=synth.CentreDesign.make(3, 2.0))
    counts = c.manifest.centre.value_counts()
    assert set(counts.index) == {"A", "B", "C"} and counts.min() > 70
    eff = c.ground_truth.groupby(c.manifest.centre)["centre_hu_offset"].first()
    assert eff.to_dict() == {"A": 60.0, "B": -60.0, "C": 30.0}
    assert main(["synth", "--n", "2", "--seed", "1", "--centres", "2", "--centre-shift", "0.5",
                 "--centre-names", "P,Q", "--out", str(tmp_path / "s")]) == 0
    readme = (tmp_path / "s/README.md").read_text()
    assert "--centres 2 --centre-shift 0.5 --centre-names P,Q" in readme and "| Q | -1 | -15.0 |" in readme
    assert main(["synth", "--n", "2", "--centres", "2", "--centre-names", "P", "--out", str(tmp_path / "t")]) == 1
