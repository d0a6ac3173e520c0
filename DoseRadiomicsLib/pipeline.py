"""One patient from files to features: read, align, find the slice, build the ROIs, extract.

``doseradiomics extract`` is this module's command. The same steps are exposed one by one
(:func:`extract_rois` for ROIs built elsewhere, e.g. in Slicer) so that no caller re-implements them.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import __version__
from .crosssection import CrossSection, largest_cross_section
from .errors import DoseRadiomicsError, InputError
from .extraction import FeatureExtractor, parameter_file
from .fileio import (atomic_write_files, atomic_write_text, canonical_json, check_output_folder, csv_safe_cell,
                     jsonable)
from .rois import SliceROIs, make_rois, roi_modality

DIAGNOSTIC_PREFIX = "diag__"
ROI_SEPARATOR = "__"
AXES = {"axial": 2, "coronal": 1, "sagittal": 0, "2": 2, "1": 1, "0": 0, "k": 2, "j": 1, "i": 0}


@dataclass
class ExtractionOptions:
    """Everything besides the input files that decides the features (and so the settings hash)."""

    isodose_gy: tuple = (50.0,)
    isodose_touching_gtv: bool = False
    axis: int = 2
    config: str = "paper"
    ct_params: str | None = None     # overrides the configuration's CT parameter file
    dose_params: str | None = None   # overrides the configuration's dose parameter file
    transform: str | None = None     # ITK transform file, CT -> dose frame, when frames differ
    register: bool = False           # rigid registration when frames differ and no transform
    #: the numerical-stability screen (:mod:`stability`) after the extraction; decides no feature value
    stability_screen: bool = True
    #: "largest" (the paper's one slice), "largest:K" (the slab of K slices either side, one thin 3D
    #: image) or "volume" (the whole GTV and isodose regions in 3D): see crosssection.parse_section
    section: str = "largest"

    def __post_init__(self):
        from .crosssection import parse_section
        from .rois import isodose_roi_names
        self.isodose_gy = tuple(float(x) for x in self.isodose_gy)
        isodose_roi_names(self.isodose_gy)   # before any work: 50 and 50.0000001 would share a name
        self.section = parse_section(self.section).text

    @property
    def section_spec(self):
        from .crosssection import parse_section
        return parse_section(self.section)

    def parameter_paths(self) -> dict:
        return {"CT": Path(self.ct_params) if self.ct_params else parameter_file(self.config, "CT"),
                "dose": Path(self.dose_params) if self.dose_params else parameter_file(self.config, "dose")}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["isodose_gy"] = list(self.isodose_gy)
        return d


@dataclass
class PatientInputs:
    """The files of one patient."""

    patient_id: str
    ct: str | None
    dose: str | None
    gtv: str | None
    gtv_name: str | None = None
    gtv_label: int | None = None
    dose_unit: str | None = None
    #: a planning-system export folder: the CT series, RTSTRUCT and RTDOSE are found in it
    #: (:mod:`discovery`); ``ct``/``dose``/``gtv``, when given too, pick among its candidates
    patient_dir: str | None = None


@dataclass
class PatientResult:
    patient_id: str
    features: "OrderedDict[str, float]"
    record: dict
    rois: SliceROIs | None = field(default=None, repr=False)
    dose_on_ct: sitk.Image | None = field(default=None, repr=False)


@lru_cache(maxsize=8)
def _extractor(path: str) -> FeatureExtractor:
    return FeatureExtractor(path)


def extractors(options: ExtractionOptions) -> dict:
    """The CT and dose feature extractors of ``options`` (cached per parameter file)."""
    return {m: _extractor(str(p.resolve())) for m, p in options.parameter_paths().items()}


def options_settings_hash(options: ExtractionOptions) -> str:
    """A short hash of the settings that decide feature values; models refuse features of another.

    Only parameters and options: no library version. Whether this installation's libraries compute
    the same values as the training one is measured, not guessed from version strings (which differ
    for the same code depending on how it was installed): see :mod:`fingerprint`.
    """
    ex = extractors(options)
    payload = {
        "ct_parameters": ex["CT"].parameters,
        "dose_parameters": ex["dose"].parameters,
        "isodose_gy": list(options.isodose_gy),
        "isodose_touching_gtv": options.isodose_touching_gtv,
        "axis": options.axis,
    }
    if not options.section_spec.is_single_slice:
        # only 2.5D/3D add it: the paper's section keeps the hash models trained before sections have
        payload["section"] = options.section
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:16]


def feature_columns(columns) -> list:
    """The feature columns (``<ROI>__<feature>``) among ``columns``, in their order."""
    return [c for c in columns if ROI_SEPARATOR in c and not c.startswith(DIAGNOSTIC_PREFIX)
            and c not in ("patient_id", "settings_hash")]


def extract_rois(rois: SliceROIs, options: ExtractionOptions, patient: str | None = None,
                 progress=None, keep: dict | None = None) -> "OrderedDict[str, float]":
    """pyradiomics features of every ROI of ``rois``: ``<ROI>__<feature>`` -> value.

    The ROIs of one slice (CT or dose) go to pyradiomics together, so that a filtered image is
    computed once for every ROI that sees the same one (:meth:`FeatureExtractor.extract_many`).
    ``keep`` (a dict) receives per ROI the filtered images its features come from, for
    :func:`stability.screen_rois`, which then does not filter the unperturbed images again.
    """
    cut_for = rois.extent.spec if rois.extent is not None else "largest"
    if cut_for != options.section:   # before any work: the names would claim another section
        from .errors import ROIError
        raise ROIError(f"the ROIs were made for section {cut_for}, the extraction asks for section {options.section}",
                       patient=patient, hint=f"make the ROIs again with section {options.section}, or extract "
                                             f"with section {cut_for}")
    ex = extractors(options)
    per_roi = {}
    where = "slice" if rois.extent is None else f"{rois.extent.spec} section"
    for modality, masks in rois.masks_by_modality().items():
        if progress:
            progress(f"extracting {', '.join(masks)} on the {modality} {where}")
        per_roi.update(ex[modality].extract_many(rois.image_for(next(iter(masks))), masks, patient=patient, keep=keep))
    suffix = options.section_spec.roi_suffix
    row: "OrderedDict[str, float]" = OrderedDict()
    for name in rois.masks:
        for k, v in per_roi[name].items():
            row[f"{name}{suffix}{ROI_SEPARATOR}{k}"] = v
    return row


def extract_and_screen(rois: SliceROIs, options: ExtractionOptions, patient: str | None = None,
                       progress=None, timer=None) -> tuple:
    """``(features, stability)``: :func:`extract_rois`, then, with ``options.stability_screen``, the
    stability screen (:func:`stability.screen_rois`, the record's ``stability`` entry; else None) on
    the filtered images the extraction kept. ``timer`` (a :class:`StageTimer`) laps "features" and
    "stability"; ``progress(message)`` hears both steps. For every route that extracts: the command
    line's patients and the Slicer module's Logic."""
    filtered = {} if options.stability_screen else None
    features = extract_rois(rois, options, patient=patient, progress=progress, keep=filtered)
    if timer is not None:
        timer.lap("features")
    if not options.stability_screen:
        return features, None
    from .stability import screen_rois
    if progress:
        progress("stability screen")
    stability = screen_rois(rois, options, features, patient=patient, filtered=filtered)
    if timer is not None:
        timer.lap("stability")
    return features, stability


def section_roi_name(roi: str, section: str = "largest") -> str:
    """The ROI part of a feature name under ``section``: ``GTV``, ``GTV_25D2`` (largest:2), ``GTV_3D`` (volume).

    The suffix keeps pyradiomics' ``imageType_class_feature`` after ``__`` intact and makes the
    features of one section unusable by a model of another (their names differ, as their settings hash).
    """
    from .crosssection import parse_section
    return f"{roi}{parse_section(section).roi_suffix}"


def section_of_columns(columns) -> str | None:
    """The section whose feature names ``columns`` hold ("largest", "largest:K", "volume"), or None
    when they hold none or a mixture."""
    import re
    found = set()
    for c in feature_columns(columns):
        roi = c.split(ROI_SEPARATOR, 1)[0]
        m = re.search(r"_(25D(\d+)|3D)$", roi)
        found.add("largest" if m is None else ("volume" if m.group(1) == "3D" else f"largest:{int(m.group(2))}"))
    return found.pop() if len(found) == 1 else None


def gtv_dose_statistics(dose_on_ct: sitk.Image, gtv: sitk.Image, isodose_gy=(50.0,)) -> "OrderedDict[str, float]":
    """Dose-volume figures of the whole (3D) GTV: mean, min, max, D98, D95, D50, D2 in Gy, V<iso> in %."""
    from .slicegeom import slice_positions, slice_thicknesses, weighted_percentile

    inside = sitk.GetArrayViewFromImage(gtv) != 0
    dose = sitk.GetArrayViewFromImage(dose_on_ct)[inside].astype(float)
    positions = slice_positions(gtv)
    if positions is not None:  # uneven CT slices: each voxel counts with its slice's own thickness
        w = np.broadcast_to(slice_thicknesses(positions)[:, None, None], inside.shape)[inside]
        out = OrderedDict([("GTV_dose_mean_Gy", float(np.average(dose, weights=w))),
                           ("GTV_dose_min_Gy", float(dose.min())), ("GTV_dose_max_Gy", float(dose.max()))])
        for x in (98, 95, 50, 2):
            out[f"GTV_D{x}_Gy"] = weighted_percentile(dose, w, 100 - x)
        for t in isodose_gy:
            out[f"GTV_V{t:g}Gy_pct"] = float(100.0 * w[dose >= t].sum() / w.sum())
        return out
    out: "OrderedDict[str, float]" = OrderedDict()
    out["GTV_dose_mean_Gy"] = float(dose.mean())
    out["GTV_dose_min_Gy"] = float(dose.min())
    out["GTV_dose_max_Gy"] = float(dose.max())
    # Dx: the dose received by at least x % of the volume = the (100 - x)th percentile.
    for x in (98, 95, 50, 2):
        out[f"GTV_D{x}_Gy"] = float(np.percentile(dose, 100 - x))
    for t in isodose_gy:
        out[f"GTV_V{t:g}Gy_pct"] = float(100.0 * (dose >= t).mean())
    return out


def diagnostics_row(section: CrossSection, rois: SliceROIs, dose_stats: dict, coverage: float,
                    stored_index: int | None = None) -> "OrderedDict":
    d: "OrderedDict[str, float]" = OrderedDict()
    d["slice_axis"] = section.axis
    d["slice_index"] = section.index          # in the patient orientation (counted from the feet for axial)
    d["slice_index_stored"] = section.index if stored_index is None else stored_index  # in the file's image
    d["slice_position_mm"] = section.position_mm
    for name, area in rois.areas_mm2().items():   # on the largest cross-section, whatever the section
        d[f"{name}_area_mm2"] = area
    if rois.extent is not None:   # the slab's or volume's slices and ROI volumes (absent for largest)
        d["section_first_index"] = rois.extent.first
        d["section_last_index"] = rois.extent.last
        d["section_slices"] = rois.extent.n_slices
        d["section_gtv_slices"] = len(rois.extent.gtv_slices)
        for name, volume in rois.volumes_mm3().items():
            d[f"{name}_volume_mm3"] = volume
    dose = sitk.GetArrayViewFromImage(rois.dose)
    for name, mask in rois.masks.items():
        if roi_modality(name) == "dose":
            d[f"{name}_slice_dose_mean_Gy"] = float(dose[sitk.GetArrayViewFromImage(mask) != 0].mean())
    d.update(dose_stats)
    d["GTV_dose_grid_coverage"] = coverage
    return OrderedDict((DIAGNOSTIC_PREFIX + k, float(v)) for k, v in d.items())


class StageTimer:
    """Seconds spent in each named stage of a patient's run, in order."""

    def __init__(self):
        self.timings: "OrderedDict[str, float]" = OrderedDict()
        self._t0 = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round(now - self._t0, 4)
        self._t0 = now


def _image_summary(loaded) -> dict:
    img = loaded.image
    return {"size": list(img.GetSize()), "spacing": list(img.GetSpacing()), "origin": list(img.GetOrigin()),
            "direction": list(img.GetDirection()), "frame_of_reference_uid": loaded.frame_of_reference_uid,
            "details": loaded.details}


def _with_report(mask: sitk.Image, original: sitk.Image) -> sitk.Image:
    """``mask`` with the GTV report of ``original`` (reorientation drops metadata)."""
    from .readers import GTV_REPORT_KEY

    if mask is not original and GTV_REPORT_KEY in original.GetMetaDataKeys():
        mask.SetMetaData(GTV_REPORT_KEY, original.GetMetaData(GTV_REPORT_KEY))
    return mask


def measure_patient(patient_id: str, ct, gtv: sitk.Image, dose_on_ct: sitk.Image,
                    options: ExtractionOptions, record: dict | None = None, progress=None,
                    timer: StageTimer | None = None, keep_images: bool = False,
                    section: CrossSection | None = None, dose_statistics: dict | None = None) -> PatientResult:
    """Everything after the dose is on the CT grid: slice, ROIs, dose statistics, features, record.

    ``ct`` is a :class:`readers.LoadedImage`; ``record`` holds what the caller knows already (inputs,
    alignment or picture registration) and is completed here. Shared by every route to the dose.
    A route that knows the slice already passes ``section``; one whose dose exists on that slice only
    (a dose-map picture) passes its own ``dose_statistics`` instead of the 3D GTV's.
    """
    from .environment import library_versions
    from .readers import gtv_report

    pid = patient_id
    say = progress or (lambda _msg: None)
    timer = timer or StageTimer()
    record = dict(record or {})
    stored_ct = ct
    orientation = None
    try:
        if section is None:
            # one patient orientation first, so that the features describe the anatomy, not the storage
            from dataclasses import replace

            from . import orientation as orient

            orientation = orient.describe(ct.image)
            stored_index = lambda axis, k, _img=ct.image: orient.stored_index(_img, axis, k)  # noqa: E731
            ct = replace(ct, image=orient.to_canonical(ct.image))
            gtv = _with_report(orient.to_canonical(gtv), gtv)
            dose_on_ct = orient.to_canonical(dose_on_ct)
            section = largest_cross_section(gtv, axis=options.axis, patient=pid)
            say(f"[{pid}] largest cross-section: slice {section.index} at {section.position_mm:.1f} mm, "
                f"GTV area {section.area_mm2:.1f} mm2")
        extent = None
        if not options.section_spec.is_single_slice:
            from .crosssection import section_extent
            if dose_statistics is not None:
                raise InputError(f"section {options.section} needs a 3D dose: this dose exists on one slice only "
                                 "(a dose-map picture)", patient=pid, hint="use --section largest")
            extent = section_extent(gtv, section, options.section_spec, patient=pid)
            say(f"[{pid}] {options.section} section: slices {extent.first}-{extent.last} "
                f"({extent.n_slices}, GTV on {len(extent.gtv_slices)})")
        rois = make_rois(ct.image, dose_on_ct, gtv, section, isodose_gy=options.isodose_gy,
                         isodose_touching_gtv=options.isodose_touching_gtv, patient=pid, extent=extent)
        dose_stats = dose_statistics if dose_statistics is not None else \
            gtv_dose_statistics(dose_on_ct, gtv, options.isodose_gy)
        timer.lap("slice_and_rois")
        features, stability = extract_and_screen(rois, options, patient=pid, progress=lambda m: say(f"[{pid}] {m}"),
                                                 timer=timer)
    except DoseRadiomicsError as exc:
        raise exc.with_context(patient=pid)

    coverage = (record.get("alignment") or {}).get("gtv_dose_coverage")
    coverage = 1.0 if coverage is None else float(coverage)
    row = diagnostics_row(section, rois, dose_stats, coverage,
                          stored_index(section.axis, section.index) if orientation else section.index)
    row.update(features)
    ex = extractors(options)
    record = {
        "patient_id": pid,
        "doseradiomics_version": __version__,
        "settings_hash": options_settings_hash(options),
        "options": options.to_dict(),
        "parameter_files": {m: str(p) for m, p in options.parameter_paths().items()},
        "parameters": {m: e.parameters for m, e in ex.items()},
        "expected_features_per_roi": {section_roi_name(name, options.section): ex[roi_modality(name)].expected_count
                                      for name in rois.masks},
        **record,
        "ct": _image_summary(stored_ct),
        "orientation": orientation,
        "gtv": gtv_report(gtv),
        "cross_section": section.to_dict(),
        "section": _section_record(section, rois, stored_index if orientation else None),
        "roi_areas_mm2": rois.areas_mm2(),
        "roi_pixels": rois.pixel_counts(),
        "gtv_dose_statistics": dose_stats,
        "timings_s": timer.timings,
        "library_versions": library_versions(),
        "stability": stability,
    }
    return PatientResult(patient_id=pid, features=row, record=jsonable(record), rois=rois,
                         dose_on_ct=dose_on_ct if keep_images else None)


def _section_record(section: CrossSection, rois: SliceROIs, stored_index=None) -> dict:
    """The slices the features come from: indices (patient orientation and, ``stored_index``, the file's),
    positions in patient coordinates, the slab's edge and empty-slice notes."""
    if rois.extent is None:
        d = {"spec": "largest", "axis": section.axis, "first": section.index, "last": section.index,
             "centre": section.index, "n_slices": 1, "positions_mm": [round(float(section.position_mm), 6)],
             "gtv_slices": [section.index], "notes": []}
    else:
        d = rois.extent.to_dict()
    if stored_index is not None:
        d["stored_indices"] = [int(stored_index(section.axis, k)) for k in range(d["first"], d["last"] + 1)]
    return d


@dataclass
class LoadedPatient:
    """A patient's images read and the dose on the CT grid: what :func:`measure_patient` needs."""

    ct: object
    dose: object
    gtv: sitk.Image
    dose_on_ct: sitk.Image
    record: dict


def load_patient(inputs: PatientInputs, options: ExtractionOptions | None = None, progress=None,
                 timer: StageTimer | None = None) -> LoadedPatient:
    """Find (``patient_dir``) and read the patient's files, check the plan's consistency and put the
    dose on the CT grid; the record says which files were used and why."""
    from . import discovery
    from .alignment import align_dose_to_ct
    from .readers import read_ct, read_gtv

    options = options or ExtractionOptions()
    pid = inputs.patient_id
    say = progress or (lambda _msg: None)
    timer = timer or StageTimer()
    found = None
    try:
        if inputs.patient_dir:
            say(f"[{pid}] scanning {inputs.patient_dir}")
            found = discovery.discover_patient(inputs.patient_dir, patient=pid, rtstruct=inputs.gtv,
                                               rtdose=inputs.dose, ct_series=inputs.ct)
            ct_path, dose_paths, gtv_path = found.ct, found.doses, found.rtstruct
            timer.lap("discover")
        else:
            ct_path, dose_paths, gtv_path = inputs.ct, [inputs.dose], inputs.gtv
        say(f"[{pid}] reading CT {ct_path}")
        # A discovered series is read from exactly its files (an export may split it over folders).
        ct = read_ct(ct_path, patient=pid, files=found.ct_files if found is not None else None)
        say(f"[{pid}] reading dose {', '.join(map(str, dose_paths))}")
        dose = discovery.read_doses(dose_paths, unit=inputs.dose_unit, patient=pid)
        if found is None:
            discovery.check_summation(dose.details, pid, dose.path)
        say(f"[{pid}] reading GTV {gtv_path}" + (f" ({inputs.gtv_name})" if inputs.gtv_name else ""))
        gtv = read_gtv(gtv_path, ct.image, name=inputs.gtv_name, label=inputs.gtv_label, patient=pid)
        warnings = found.warnings if found else discovery.plan_consistency(
            discovery.headers_of(ct, dose, gtv_path), patient=pid, path=None, check_frames=False)
        timer.lap("read")
        say(f"[{pid}] aligning dose to CT")
        dose_on_ct, alignment = align_dose_to_ct(ct, dose, gtv=gtv, transform=options.transform,
                                                 register=options.register, patient=pid)
        from .limits import check_gtv_dose_not_negative
        check_gtv_dose_not_negative(float(sitk.GetArrayViewFromImage(dose_on_ct)[
            sitk.GetArrayViewFromImage(gtv) != 0].min()), pid, inputs.dose)
        timer.lap("align")
    except DoseRadiomicsError as exc:
        raise exc.with_context(patient=pid)
    for w in warnings:
        alignment.setdefault("warnings", []).append(w)
    record = {"inputs": asdict(inputs), "dose": _image_summary(dose), "alignment": alignment}
    if found is not None:
        record["discovery"] = found.record
    return LoadedPatient(ct, dose, gtv, dose_on_ct, record)


def extract_patient(inputs: PatientInputs, options: ExtractionOptions | None = None,
                    progress=None, keep_images: bool = False) -> PatientResult:
    """Read the patient's files, align the dose, choose the slice, build the ROIs and extract.

    ``progress`` is called with one line per stage. Errors are DoseRadiomicsError subclasses that
    name the patient and the file.
    """
    options = options or ExtractionOptions()
    timer = StageTimer()
    loaded = load_patient(inputs, options, progress, timer)
    return measure_patient(inputs.patient_id, loaded.ct, loaded.gtv, loaded.dose_on_ct, options,
                           record=loaded.record, progress=progress, timer=timer, keep_images=keep_images)


def write_features_csv(path: Path, rows: list) -> None:
    """Write feature rows (dicts with identical keys) as CSV, full float precision."""
    atomic_write_text(path, features_csv_text(rows))


def features_csv_text(rows: list) -> str:
    """Feature rows (dicts with identical keys) as CSV text, full float precision."""
    if not rows:
        raise ValueError("no rows to write")
    columns = list(rows[0].keys())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    head = io.StringIO()
    head_writer = csv.writer(head, lineterminator="")
    for r in rows:
        values = [r[c] for c in columns]
        # repr keeps every digit of a float, so values read back bit for bit
        k = 0
        while k < len(values) and type(values[k]) is not float:
            k += 1
        if k < len(values) and set(map(type, values[k:])) == {float}:
            # the usual row: a few text cells, then only floats, which never need quoting: joined
            # in one call (a cohort's table has millions of cells), the same text as the writer's
            head.seek(0)
            head.truncate()
            head_writer.writerow([_csv_cell(v) for v in values[:k]])
            buf.write(head.getvalue() + ("," if k else "") + ",".join(map(repr, values[k:])) + "\n")
        else:
            writer.writerow([_csv_cell(v) for v in values])
    return buf.getvalue()


def _csv_cell(v):
    return repr(v) if isinstance(v, float) else csv_safe_cell(v) if isinstance(v, str) else v


def write_patient_outputs(result: PatientResult, out_dir, png: bool = True) -> dict:
    """Write ``features.csv``, ``slice.png`` (with ``png``) and ``extraction.json`` into ``out_dir``.

    With the stability screen, ``feature_stability.json`` too (:func:`stability.sidecar_text`).
    One group (:func:`fileio.atomic_write_files`): all new or all as before. The record is renamed
    last and holds the sha256 of the others, so a set that does not belong together shows; without
    ``png`` a previous ``slice.png`` is removed with the group (it would show another run).
    """
    out = Path(out_dir)
    row = OrderedDict([("patient_id", result.patient_id), ("settings_hash", result.record["settings_hash"])])
    row.update(result.features)
    paths = {"features": out / "features.csv"}
    data = {paths["features"]: features_csv_text([row]).encode("utf-8")}
    from .stability import SIDECAR, sidecar_text
    data[out / SIDECAR] = None   # without the screen a previous sidecar goes (it would describe another run)
    if result.record.get("stability"):
        paths["stability"] = out / SIDECAR
        data[paths["stability"]] = sidecar_text(feature_columns(row),
                                                [(result.patient_id, result.record["stability"])]).encode("utf-8")
    picture = None
    if png and result.rois is not None:
        from .render import slice_png_bytes
        paths["png"] = out / "slice.png"
        picture = slice_png_bytes(result.rois, title=f"patient {result.patient_id}")
    data[out / "slice.png"] = picture
    outputs = {p.name: (hashlib.sha256(b).hexdigest() if b is not None else None) for p, b in data.items()}
    paths["record"] = out / "extraction.json"
    data[paths["record"]] = json.dumps({**result.record, "outputs_sha256": outputs}, indent=2)
    atomic_write_files(data)
    return paths


# ----------------------------------------------------------------------------- command line

def add_extraction_options(parser: argparse.ArgumentParser) -> None:
    """The options that decide the features; shared by ``extract`` and ``cohort-extract``."""
    g = parser.add_argument_group("ROIs and features")
    g.add_argument("--isodose", type=float, nargs="+", default=[50.0], metavar="GY",
                   help="isodose threshold(s) in Gy for the '<N>Gy-heat' ROIs (default: 50, as in the "
                        "paper); several at once, e.g. --isodose 50 60")
    g.add_argument("--isodose-touching-gtv", action="store_true",
                   help="keep only the parts of each isodose region that touch the GTV on the slice")
    g.add_argument("--axis", default="axial", choices=["axial", "coronal", "sagittal"],
                   help="orientation of the cross-section: slices normal to the CT's k (axial), j or i "
                        "image axis (default: axial)")
    g.add_argument("--config", default="paper", choices=["paper", "2d"],
                   help="'paper': the slice as a one-slice 3D image with 3D filters, 1,595 features per "
                        "ROI, the paper's names; '2d': true 2D (force2D, shape2D, 2D wavelet, LBP2D)")
    g.add_argument("--section", default="largest", metavar="largest|largest:K|volume",
                   help="where the features are computed: 'largest' (the paper: the largest cross-section, one "
                        "slice); 'largest:K' (the K slices either side of it as one thin 3D image, e.g. "
                        "largest:2, cut at the image's end; feature ROI names get '_25D<K>'); 'volume' (the "
                        "whole GTV and isodose regions in 3D; names get '_3D'). Each has its own settings hash")
    g.add_argument("--ct-params", metavar="YAML", help="pyradiomics parameter file for the CT ROI "
                   "(overrides --config; bin width in HU)")
    g.add_argument("--dose-params", metavar="YAML", help="pyradiomics parameter file for the dose ROIs "
                   "(overrides --config; bin width in Gy)")
    g.add_argument("--no-stability-screen", action="store_true",
                   help="skip the numerical-stability screen (each feature recomputed on the image perturbed by "
                        "1e-6 and stored in the other float type; unstable features are listed in "
                        "feature_stability.json and left out by train)")
    a = parser.add_argument_group("aligning the dose to the CT")
    a.add_argument("--transform", metavar="TFM", help="ITK rigid transform file (.tfm/.h5) from the CT "
                   "to the dose frame, when they do not share a frame of reference")
    a.add_argument("--register", action="store_true", help="when the frames differ and no transform is "
                   "given, register the dose to the CT rigidly (mutual information) and report the metric")


def options_from_args(args) -> ExtractionOptions:
    return ExtractionOptions(isodose_gy=tuple(args.isodose), isodose_touching_gtv=args.isodose_touching_gtv,
                             axis=AXES[str(args.axis)], config=args.config, ct_params=args.ct_params,
                             dose_params=args.dose_params, transform=args.transform, register=args.register,
                             stability_screen=not getattr(args, "no_stability_screen", False),
                             section=getattr(args, "section", "largest"))


def register_cli(sub) -> None:
    p = sub.add_parser(
        "extract",
        help="features of one patient: GTV on CT, GTV-heat and isodose ROIs on the dose",
        description="Reads the planning CT, the RT dose and the GTV; puts the dose on the CT grid; finds "
                    "the slice where the GTV's area is largest; builds three ROIs on it (GTV on the CT, "
                    "GTV-heat = the GTV on the dose map, <N>Gy-heat = dose >= N Gy); extracts pyradiomics "
                    "features from each. Writes OUT/features.csv (one row), OUT/extraction.json (settings, "
                    "versions, slice choice, alignment) and OUT/slice.png (what was measured).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    i = p.add_argument_group("inputs")
    i.add_argument("--patient-dir", metavar="DIR", help="a planning-system export folder (searched recursively, "
                   "headers only): the CT series, RTSTRUCT and RTDOSE are chosen by rules and every choice is "
                   "recorded in extraction.json; --ct/--dose/--gtv then only pick where it finds several")
    i.add_argument("--ct", help="planning CT: DICOM series folder (scouts and RT files in it are skipped) "
                   "or one slice, NRRD, NIfTI or MHA")
    i.add_argument("--dose", help="RT dose: DICOM RTDOSE (DoseSummationType PLAN), or NRRD/NIfTI/MHA with --dose-unit")
    i.add_argument("--dose-unit", choices=["Gy", "cGy"], help="unit of a non-DICOM dose file")
    i.add_argument("--gtv", help="GTV: DICOM RTSTRUCT (with --gtv-name), a labelmap file "
                   "(with --gtv-label) or a Slicer .seg.nrrd (with --gtv-name)")
    i.add_argument("--gtv-name", help="ROI name in the RTSTRUCT or segment name in a .seg.nrrd; case and spaces "
                   "do not matter; several rules separated by '|' are tried in order, each a name, "
                   "glob:PATTERN or re:PATTERN (e.g. 'GTV|GTVp|glob:GTV_*')")
    i.add_argument("--gtv-label", type=int, help="label value of the GTV in a labelmap (default: any non-zero)")
    i.add_argument("--patient-id", help="identifier written in the outputs (default: the output folder name)")
    add_extraction_options(p)
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, help="output folder")
    o.add_argument("--no-png", action="store_true", help="skip slice.png (a previous one in OUT is removed: "
                   "it would show another run)")
    o.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run_extract)


def run_extract(args) -> int:
    started = time.perf_counter()
    check_output_folder(args.out)   # before the work, not after it
    pid = args.patient_id or Path(args.out).resolve().name
    if not args.patient_dir and not (args.ct and args.dose and args.gtv):
        missing = [o for o, v in (("--ct", args.ct), ("--dose", args.dose), ("--gtv", args.gtv)) if not v]
        raise InputError(f"{', '.join(missing)} not given", patient=pid,
                         hint="give --ct, --dose and --gtv, or the export folder with --patient-dir")
    inputs = PatientInputs(patient_id=pid, ct=args.ct, dose=args.dose, gtv=args.gtv, gtv_name=args.gtv_name,
                           gtv_label=args.gtv_label, dose_unit=args.dose_unit, patient_dir=args.patient_dir)
    say = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    result = extract_patient(inputs, options_from_args(args), progress=say)
    paths = write_patient_outputs(result, args.out, png=not args.no_png)
    n = sum(1 for c in result.features if not c.startswith(DIAGNOSTIC_PREFIX))
    say(f"[{pid}] {n} features from {len(result.rois.masks)} ROIs in {time.perf_counter() - started:.1f} s")
    for w in result.record.get("alignment", {}).get("warnings", []):
        print(f"[{pid}] warning: {w}", file=sys.stderr)
    for kind, path in paths.items():
        print(path)
    return 0
