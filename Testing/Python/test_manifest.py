"""Cohort manifests: normalised values, and errors that say which row and column is wrong."""

from __future__ import annotations

import pytest

from DoseRadiomicsLib import manifest as mf
from DoseRadiomicsLib.errors import ManifestError
from DoseRadiomicsLib.manifest import read_manifest

HEADER = "patient_id,ct,dose,gtv,age,sex,hb,smoking,t_stage,outcome,pfs_months,pfs_event\n"
GOOD = ["P1,a/ct.nrrd,a/dose.nrrd,a/gtv.nrrd,61,M,120,yes,T3\u20134,1,5.5,1\n",
        "P2,b/ct.nrrd,b/dose.nrrd,b/gtv.nrrd,55,female,130,0,T1-2,0,20,0\n"]


def write(tmp_path, text, name="manifest.csv", encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def error(tmp_path, text, **kw) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        read_manifest(write(tmp_path, text), **kw)
    return info.value


def test_good_csv_is_normalised_with_paths_relative_to_the_manifest(tmp_path):
    m = read_manifest(write(tmp_path, HEADER + "".join(GOOD)))
    assert list(m.df.index) == ["P1", "P2"]
    assert m.df.loc["P1", "ct"] == str(tmp_path / "a/ct.nrrd")
    assert m.df.loc["P1", "sex"] == "M" and m.df.loc["P2", "sex"] == "F"
    assert list(m.df["smoking"]) == [1, 0] and m.df.loc["P1", "t_stage"] == "T3-4"
    assert list(m.df["outcome"]) == [1, 0] and m.has_outcome and not m.has_survival
    assert m.clinical_columns == ["age", "sex", "hb", "smoking", "t_stage"]
    p1 = m.patients()[0]
    assert (p1.patient_id, p1.dose, p1.gtv_label) == ("P1", str(tmp_path / "a/dose.nrrd"), None)
    # both files are missing: reported per patient, not at read time
    missing = m.missing_files()
    assert set(missing) == {"P1", "P2"} and "ct" in str(missing["P1"]) and "P1" in str(missing["P1"])
    with pytest.raises(ManifestError, match="2 patient"):
        m.check_files()


def test_tsv_with_recist_response_split_and_survival(tmp_path):
    (tmp_path / "x.nrrd").write_text("x")
    text = ("Patient ID\tCT\tDose\tGTV\tGTV label\tdose unit\tResponse\tsplit\tos_months\tos_event\t"
            "pfs_months\tpfs_event\tcentre\tbmi\n"
            "A\tx.nrrd\tx.nrrd\tx.nrrd\t2\tcgy\tPR\tTraining\t30\t0\t12\t1\tC1\t22.5\n"
            "B\tx.nrrd\tx.nrrd\tx.nrrd\t\tGy\tpd\ttest\t8\t1\t3\t1\tC2\t30\n"
            "C\tx.nrrd\tx.nrrd\tx.nrrd\t1\t\tSD\t\tNA\t\t4\t1\tC2\t\n")
    m = read_manifest(write(tmp_path, text, "cohort.tsv"), extra_clinical=["bmi"], check_files=True)
    assert list(m.df["outcome"]) == [0, 1, 1]
    assert list(m.df["split"].fillna("-")) == ["train", "validation", "-"]
    assert m.df.loc["A", "dose_unit"] == "cGy" and m.df.loc["A", "gtv_label"] == 2
    assert m.patients()[1].gtv_label is None and m.patients()[0].gtv_label == 2
    assert m.has_survival and m.df["os_months"].isna().sum() == 1
    assert m.clinical_columns == ["bmi"] and m.df.loc["A", "bmi"] == 22.5
    assert m.unknown_columns == []


@pytest.mark.parametrize("cells, row, column, words", [
    ("P3,c,c,c,abc,M,120,1,T1,0,1,1", 3, "age", "'abc' is not a number"),
    ("P3,c,c,c,60,M,120,1,T1,2,1,1", 3, "outcome", "'2' is not 1 (resistant) or 0"),
    ("P3,c,c,c,60,M,120,1,T1,1,-2,1", 3, "pfs_months", "outside the plausible range"),
    ("P3,c,c,c,60,M,120,1,T1,1,2,yes?", 3, "pfs_event", "'yes?' is not 1 (event) or 0"),
    ("P3,c,c,c,60,M,12.1,1,T1,1,2,1", 3, "hb", "g/dL"),
    ("P3,c,c,c,60,X,120,1,T1,1,2,1", 3, "sex", "'X' is not a sex"),
    ("P3,c,c,c,60,M,120,maybe,T1,1,2,1", 3, "smoking", "'maybe' is not yes/no"),
    (",c,c,c,60,M,120,1,T1,1,2,1", 3, "patient_id", "empty"),
    ("a/b,c,c,c,60,M,120,1,T1,1,2,1", 3, "patient_id", "file name"),
    ("p1,c,c,c,60,M,120,1,T1,1,2,1", 3, "patient_id", "already used in row 1"),
    ("P3,,c,c,60,M,120,1,T1,1,2,1", 3, "ct", "no ct path"),
    ("P3,c,c,c,60,M,120,1,T1,1,2", 3, None, "has 11 cells but the header has 12"),
])
def test_bad_cells_are_named_by_row_and_column(tmp_path, cells, row, column, words):
    e = error(tmp_path, HEADER + "".join(GOOD) + cells + "\n")
    assert e.row == row and e.column == column
    text = str(e)
    assert f"row {row}" in text and f"line {row + 1} of the file" in text and words in text
    if column:
        assert f"column '{column}'" in text
    assert str(tmp_path / "manifest.csv") in text


def test_header_problems(tmp_path):
    e = error(tmp_path, "patient_id,ct,dose\nP1,a,b\n")
    assert e.column == "gtv" and "missing required column" in str(e)
    e = error(tmp_path, "patient_id,ct,dose,gtv,Age,age\nP1,a,b,c,1,2\n")
    assert e.column == "age" and "twice" in str(e)
    e = error(tmp_path, "patient_id,ct,dose,gtv\n")
    assert "no patients" in str(e)
    e = error(tmp_path, HEADER + GOOD[0], extra_clinical=["bmi"])
    assert e.column == "bmi"


def test_response_and_outcome_must_agree(tmp_path):
    e = error(tmp_path, "patient_id,ct,dose,gtv,outcome,response\nP1,a,b,c,1,PR\n")
    assert (e.row, e.column) == (1, "outcome") and "contradicts response PR" in str(e)
    e = error(tmp_path, "patient_id,ct,dose,gtv,response\nP1,a,b,c,PR\nP2,a,b,c,better\n")
    assert (e.row, e.column) == (2, "response") and "RECIST" in str(e)
    e = error(tmp_path, "patient_id,ct,dose,gtv,split\nP1,a,b,c,holdout\n")
    assert e.column == "split"


def test_file_level_problems(tmp_path, monkeypatch):
    with pytest.raises(ManifestError, match="not UTF-8"):
        read_manifest(write(tmp_path, HEADER + "P\u00e9,a,b,c,1,M,1,1,T1,1,1,1\n", encoding="latin-1"))
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "nope.csv")
    monkeypatch.setattr(mf, "MAX_MANIFEST_BYTES", 100)
    with pytest.raises(ManifestError, match="more than"):
        read_manifest(write(tmp_path, HEADER + "".join(GOOD) * 3))
