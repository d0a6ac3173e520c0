"""Finding a patient's CT series, RTSTRUCT and RTDOSE in a planning-system export folder.

``extract --patient-dir DIR`` (and a manifest's ``patient_dir`` column) come here. The folder is
scanned recursively reading DICOM headers only (no pixel data, no contour points), and the files
are chosen by fixed rules, each choice recorded with its reason (``Discovery.record``, written to
``extraction.json``):

1. Images: LOCALIZER (scout) images and non-image objects (RTPLAN, RT records, SR, ...) are
   skipped; the other images are grouped into series.
2. RTSTRUCT: the only one; or, of several, the ones whose referenced CT series is in the folder;
   still several is an ambiguity error listing them (file, date, label) and ``--gtv FILE``.
3. CT: the series the RTSTRUCT references; else the only axial CT series of the RTSTRUCT's frame
   of reference; else an ambiguity error listing the series and ``--ct``.
4. RTDOSE, among those in the CT's frame of reference (others are refused with that reason): the
   PLAN (or MULTI_PLAN) dose; several are an ambiguity error listing them and ``--dose FILE``.
   Without a plan dose, BEAM doses referencing one plan are summed (recorded as such); FRACTION,
   BRACHY and other summation types are refused with the reason.
5. Plan consistency (:func:`plan_consistency`): FrameOfReferenceUID of CT, RTSTRUCT and RTDOSE
   must agree (refused otherwise); PatientID and StudyInstanceUID that differ are warnings, with
   both values shown.

The GTV name in the chosen RTSTRUCT follows :func:`DoseRadiomicsLib.dicomrt.choose_structure`
(the one name rule of the project).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from .dicomrt import is_localizer
from .errors import InputError

log = logging.getLogger(__name__)

_SCAN_TAGS = ["Modality", "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID",
              "FrameOfReferenceUID", "PatientID", "PatientName", "ImageType", "SeriesDescription",
              "ImageOrientationPatient", "ImagePositionPatient", "SeriesDate", "SeriesTime", "StudyDate",
              "ContentDate", "ContentTime", "InstanceCreationDate", "StructureSetLabel", "StructureSetDate",
              "StructureSetTime", "ReferencedFrameOfReferenceSequence", "StructureSetROISequence",
              "DoseSummationType", "DoseType", "DoseUnits", "ReferencedRTPlanSequence", "RTPlanLabel",
              "NumberOfFrames", "Rows", "Columns"]
#: Summation types accepted as the whole plan's dose.
PLAN_SUMMATIONS = ("PLAN", "MULTI_PLAN")
#: Why the other summation types are refused.
REFUSED_SUMMATIONS = {
    "FRACTION": "a dose of one fraction, not the whole treatment",
    "BRACHY": "a brachytherapy dose",
    "CONTROL_POINT": "a dose of one control point",
    "RECORD": "a delivered-dose record, not the plan",
    "FRACTION_SESSION": "a dose of one session",
    "BEAM_SESSION": "a dose of one beam in one session",
}
_NON_IMAGE = {"RTPLAN", "RTRECORD", "RTIMAGE", "REG", "SEG", "SR", "PR", "KO", "RTTREATMENTRECORD"}


@dataclass
class DicomFile:
    """What the header scan keeps of one file."""

    path: Path
    modality: str
    ds: pydicom.Dataset = field(repr=False)

    def get(self, key, default=""):
        value = self.ds.get(key)
        return default if value in (None, "") else value

    @property
    def frame(self) -> str | None:
        f = self.ds.get("FrameOfReferenceUID")
        if f:
            return str(f)
        for ref in self.ds.get("ReferencedFrameOfReferenceSequence", []):  # RTSTRUCT keeps it here
            if ref.get("FrameOfReferenceUID"):
                return str(ref.FrameOfReferenceUID)
        return None

    @property
    def date(self) -> str:
        for key in ("StructureSetDate", "ContentDate", "InstanceCreationDate", "SeriesDate", "StudyDate"):
            if self.ds.get(key):
                return str(self.ds.get(key))
        return ""

    def describe(self, root: Path) -> str:
        """File name, date and description, as an ambiguity error lists a candidate."""
        try:
            name = str(self.path.relative_to(root))
        except ValueError:
            name = str(self.path)
        bits = [name]
        if self.date:
            bits.append(f"date {self.date}")
        label = self.get("StructureSetLabel") or self.get("SeriesDescription") or self.get("RTPlanLabel")
        if label:
            bits.append(f"'{label}'")
        if self.modality == "RTDOSE":
            bits.append(f"DoseSummationType {self.get('DoseSummationType', '?')}")
        return ", ".join(bits)


def referenced_series(rtstruct: DicomFile) -> list[str]:
    """CT SeriesInstanceUIDs an RTSTRUCT says its contours were drawn on."""
    out = []
    for fr in rtstruct.ds.get("ReferencedFrameOfReferenceSequence", []):
        for st in fr.get("RTReferencedStudySequence", []):
            for se in st.get("RTReferencedSeriesSequence", []):
                if se.get("SeriesInstanceUID"):
                    out.append(str(se.SeriesInstanceUID))
    return out


def referenced_plan(dose: DicomFile) -> str | None:
    for ref in dose.ds.get("ReferencedRTPlanSequence", []):
        if ref.get("ReferencedSOPInstanceUID"):
            return str(ref.ReferencedSOPInstanceUID)
    return None


def _is_axial(ds) -> bool:
    iop = ds.get("ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        return False
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    n = np.linalg.norm(normal)
    return n > 0 and abs(normal[2]) / n > 0.99


def scan(folder, patient=None) -> dict:
    """Every DICOM file under ``folder`` by role, reading headers only (:func:`scan_files`)."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError("the patient folder does not exist or is not a folder", patient=patient, path=root)
    return scan_files(sorted(q for q in root.rglob("*") if q.is_file()))


def scan_files(paths) -> dict:
    """The given files by role, reading headers only.

    Returns {"series": {uid: [DicomFile]}, "RTSTRUCT": [...], "RTDOSE": [...], "skipped": [(path, why)]}.
    """
    found = {"series": {}, "RTSTRUCT": [], "RTDOSE": [], "RTPLAN": [], "skipped": []}
    for p in paths:
        if p.name.upper() == "DICOMDIR" or p.name.startswith("."):
            continue
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=_SCAN_TAGS)
        except (InvalidDicomError, OSError, ValueError, EOFError, TypeError, AttributeError):
            found["skipped"].append((p, "not DICOM"))
            continue
        modality = str(ds.get("Modality", "")).upper()
        if not modality and ds.get("SOPClassUID") is None:
            found["skipped"].append((p, "not DICOM"))
            continue
        f = DicomFile(p, modality, ds)
        if modality in ("RTSTRUCT", "RTDOSE", "RTPLAN"):
            found[modality].append(f)
        elif modality in _NON_IMAGE:
            found["skipped"].append((p, f"a {modality} object, not an image"))
        elif is_localizer(ds):
            found["skipped"].append((p, "a LOCALIZER (scout) image"))
        elif ds.get("ImagePositionPatient") is None or ds.get("SeriesInstanceUID") is None:
            found["skipped"].append((p, f"a {modality or 'DICOM'} object without ImagePositionPatient"))
        else:
            found["series"].setdefault(str(ds.SeriesInstanceUID), []).append(f)
    return found


@dataclass
class Discovery:
    """The files chosen in a patient folder and why."""

    root: Path
    ct_series_uid: str
    ct_files: list
    rtstruct: Path
    doses: list                      # one RTDOSE, or the BEAM doses to sum
    dose_summation: str              # "PLAN", "MULTI_PLAN", "BEAM (n summed)", ...
    headers: dict = field(repr=False, default_factory=dict)   # role -> DicomFile
    record: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    @property
    def ct(self) -> Path:
        """One file of the chosen series: the CT reader reads that series and no other."""
        return self.ct_files[0]


def _rel(root: Path, p: Path) -> str:
    try:
        return str(Path(p).relative_to(root))
    except ValueError:
        return str(p)


def _pick(candidates: list, wanted, root: Path, what: str):
    """The candidate ``wanted`` names (a path, a file name, or a UID), or InputError."""
    w = str(wanted)
    for c in candidates:
        if w in (str(c.path), c.path.name, _rel(root, c.path), str(c.get("SOPInstanceUID")),
                 str(c.get("SeriesInstanceUID"))) or (Path(w).exists() and Path(w).resolve() == c.path.resolve()):
            return c
    listing = "; ".join(c.describe(root) for c in candidates) or "none"
    raise InputError(f"no {what} matches '{wanted}'; the folder has: {listing}", path=root)


def discover_patient(folder, patient=None, rtstruct=None, rtdose=None, ct_series=None) -> Discovery:
    """Choose the CT series, RTSTRUCT and RTDOSE in ``folder`` by the rules of the module docstring.

    ``rtstruct``/``rtdose`` (a file path or name, or a UID; ``--gtv``/``--dose`` on the command line)
    and ``ct_series`` (a SeriesInstanceUID, or a file or folder of the series; ``--ct``) pick one
    where the rules find several.
    """
    root = Path(folder).resolve()
    return _choose(scan(root, patient), root, patient, rtstruct, rtdose, ct_series)


def discover_files(files, patient=None, root=None, rtstruct=None, rtdose=None, ct_series=None) -> Discovery:
    """:func:`discover_patient` on a list of files instead of a folder (e.g. a study's files in
    Slicer's DICOM database, which may lie in several folders): the same rules, choices and errors.

    ``root`` (default: the files' common folder) is what file names in the record and the errors are
    relative to.
    """
    paths = sorted({Path(f).resolve() for f in files})
    missing = [p for p in paths if not p.is_file()]
    if not paths or missing:
        raise InputError("no files given" if not paths else
                         f"{len(missing)} of the {len(paths)} files do not exist: "
                         + ", ".join(str(p) for p in missing[:5]) + (" ..." if len(missing) > 5 else ""),
                         patient=patient, path=root,
                         hint="the DICOM database lists files that were moved or deleted: import the study again")
    if root is None:
        import os
        root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    disc = _choose(scan_files(paths), Path(root).resolve(), patient, rtstruct, rtdose, ct_series)
    disc.record["files_given"] = len(paths)
    return disc


def _choose(found: dict, root: Path, patient, rtstruct, rtdose, ct_series) -> Discovery:
    """The choices of :func:`discover_patient` on the scanned files (:func:`scan_files`)."""
    reasons = {}
    where = {"patient": patient, "path": root}

    # -- RTSTRUCT
    structs = found["RTSTRUCT"]
    if rtstruct is not None:
        st = _pick(structs, rtstruct, root, "RTSTRUCT")
        reasons["rtstruct"] = "picked by the user (--gtv)"
    elif not structs:
        raise InputError("no RTSTRUCT (structure set) in the patient folder", **where,
                         hint="export the structure set with the CT and dose, or give --ct, --dose and --gtv")
    elif len(structs) == 1:
        st = structs[0]
        reasons["rtstruct"] = "the only RTSTRUCT in the folder"
    else:
        with_ct = [s for s in structs if any(u in found["series"] for u in referenced_series(s))]
        if len(with_ct) == 1:
            st = with_ct[0]
            reasons["rtstruct"] = (f"the only one of {len(structs)} RTSTRUCTs whose CT series is in the folder")
        else:
            listing = "; ".join(s.describe(root) for s in (with_ct or structs))
            raise InputError(f"{len(with_ct or structs)} structure sets could be the plan's: {listing}",
                             **where, hint="pick one with --gtv FILE (manifest column 'gtv')")

    # -- CT series
    series = found["series"]
    if ct_series is not None:
        key = str(ct_series)
        if key not in series:
            p = Path(key)
            hits = [u for u, fs in series.items()
                    if any(f.path.resolve() == p.resolve() or p.resolve() in f.path.resolve().parents for f in fs)]
            if len(hits) != 1:
                listing = "; ".join(f"{u} ({len(fs)} files, '{fs[0].get('SeriesDescription')}', first "
                                    f"{_rel(root, fs[0].path)})" for u, fs in series.items()) or "none"
                raise InputError(f"'{ct_series}' names {'no' if not hits else 'more than one'} image series "
                                 f"of the folder; its series: {listing}", **where)
            key = hits[0]
        uid = key
        reasons["ct"] = "picked by the user (--ct)"
    else:
        wanted = [u for u in referenced_series(st) if u in series]
        if wanted:
            uid = wanted[0]
            reasons["ct"] = "the series the RTSTRUCT references"
        else:
            frame = st.frame
            axial = {u: fs for u, fs in series.items()
                     if fs[0].modality == "CT" and _is_axial(fs[0].ds) and (frame is None or fs[0].frame == frame)}
            if len(axial) == 1:
                uid = next(iter(axial))
                reasons["ct"] = ("the only axial CT series in the RTSTRUCT's frame of reference "
                                 "(the series it references is not in the folder)")
            elif not axial:
                others = "; ".join(f"{u} ({fs[0].modality}, frame {fs[0].frame})" for u, fs in series.items())
                raise InputError("no axial CT series in the RTSTRUCT's frame of reference "
                                 f"{frame}" + (f"; image series found: {others}" if others else "; no image series found"),
                                 **where, hint="export the planning CT with the structure set")
            else:
                listing = "; ".join(f"{u} ({len(fs)} slices, '{fs[0].get('SeriesDescription')}', first file "
                                    f"{_rel(root, fs[0].path)})" for u, fs in axial.items())
                raise InputError(f"{len(axial)} axial CT series could be the planning CT: {listing}", **where,
                                 hint="pick one with --ct FILE-OR-FOLDER-OR-SERIES-UID (manifest column 'ct')")
    ct_files = sorted(f.path for f in series[uid])
    ct_head = series[uid][0]

    # -- RTDOSE
    doses = found["RTDOSE"]
    refused = []
    if rtdose is not None:
        chosen = [_pick(doses, rtdose, root, "RTDOSE")]
        summation = str(chosen[0].get("DoseSummationType", "")).upper() or "unstated"
        if summation in REFUSED_SUMMATIONS:
            raise InputError(f"the RTDOSE picked has DoseSummationType {summation}: "
                             f"{REFUSED_SUMMATIONS[summation]}", patient=patient, path=chosen[0].path,
                             hint="pick the plan dose (DoseSummationType PLAN)")
        reasons["dose"] = "picked by the user (--dose)"
    else:
        usable = []
        for d in doses:
            summation = str(d.get("DoseSummationType", "")).upper()
            if ct_head.frame and d.frame and d.frame != ct_head.frame:
                refused.append((d, f"frame of reference {d.frame}, not the CT's {ct_head.frame}"))
            elif summation in REFUSED_SUMMATIONS:
                refused.append((d, f"DoseSummationType {summation}: {REFUSED_SUMMATIONS[summation]}"))
            else:
                usable.append(d)
        plans = [d for d in usable if str(d.get("DoseSummationType", "")).upper() in PLAN_SUMMATIONS + ("",)]
        beams = [d for d in usable if str(d.get("DoseSummationType", "")).upper() == "BEAM"]
        if len(plans) == 1:
            chosen, summation = plans, str(plans[0].get("DoseSummationType", "")).upper() or "unstated"
            reasons["dose"] = "the only plan dose in the CT's frame of reference"
        elif len(plans) > 1:
            listing = "; ".join(d.describe(root) for d in plans)
            raise InputError(f"{len(plans)} plan doses in the CT's frame of reference: {listing}", **where,
                             hint="pick one with --dose FILE (manifest column 'dose')")
        elif beams:
            by_plan = {}
            for d in beams:
                by_plan.setdefault(referenced_plan(d), []).append(d)
            if len(by_plan) > 1:
                listing = "; ".join(f"plan {p}: " + ", ".join(_rel(root, d.path) for d in ds)
                                    for p, ds in by_plan.items())
                raise InputError(f"BEAM doses of {len(by_plan)} plans and no plan dose: {listing}", **where,
                                 hint="export the plan dose, or pick one dose with --dose FILE")
            chosen = sorted(beams, key=lambda d: str(d.path))
            summation = f"BEAM ({len(chosen)} summed)"
            reasons["dose"] = (f"no plan dose: the {len(chosen)} BEAM doses of plan "
                               f"{next(iter(by_plan))} summed")
        else:
            why = "; ".join(f"{_rel(root, d.path)}: {r}" for d, r in refused)
            raise InputError("no usable RTDOSE in the patient folder" + (f" (refused: {why})" if why else ""),
                             **where, hint="export the plan dose (DoseSummationType PLAN) in the CT's frame "
                                           "of reference")
    disc = Discovery(root=root, ct_series_uid=uid, ct_files=ct_files, rtstruct=st.path,
                     doses=[d.path for d in chosen], dose_summation=summation,
                     headers={"ct": ct_head, "rtstruct": st, "rtdose": chosen[0]})
    disc.warnings = plan_consistency({"CT": ct_head.ds, "RTSTRUCT": st.ds, "RTDOSE": chosen[0].ds},
                                     patient=patient, path=root)
    disc.record = {
        "patient_dir": str(root),
        "ct": {"series_instance_uid": uid, "files": len(ct_files), "first_file": _rel(root, ct_files[0]),
               "series_description": str(ct_head.get("SeriesDescription")), "why": reasons["ct"]},
        "rtstruct": {"file": _rel(root, st.path), "label": str(st.get("StructureSetLabel")),
                     "date": st.date, "why": reasons["rtstruct"]},
        "rtdose": {"files": [_rel(root, d.path) for d in chosen], "summation": summation,
                   "why": reasons["dose"]},
        "refused_doses": [{"file": _rel(root, d.path), "why": r} for d, r in refused],
        "skipped": _skipped_summary(found["skipped"], root),
        "other_image_series": [{"series_instance_uid": u, "files": len(fs),
                                "series_description": str(fs[0].get("SeriesDescription")),
                                "modality": fs[0].modality} for u, fs in series.items() if u != uid],
        "plan_files": [_rel(root, f.path) for f in found["RTPLAN"]],
        "warnings": list(disc.warnings),
    }
    return disc


def _skipped_summary(skipped, root) -> dict:
    """Skipped files counted by reason, with up to five file names each."""
    out: dict = {}
    for p, why in skipped:
        e = out.setdefault(why, {"count": 0, "files": []})
        e["count"] += 1
        if len(e["files"]) < 5:
            e["files"].append(_rel(root, p))
    return out


def headers_of(ct, dose, gtv_path) -> dict:
    """The DICOM headers (role -> dataset) of the single-file route's inputs that are DICOM."""
    def header(path):
        try:
            return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_SCAN_TAGS)
        except (InvalidDicomError, OSError, ValueError, EOFError, TypeError, AttributeError):
            return None

    out = {}
    if ct.details.get("first_file"):
        out["CT"] = header(ct.details["first_file"])
    if str(dose.details.get("format", "")).startswith("DICOM"):
        out["RTDOSE"] = header(dose.path)
    if gtv_path and not str(gtv_path).lower().endswith((".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")) \
            and Path(gtv_path).is_file():
        ds = header(gtv_path)
        if ds is not None and str(ds.get("Modality", "")).upper() == "RTSTRUCT":
            out["RTSTRUCT"] = ds
    return out


def plan_consistency(headers: dict, patient=None, path=None, check_frames: bool = True) -> list:
    """Compare PatientID, StudyInstanceUID and FrameOfReferenceUID across the roles' headers.

    ``headers``: role ("CT", "RTSTRUCT", "RTDOSE") -> pydicom header (missing roles skipped). A
    frame of reference that differs is an InputError (contours or dose would be placed on the
    wrong anatomy; ``check_frames=False`` where the reader and the alignment check it already, with
    their own remedies: a transform or registration); PatientID or StudyInstanceUID that differ are returned as warnings. Both
    values are shown.
    """
    def frame(ds):
        if ds.get("FrameOfReferenceUID"):
            return str(ds.FrameOfReferenceUID)
        for ref in ds.get("ReferencedFrameOfReferenceSequence", []):
            if ref.get("FrameOfReferenceUID"):
                return str(ref.FrameOfReferenceUID)
        return None

    present = {r: ds for r, ds in headers.items() if ds is not None}
    frames = {r: frame(ds) for r, ds in present.items() if frame(ds)}
    if check_frames and len(set(frames.values())) > 1:
        shown = ", ".join(f"{r} {f}" for r, f in frames.items())
        raise InputError(f"the plan's files are in different frames of reference: {shown}", patient=patient,
                         path=path, hint="use the CT, structure set and dose of one plan (or give the dose "
                                         "with --dose and a --transform)")
    warnings = []
    for key, what in (("PatientID", "PatientID"), ("StudyInstanceUID", "StudyInstanceUID")):
        values = {r: str(ds.get(key)) for r, ds in present.items() if ds.get(key) not in (None, "")}
        if len(set(values.values())) > 1:
            warnings.append(f"{what} differs: " + ", ".join(f"{r} '{v}'" for r, v in values.items()))
    for w in warnings:
        log.warning("%s: %s", path, w)
    return warnings


def check_summation(details: dict, patient=None, path=None) -> None:
    """Refuse a single RTDOSE that is not the whole plan's dose (BEAM, FRACTION, BRACHY, ...)."""
    summation = str(details.get("dose_summation_type") or "").upper()
    if summation == "BEAM":
        raise InputError("the RTDOSE has DoseSummationType BEAM: the dose of one beam, not the plan",
                         patient=patient, path=path,
                         hint="give the plan dose, or the export folder with --patient-dir (its BEAM doses "
                              "are then summed)")
    if summation in REFUSED_SUMMATIONS:
        raise InputError(f"the RTDOSE has DoseSummationType {summation}: {REFUSED_SUMMATIONS[summation]}",
                         patient=patient, path=path, hint="give the plan dose (DoseSummationType PLAN)")


def read_doses(paths, unit=None, patient=None):
    """One RTDOSE read as :func:`readers.read_dose` does, or several BEAM doses summed on the first's grid
    (linear interpolation, 0 Gy outside a grid, :func:`sum_doses`); the details list the summed files."""
    from .readers import read_dose

    return sum_doses([read_dose(p, unit=unit, patient=patient) for p in paths], patient=patient)


def sum_doses(loaded, patient=None):
    """BEAM doses (LoadedImage, Gy) summed on the first one's grid (linear interpolation, 0 Gy outside
    a grid); one dose is returned as it is. The details list the summed files."""
    import SimpleITK as sitk

    from .alignment import resample_to_reference

    first = loaded[0]
    if len(loaded) == 1:
        return first
    frames = {d.frame_of_reference_uid for d in loaded}
    if len(frames) > 1:
        raise InputError(f"the BEAM doses are in different frames of reference ({', '.join(map(str, frames))})",
                         patient=patient, path=first.path)
    total = sitk.Cast(first.image, sitk.sitkFloat64)
    for d in loaded[1:]:
        total = total + sitk.Cast(resample_to_reference(d.image, first.image, sitk.sitkLinear, 0.0), sitk.sitkFloat64)
    image = sitk.Cast(total, sitk.sitkFloat32)
    values = sitk.GetArrayViewFromImage(image)
    details = dict(first.details)
    details.update({"dose_summation_type": "BEAM", "summed_beam_doses": [d.path for d in loaded],
                    "max_dose_gy": float(values.max()), "min_dose_gy": float(values.min())})
    return type(first)(image, first.path, first.frame_of_reference_uid, details)
