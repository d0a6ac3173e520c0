"""The cohort manifest: one row per patient, what to read and what is known about them.

A CSV or TSV file (UTF-8; the delimiter is taken from the extension ``.tsv``/``.tab`` or sniffed
among comma, semicolon and tab). Column names are case-insensitive; spaces and hyphens count as
underscores. Paths are relative to the manifest's folder (or absolute).

Columns
- required: ``patient_id`` (unique ignoring case after Unicode NFC normalisation, non-empty, usable
  as a file name, at most 64 characters, no invisible characters, not starting with ``= + - @``), and
  ``ct``, ``dose``, ``gtv`` or ``patient_dir`` (a planning-system export folder, see
  :mod:`DoseRadiomicsLib.discovery`; in a row that has one, ``ct``/``dose``/``gtv`` may be empty, or pick
  among the folder's candidates). ``doseradiomics manifest`` writes such a manifest
  (:mod:`DoseRadiomicsLib.manifest_builder`).
- inputs, optional: ``gtv_name`` (RTSTRUCT ROI / segment name), ``gtv_label`` (integer label value),
  ``dose_unit`` (``Gy``/``cGy``, for NRRD/NIfTI/MHA doses).
- clinical, any subset (:data:`CLINICAL_COLUMNS`): numbers ``age`` (years), ``kps``, ``cea`` (ng/mL),
  ``hb`` (g/L), ``prescribed_dose`` (Gy); ``sex`` (M/F, male/female); yes/no flags ``smoking``,
  ``diabetes`` (yes/no, y/n, true/false, 1/0 -> 1/0); categories ``t_stage``, ``n_stage``,
  ``m_stage``, ``tnm_stage``, ``histology``, ``rt_technique``, ``treatment_mode`` (kept as text,
  dashes normalised). Further columns are clinical only when named in ``extra_clinical`` (numbers
  if every value parses as one, otherwise categories); other unknown columns are kept but unused.
- outcome: ``outcome`` (1 = resistant, 0 = sensitive) and/or ``response`` (RECIST: CR/PR -> 0,
  SD/PD -> 1); when both are given they must agree.
- survival: ``pfs_months``, ``pfs_event``, ``os_months``, ``os_event`` (times >= 0, events 0/1).
- ``split`` (train/training -> ``train``; validation/valid/val/test -> ``validation``), ``centre``.

Empty cells, ``NA``, ``N/A``, ``nan``, ``null`` and ``none`` mean missing (allowed everywhere but in
the required columns). Errors are :class:`ManifestError` with ``row`` = the data row counted from 1
(the header is not counted; in a spreadsheet that is line ``row + 1``, which the message also says)
and ``column`` = the column name as written in the file.
"""

from __future__ import annotations

import csv
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError, ManifestError
from .fileio import csv_cell_value

MAX_MANIFEST_BYTES = 50 * 1024 * 1024

REQUIRED_COLUMNS = ("patient_id", "ct", "dose", "gtv")
INPUT_COLUMNS = ("gtv_name", "gtv_label", "dose_unit", "patient_dir")
NUMERIC_CLINICAL = {  # name -> (lowest, highest) plausible value
    "age": (0.0, 120.0), "kps": (0.0, 100.0), "cea": (0.0, 1e5), "hb": (25.0, 250.0),
    "prescribed_dose": (0.5, 150.0),
}
BINARY_CLINICAL = ("smoking", "diabetes")
CATEGORICAL_CLINICAL = ("t_stage", "n_stage", "m_stage", "tnm_stage", "histology", "rt_technique",
                        "treatment_mode")
CLINICAL_COLUMNS = ("age", "sex", "kps", "cea", "hb", "smoking", "diabetes", "t_stage", "n_stage",
                    "m_stage", "tnm_stage", "histology", "rt_technique", "treatment_mode",
                    "prescribed_dose")
SURVIVAL_COLUMNS = ("pfs_months", "pfs_event", "os_months", "os_event")
RECIST = {"CR": 0, "PR": 0, "SD": 1, "PD": 1}
SPLITS = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
          "val": "validation", "test": "validation"}
MISSING = {"", "na", "n/a", "nan", "null", "none"}
YES = {"1", "yes", "y", "true", "t"}
NO = {"0", "no", "n", "false", "f"}
SEXES = {"m": "M", "male": "M", "f": "F", "female": "F"}
_UNSAFE_ID = re.compile(r"[/\\\x00-\x1f:*?\"<>|]")
#: Longest patient id (characters): it names OUT/patients/<id>.json, within any filesystem's 255 bytes.
MAX_PATIENT_ID_CHARS = 64
#: First characters a spreadsheet runs as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@")


@dataclass
class Manifest:
    """A validated cohort manifest.

    ``df`` is indexed by ``patient_id`` (manifest order) with normalised values: absolute paths in
    ``ct``/``dose``/``gtv``, numbers as floats, flags as 0/1, ``outcome`` as nullable Int64 (derived
    from ``response`` where needed), ``split`` as 'train'/'validation' or missing.
    """

    df: pd.DataFrame
    path: Path
    clinical_columns: list = field(default_factory=list)
    unknown_columns: list = field(default_factory=list)
    rows: dict = field(default_factory=dict)          # patient_id -> data row number (1-based)

    @property
    def has_outcome(self) -> bool:
        """True when every patient has an outcome (0/1)."""
        return "outcome" in self.df and len(self.df) > 0 and bool(self.df["outcome"].notna().all())

    @property
    def has_survival(self) -> bool:
        """True when all four survival columns are present (values may still be missing for some)."""
        return all(c in self.df for c in SURVIVAL_COLUMNS)

    @property
    def patient_ids(self) -> list:
        return list(self.df.index)

    def _records(self):
        """(patient_id, row dict) in manifest order; iterrows builds a Series per row (seconds for 10,000)."""
        return zip(self.df.index, self.df.to_dict("records"))

    def patients(self) -> list:
        """The patients as :class:`~DoseRadiomicsLib.pipeline.PatientInputs` (absolute paths)."""
        from .pipeline import PatientInputs

        out = []
        for pid, r in self._records():
            out.append(PatientInputs(
                patient_id=str(pid), ct=_opt(r.get("ct")), dose=_opt(r.get("dose")), gtv=_opt(r.get("gtv")),
                gtv_name=_opt(r.get("gtv_name")), dose_unit=_opt(r.get("dose_unit")),
                gtv_label=None if _opt(r.get("gtv_label")) is None else int(r["gtv_label"]),
                patient_dir=_opt(r.get("patient_dir"))))
        return out

    def missing_files(self) -> dict:
        """Patients whose CT, dose or GTV path does not exist: patient_id -> InputError (first one)."""
        out = {}
        for pid, r in self._records():
            for col in (("patient_dir",) if _opt(r.get("patient_dir")) else ("ct", "dose", "gtv")):
                if not os.path.exists(r[col]):
                    out[str(pid)] = InputError(
                        f"the {col} file named in the manifest (row {self.rows.get(pid)}, column "
                        f"'{col}') does not exist", patient=str(pid), path=r[col],
                        hint=f"paths are relative to the manifest's folder {self.path.parent}")
                    break
        return out

    def check_files(self) -> None:
        """Raise :class:`ManifestError` naming the first missing files (up to five)."""
        missing = self.missing_files()
        if missing:
            lines = [str(e) for e in list(missing.values())[:5]]
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            first = next(iter(missing))
            raise ManifestError(f"{len(missing)} patient(s) with missing files: " + "; ".join(lines) + more,
                                row=self.rows.get(first), path=self.path)


def _opt(value):
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    return value


def _canonical(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _delimiter(path: Path, head: str) -> str:
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    first = head.splitlines()[0] if head else ""
    counts = {d: first.count(d) for d in (",", "\t", ";")}
    if path.suffix.lower() == ".csv" and counts[","] > 0:
        return ","
    best = max(counts, key=counts.get)
    if counts[best] == 0:
        raise ManifestError("cannot tell the delimiter: the header has no comma, tab or semicolon",
                            row=None, path=path, hint="write a CSV (commas) or TSV (tabs) with a header row")
    return best


def read_manifest(path, extra_clinical=(), check_files: bool = False) -> Manifest:
    """Read and validate a cohort manifest; see the module docstring for its columns.

    ``extra_clinical`` names further columns to treat as clinical variables. With ``check_files``
    a missing CT/dose/GTV file is an error; by default it is left to the cohort run, which records
    it as that patient's failure and goes on.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise ManifestError("the manifest file does not exist", path=path)
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"the manifest is {size / 1e6:.0f} MB, more than the "
                            f"{MAX_MANIFEST_BYTES / 1e6:.0f} MB a manifest may be", path=path,
                            hint="a manifest holds one short row per patient; images go in separate files")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"the manifest is not UTF-8 text (byte {exc.start})", path=path,
                            hint="save it as 'CSV UTF-8' from the spreadsheet program") from None
    if not text.strip():
        raise ManifestError("the manifest is empty", path=path,
                            hint="a manifest is a CSV with a header (patient_id, ct, dose, gtv) and one row per patient")
    delim = _delimiter(path, text)
    reader = csv.reader(text.splitlines(), delimiter=delim)
    try:
        table = [r for r in reader]
    except csv.Error as exc:
        raise ManifestError(f"cannot parse the manifest: {exc}", path=path) from None
    header_raw, body = table[0], table[1:]
    header = [_canonical(h) for h in header_raw]
    shown = {c: h.strip() for c, h in zip(header, header_raw)}
    seen = {}
    for i, c in enumerate(header):
        if not c:
            raise ManifestError(f"column {i + 1} has no name", row=None, path=path)
        if c in seen:
            raise ManifestError(f"the column appears twice (columns {seen[c] + 1} and {i + 1})",
                                column=shown[c], path=path)
        seen[c] = i
    missing = [c for c in REQUIRED_COLUMNS if c not in seen
               and not ("patient_dir" in seen and c in ("ct", "dose", "gtv"))]
    if missing:
        raise ManifestError("missing required column(s): " + ", ".join(missing), column=missing[0], path=path,
                            hint="a manifest needs patient_id, ct, dose and gtv; found: " + ", ".join(header))
    body = [r for r in body if any(cell.strip() for cell in r)]  # blank lines are not patients
    if not body:
        raise ManifestError("the manifest has a header but no patients", path=path,
                            hint="add one row per patient below the header")
    records = []
    for n, r in enumerate(body, start=1):
        if len(r) != len(header):
            raise ManifestError(f"has {len(r)} cells but the header has {len(header)} columns "
                                f"(line {n + 1} of the file)", row=n, path=path,
                                hint="check for an unquoted delimiter inside a value")
        # a leading ' before = + - @ is how the project's writers keep a cell from running as a formula
        records.append({c: csv_cell_value(v.strip()) for c, v in zip(header, r)})

    extra = [_canonical(c) for c in extra_clinical]
    for c in extra:
        if c not in seen:
            raise ManifestError("the column named as an extra clinical variable is not in the manifest",
                                column=c, path=path)
    v = _Validator(path, shown)
    out_rows = [v.row(n, rec, extra) for n, rec in enumerate(records, start=1)]

    # unique ids, also ignoring case (patients/<id>.json must not collide on macOS/Windows)
    first_row: dict = {}
    for n, rec in enumerate(out_rows, start=1):
        key = rec["patient_id"].casefold()
        if key in first_row:
            raise ManifestError(f"patient_id '{rec['patient_id']}' is already used in row {first_row[key]} "
                                f"(ids must be unique, ignoring case) (line {n + 1} of the file)", row=n, column=shown["patient_id"],
                                path=path, hint="give each patient one row with a unique patient_id")
        first_row[key] = n
    df = pd.DataFrame(out_rows).set_index("patient_id", drop=True)
    if "outcome" in df:
        df["outcome"] = df["outcome"].astype("Int64")
    for c in ("pfs_event", "os_event", "gtv_label", *BINARY_CLINICAL):
        if c in df:
            df[c] = df[c].astype("Int64")
    known = set(REQUIRED_COLUMNS) | set(INPUT_COLUMNS) | set(CLINICAL_COLUMNS) | set(SURVIVAL_COLUMNS) \
        | {"outcome", "response", "split", "centre"} | set(extra)
    clinical = [c for c in CLINICAL_COLUMNS if c in seen] + [c for c in extra if c not in CLINICAL_COLUMNS]
    manifest = Manifest(df=df, path=path, clinical_columns=clinical,
                        unknown_columns=[c for c in header if c not in known],
                        rows={rec["patient_id"]: n for n, rec in enumerate(out_rows, start=1)})
    if check_files:
        manifest.check_files()
    return manifest


class _Validator:
    """Converts one row's text cells into typed, normalised values, raising on the first problem."""

    def __init__(self, path: Path, shown: dict):
        self.path = path
        self.shown = shown
        self._folders: dict = {}   # a patient's ct, dose and gtv share a folder: resolve it once

    def _resolve(self, relative: Path) -> Path:
        """``relative`` to the manifest's folder, made absolute with its folders' links resolved
        (the file's own name is kept), as ``Path.resolve`` would give for a regular file."""
        folder = relative.parent
        if folder not in self._folders:
            self._folders[folder] = (self.path.parent / folder).resolve()
        return self._folders[folder] / relative.name

    def fail(self, n: int, column: str, problem: str, hint: str | None = None):
        raise ManifestError(f"{problem} (line {n + 1} of the file)", row=n, column=self.shown.get(column, column),
                            path=self.path, hint=hint or "correct this cell and run again")

    def number(self, n, c, text, lo=None, hi=None, hint=None):
        if text.lower() in MISSING:
            return np.nan
        try:
            x = float(text)
        except ValueError:
            self.fail(n, c, f"'{text}' is not a number", hint)
        if not np.isfinite(x):
            self.fail(n, c, f"'{text}' is not a finite number")
        if (lo is not None and x < lo) or (hi is not None and x > hi):
            self.fail(n, c, f"{text} is outside the plausible range {lo:g}-{hi:g}", hint)
        return x

    def flag(self, n, c, text, what="yes/no (or 1/0)"):
        t = text.lower()
        if t in MISSING:
            return pd.NA
        if t in YES or t in ("1.0",):
            return 1
        if t in NO or t in ("0.0",):
            return 0
        self.fail(n, c, f"'{text}' is not {what}")

    def choice(self, n, c, text, table: dict, what: str, hint: str):
        """``text`` looked up (case-insensitively) in ``table``; empty -> None; else a named error."""
        t = text.lower()
        if t in MISSING:
            return None
        if t in table:
            return table[t]
        self.fail(n, c, f"'{text}' is not {what}", hint=hint)

    def row(self, n: int, rec: dict, extra: list) -> dict:
        out = dict(rec)
        # one spelling per id: a composed and a decomposed 'é' are the same patient
        pid = out["patient_id"] = unicodedata.normalize("NFC", rec["patient_id"])
        if pid.lower() in MISSING:
            self.fail(n, "patient_id", "the patient_id is empty")
        invisible = sorted({f"U+{ord(ch):04X}" for ch in pid if unicodedata.category(ch) == "Cf"})
        if invisible:   # zero-width and direction marks: ids that look equal but are not
            self.fail(n, "patient_id", f"patient_id {pid!r} contains invisible characters ({', '.join(invisible)})",
                      hint="retype the id without zero-width or direction marks")
        if len(pid) > MAX_PATIENT_ID_CHARS or len(pid.encode("utf-8")) > 4 * MAX_PATIENT_ID_CHARS - 56:
            self.fail(n, "patient_id", f"patient_id is {len(pid)} characters ({len(pid.encode('utf-8'))} "
                      f"bytes) long, more than {MAX_PATIENT_ID_CHARS} characters or "
                      f"{4 * MAX_PATIENT_ID_CHARS - 56} bytes",
                      hint="use a shorter id (it names the patient's result file)")
        if pid[0] in FORMULA_STARTS:   # a spreadsheet would run it as a formula in every CSV we write
            self.fail(n, "patient_id", f"patient_id {pid!r} starts with {pid[0]!r}, which a spreadsheet "
                      "reads as a formula", hint="start the id with a letter or a digit")
        if _UNSAFE_ID.search(pid) or pid.startswith(".") or pid != pid.strip():
            self.fail(n, "patient_id", f"patient_id '{pid}' cannot be used as a file name",
                      hint="use letters, digits, '-', '_' and '.' (not leading)")
        folder = "patient_dir" in rec and rec["patient_dir"].lower() not in MISSING
        for c in ("patient_dir", "ct", "dose", "gtv"):
            if c not in rec:
                out[c] = None
                continue
            if rec[c].lower() in MISSING:
                if c == "patient_dir" or folder:   # the folder's discovery finds what is not given
                    out[c] = None
                    continue
                self.fail(n, c, f"no {c} path given", hint="give the file, or the export folder in 'patient_dir'"
                          if "patient_dir" in rec else None)
            try:  # a NUL byte or an over-long name makes the path unusable (ValueError, OSError)
                p = Path(os.path.expanduser(rec[c]))
                out[c] = str(p if p.is_absolute() else self._resolve(p))
            except (ValueError, OSError) as exc:
                self.fail(n, c, f"{rec[c]!r} is not a usable path ({exc})", hint="write the file's path, "
                          "absolute or relative to the manifest's folder")
        if "gtv_name" in rec:
            out["gtv_name"] = None if rec["gtv_name"].lower() in MISSING else rec["gtv_name"]
        if "gtv_label" in rec:
            x = self.number(n, "gtv_label", rec["gtv_label"])
            if not np.isnan(x) and (x != int(x) or x < 1):
                self.fail(n, "gtv_label", f"'{rec['gtv_label']}' is not a positive whole number")
            out["gtv_label"] = pd.NA if np.isnan(x) else int(x)
        if "dose_unit" in rec:
            u = rec["dose_unit"].lower()
            if u in MISSING:
                out["dose_unit"] = None
            elif u in ("gy", "cgy"):
                out["dose_unit"] = "Gy" if u == "gy" else "cGy"
            else:
                self.fail(n, "dose_unit", f"'{rec['dose_unit']}' is not a dose unit", hint="use Gy or cGy")
        for c, (lo, hi) in NUMERIC_CLINICAL.items():
            if c in rec:
                hint = {"hb": "Hb is in g/L (a value like 12.1 is g/dL: multiply by 10)",
                        "prescribed_dose": "the prescribed dose is in Gy (6000 would be cGy)"}.get(c)
                out[c] = self.number(n, c, rec[c], lo, hi, hint)
        for c in BINARY_CLINICAL:
            if c in rec:
                out[c] = self.flag(n, c, rec[c])
        if "sex" in rec:
            out["sex"] = self.choice(n, "sex", rec["sex"], SEXES, "a sex", "use M/F or male/female")
        for c in (*CATEGORICAL_CLINICAL, "centre"):
            if c in rec:
                t = rec[c].replace("\u2013", "-").replace("\u2014", "-")
                out[c] = None if t.lower() in MISSING else t
        for c in extra:
            if c in CLINICAL_COLUMNS:
                continue
            t = rec[c]
            try:
                out[c] = np.nan if t.lower() in MISSING else float(t)
            except ValueError:
                out[c] = t
        outcome = pd.NA
        if "outcome" in rec:
            outcome = self.flag(n, "outcome", rec["outcome"], "1 (resistant) or 0 (sensitive)")
        if "response" in rec:
            r = rec["response"].upper()
            if r.lower() in MISSING:
                out["response"] = None
            elif r not in RECIST:
                self.fail(n, "response", f"'{rec['response']}' is not a RECIST response",
                          hint="use CR, PR (sensitive) or SD, PD (resistant)")
            else:
                out["response"] = r
                if outcome is not pd.NA and outcome != RECIST[r]:
                    self.fail(n, "outcome", f"outcome {outcome} contradicts response {r} "
                              f"(RECIST {r} means outcome {RECIST[r]})")
                outcome = RECIST[r]
        if "outcome" in rec or "response" in rec:
            out["outcome"] = outcome
        for c in ("pfs", "os"):
            tcol, ecol = f"{c}_months", f"{c}_event"
            if (tcol in rec) != (ecol in rec):
                have, lack = (tcol, ecol) if tcol in rec else (ecol, tcol)
                self.fail(n, have, f"'{have}' needs its partner column '{lack}'")
            if tcol in rec:
                out[tcol] = self.number(n, tcol, rec[tcol], 0.0, 1200.0,
                                        hint="times are months from the start of treatment, >= 0")
                out[ecol] = self.flag(n, ecol, rec[ecol], "1 (event) or 0 (censored)")
                if np.isnan(out[tcol]) != (out[ecol] is pd.NA):
                    self.fail(n, tcol if np.isnan(out[tcol]) else ecol,
                              f"{c.upper()} has a time or an event flag but not both")
        if "split" in rec:
            out["split"] = self.choice(n, "split", rec["split"], SPLITS, "a split",
                                       "use train or validation (training, val, valid and test are accepted)")
        return out
