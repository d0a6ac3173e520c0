"""``doseradiomics manifest``: a cohort manifest from a folder of planning-system exports.

``--dicom-root DIR`` holds one folder per patient. Each is scanned as ``extract --patient-dir``
does (:func:`DoseRadiomicsLib.discovery.discover_patient`), the GTV is chosen among the RTSTRUCT's
ROI names by the user's rules (:func:`DoseRadiomicsLib.dicomrt.choose_structure`: exact names,
aliases, ``glob:``/``re:`` patterns, case and spaces ignored), and one manifest row is written per
patient: ``patient_id`` (the folder name, or the CT's PatientID with ``--id-from patientid``),
``patient_dir``, the files found (``ct`` = the first file of the chosen series, ``dose``, ``gtv``)
and ``gtv_name`` (the ROI's exact name). A patient that cannot be matched is left out of the
manifest and listed with the reason in the report (``unmatched.csv`` beside the manifest).
``--clinical CSV`` merges clinical columns keyed by ``patient_id``; patients without a clinical
row and clinical rows without a patient are listed in the report too.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path

from .errors import DoseRadiomicsError, InputError, ManifestError
from .fileio import atomic_write_text, csv_cell_value, csv_safe_cell

BUILT_COLUMNS = ("patient_id", "patient_dir", "ct", "dose", "gtv", "gtv_name")


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to the manifest's folder (as the manifest reads it), absolute across drives."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), base.resolve())).as_posix()
    except ValueError:
        return str(Path(path).resolve())


def read_clinical(path) -> tuple[list, dict]:
    """(columns, patient_id -> row) of a clinical CSV/TSV keyed by ``patient_id``."""
    from .manifest import _canonical, _delimiter

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"the clinical file cannot be read as UTF-8 text ({exc})", path=path) from None
    if not text.strip():
        raise ManifestError("the clinical file is empty", path=path)
    rows = list(csv.reader(text.splitlines(), delimiter=_delimiter(path, text)))
    header = [_canonical(h) for h in rows[0]]
    if "patient_id" not in header:
        raise ManifestError("the clinical file has no patient_id column", path=path,
                            hint="its first row must name the columns, one of them patient_id")
    clash = [c for c in header if c in BUILT_COLUMNS and c != "patient_id"]
    if clash:
        raise ManifestError(f"the clinical file has column(s) the manifest builder writes: {', '.join(clash)}",
                            path=path, hint="rename or drop them")
    out = {}
    for n, r in enumerate(rows[1:], start=1):
        if not any(c.strip() for c in r):
            continue
        if len(r) != len(header):
            raise ManifestError(f"has {len(r)} cells but the header has {len(header)} columns", row=n, path=path)
        rec = dict(zip(header, (csv_cell_value(c.strip()) for c in r)))
        if rec["patient_id"] in out:
            raise ManifestError(f"patient_id '{rec['patient_id']}' appears twice", row=n, path=path)
        out[rec["patient_id"]] = rec
    return [c for c in header if c != "patient_id"], out


def build_manifest(dicom_root, gtv_name, out, clinical=None, id_from: str = "folder", report=None,
                   progress=None) -> dict:
    """Scan ``dicom_root`` and write the manifest ``out`` and the report; returns a summary dict."""
    from . import dicomrt, discovery
    from .manifest import _UNSAFE_ID

    root = Path(dicom_root)
    if not root.is_dir():
        raise InputError("the DICOM root is not a folder", path=root,
                         hint="give the folder that holds one folder per patient")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    report = Path(report) if report else out.with_name("unmatched.csv")
    say = progress or (lambda _m: None)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    rows, problems, seen = [], [], {}
    for folder in folders:
        try:
            found = discovery.discover_patient(folder, patient=folder.name)
            st = found.headers["rtstruct"]
            names = [str(r.get("ROIName", "")).strip() for r in st.ds.get("StructureSetROISequence", [])]
            roi = names[dicomrt.choose_structure(names, gtv_name, "structure", folder.name, st.path)]
            pid = folder.name if id_from == "folder" else str(found.headers["ct"].get("PatientID", "")).strip()
            if not pid or _UNSAFE_ID.search(pid) or pid.startswith("."):
                raise InputError(f"patient id '{pid}' cannot be used as a file name", patient=folder.name,
                                 path=folder, hint="rename the folder, or use --id-from folder")
            if pid.casefold() in seen:
                raise InputError(f"patient id '{pid}' is already used by folder {seen[pid.casefold()]}",
                                 patient=folder.name, path=folder, hint="use --id-from folder")
            seen[pid.casefold()] = folder.name
            rows.append({"patient_id": pid, "patient_dir": _relative(folder, out.parent),
                         "ct": _relative(found.ct, out.parent),
                         "dose": _relative(found.doses[0], out.parent) if len(found.doses) == 1 else "",
                         "gtv": _relative(found.rtstruct, out.parent), "gtv_name": roi,
                         "_warnings": "; ".join(found.warnings)})
            say(f"{folder.name}: {pid}, GTV '{roi}', dose {found.record['rtdose']['summation']}")
        except DoseRadiomicsError as exc:
            problems.append({"folder": folder.name, "patient_id": "", "problem": exc.problem
                             + (f" ({exc.hint})" if exc.hint else ""), "file": exc.path or ""})
            say(f"{folder.name}: not matched: {exc.problem}")
    clinical_columns = []
    if clinical:
        clinical_columns, table = read_clinical(clinical)
        for r in rows:
            rec = table.get(r["patient_id"])
            if rec is None:
                problems.append({"folder": "", "patient_id": r["patient_id"], "file": str(clinical),
                                 "problem": "no row in the clinical file (kept, clinical cells empty)"})
            for c in clinical_columns:
                r[c] = rec.get(c, "") if rec else ""
        matched = {r["patient_id"] for r in rows}
        for pid in table:
            if pid not in matched:
                problems.append({"folder": "", "patient_id": pid, "file": str(clinical),
                                 "problem": "a clinical row without a matched patient folder"})
    for r in rows:
        if r["_warnings"]:
            problems.append({"folder": Path(r["patient_dir"]).name, "patient_id": r["patient_id"], "file": "",
                             "problem": "warning (kept): " + r["_warnings"]})
    if not rows:
        atomic_write_text(report, _csv(["folder", "patient_id", "problem", "file"], problems))
        raise InputError(f"no patient folder of {len(folders)} could be matched; see {report}", path=root)
    columns = list(BUILT_COLUMNS) + clinical_columns
    atomic_write_text(out, _csv(columns, rows))
    atomic_write_text(report, _csv(["folder", "patient_id", "problem", "file"], problems))
    from .manifest import read_manifest

    read_manifest(out)  # what we wrote must be a valid manifest
    return {"manifest": str(out), "report": str(report), "patients": len(rows), "folders": len(folders),
            "unmatched": sum(1 for p in problems if p["folder"] and not p["patient_id"])}


def _csv(columns, rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([csv_safe_cell(r.get(c, "")) for c in columns])
    return buf.getvalue()


def register_cli(sub) -> None:
    p = sub.add_parser(
        "manifest", help="a cohort manifest from a folder of DICOM RT exports (one folder per patient)",
        description="Scans each patient folder under --dicom-root (headers only), chooses the CT series, "
                    "RTSTRUCT and RTDOSE as 'extract --patient-dir' does and the GTV by the --gtv-name rules, "
                    "and writes the manifest plus a report of every folder that could not be matched and why.")
    p.add_argument("--dicom-root", required=True, metavar="DIR", help="folder holding one export folder per patient")
    p.add_argument("--gtv-name", required=True, help="GTV name rules, '|'-separated, tried in order: names "
                   "(case and spaces ignored), glob:PATTERN, re:PATTERN; e.g. 'GTV|GTVp|glob:GTV_*'")
    p.add_argument("--clinical", metavar="CSV", help="clinical columns to merge, keyed by patient_id")
    p.add_argument("--id-from", choices=["folder", "patientid"], default="folder",
                   help="patient id: the folder name or the CT's PatientID")
    p.add_argument("--out", required=True, metavar="CSV", help="the manifest to write")
    p.add_argument("--report", metavar="CSV", help="the report of unmatched patients (default: unmatched.csv "
                   "beside the manifest)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    say = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    summary = build_manifest(args.dicom_root, args.gtv_name, args.out, clinical=args.clinical,
                             id_from=args.id_from, report=args.report, progress=say)
    print(f"{summary['patients']} of {summary['folders']} patient folders in {summary['manifest']}; "
          f"{summary['unmatched']} not matched (see {summary['report']})")
    return 0
