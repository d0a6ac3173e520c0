"""Perturbation robustness of the features: ``doseradiomics robustness``.

For a sample of a cohort already through ``cohort-extract``, each patient is extracted again under
perturbations that mimic real variation, and every feature's intraclass correlation across the
unperturbed and the perturbed values (patients = targets, conditions = raters) says how much of its
between-patient spread survives that variation (:mod:`stats.icc`).

The perturbations (``--perturbations``; ``NAME`` or ``NAME:PARAMETERS``):

- ``erode`` / ``dilate``: the GTV contour one pixel in / out on the slice (4-connected cross);
- ``shift:DX,DY``: the GTV mask moved by DX, DY pixels (sub-pixel), resampled linearly and kept
  where >= 0.5 (a contour drawn a fraction of a pixel elsewhere, re-rasterised);
- ``rotate:DEG``: the CT slice, dose slice and GTV mask rotated in-plane by DEG degrees about the
  GTV's centroid (linear interpolation, mm-true with anisotropic pixels; the mask kept where >= 0.5);
- ``noise:SD``: Gaussian noise of SD HU added to the CT slice (seeded per patient and perturbation),
  rounded to whole HU as a scanner stores them;
- ``dose-scale:F``: the dose multiplied by F (1.01 = +1 %);
- ``dose-grid-shift:FRAC``: the RT dose resampled (linearly) onto its own grid moved by FRAC of a dose
  voxel along each axis, as another planning system would have placed it, then onto the CT as the
  extraction does.

**Sections** (``cohort-extract --section``): on a ``largest:K`` slab or the ``volume`` the same
perturbations act on every slice of it, in the slices' own plane (the plane of the cross-section for a
slab, the image's k-planes for the volume): erosion and dilation with the in-plane cross only (a
contour redrawn on each slice, not a 3D erosion, which would take whole end slices off a thin slab), the
shift and the rotation the same for every slice (the rotation about the axis through the GTV's 3D
centroid normal to the slices), the noise on every voxel; the dose perturbations on the RT dose as
before, then cut as the extraction cuts it.

The isodose ROIs (``<N>Gy-heat``) are rebuilt from the perturbed dose (and, with
``--isodose-touching-gtv``, the perturbed GTV); the GTV and GTV-heat ROIs follow the perturbed GTV.

**The cross-section is not re-chosen**: every perturbation is applied to the slice (or slab) the unperturbed
extraction chose (its index is checked against the stored record), so an ICC measures the feature's
sensitivity to the perturbation, not a jump to another slice (an eroded GTV can have its largest area
elsewhere). The unperturbed values are the stored ones of ``--features-dir``; an ROI that a
perturbation leaves bit-identical (the CT under a dose perturbation, the dose under CT noise) keeps
them without being extracted again.

Outputs in ``OUT``: ``robustness.csv`` (one row per feature column: ``column``, ``roi``, ``feature``,
``icc`` with ``ci_low``/``ci_high`` = ICC(3,1), two-way mixed, consistency, single rater, 95 % CI
(McGraw & Wong); the same for ICC(2,1) absolute agreement in ``icc_a1*``; ``n_patients``,
``n_perturbations``, ``settings_hash``), ``robustness.json`` (the sample and how it was drawn, seeds,
perturbations, settings hash, engine, counts, timings), ``failures.csv``, and ``patients/<id>.json``
per patient as it finishes. Resumable and parallel like ``cohort-extract``, on the same engines
(process pool, Dask): one task = one patient x all perturbations; a rerun skips patients whose job
(settings, installation, input files, perturbations, seed) is unchanged.

``train --min-icc 0.75 --robustness OUT/robustness.csv`` keeps only the features whose ICC(3,1) is at
least 0.75 before the univariate filter (:func:`icc_screen`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from . import __version__
from .errors import DataError, DoseRadiomicsError, InputError

PATIENT_SCHEMA = "doseradiomics-robustness-patient/1"
ICC_FORM = "3,1"
CSV_COLUMNS = ["column", "roi", "feature", "icc", "ci_low", "ci_high", "icc_form", "icc_a1", "icc_a1_ci_low",
               "icc_a1_ci_high", "n_patients", "n_perturbations", "settings_hash"]

# kind -> (number of parameters, default parameters, what it does)
KINDS = OrderedDict([
    ("erode", (0, (), "GTV contour eroded by one pixel in-plane")),
    ("dilate", (0, (), "GTV contour dilated by one pixel in-plane")),
    ("shift", (2, (0.4, 0.3), "GTV mask shifted by (dx, dy) pixels, linear resampling, kept where >= 0.5")),
    ("rotate", (1, (3.0,), "CT, dose and GTV rotated in-plane by this many degrees about the GTV centroid")),
    ("noise", (1, (10.0,), "Gaussian CT noise of this SD (HU), seeded, rounded to whole HU")),
    ("dose-scale", (1, (1.01,), "dose multiplied by this factor")),
    ("dose-grid-shift", (1, (0.5,), "dose resampled on its grid shifted by this fraction of a voxel per axis")),
])
DEFAULT_PERTURBATIONS = ("erode", "dilate", "shift:0.4,0.3", "shift:-0.3,-0.4", "rotate:3", "rotate:-3",
                         "noise:10", "dose-scale:1.01", "dose-scale:0.99", "dose-grid-shift:0.5")


@dataclass(frozen=True)
class Perturbation:
    kind: str
    params: tuple = ()

    @property
    def name(self) -> str:
        return self.kind + (":" + ",".join(f"{p:g}" for p in self.params) if self.params else "")

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "parameters": list(self.params),
                "what": KINDS[self.kind][2]}


def parse_perturbation(text: str) -> Perturbation:
    """``"rotate:3"`` -> Perturbation('rotate', (3.0,)); the kind alone takes its default parameters."""
    kind, _, rest = str(text).strip().partition(":")
    kind = kind.strip().lower()
    hint = "perturbations: " + ", ".join(f"{k}" + (":" + ",".join(["X"] * n) if n else "")
                                         for k, (n, _d, _w) in KINDS.items())
    if kind not in KINDS:
        raise InputError(f"unknown perturbation {text!r}", hint=hint)
    n, default, _ = KINDS[kind]
    if not rest.strip():
        params = default
    else:
        try:
            params = tuple(float(x) for x in rest.split(","))
        except ValueError:
            raise InputError(f"perturbation {text!r}: parameters must be numbers", hint=hint) from None
    if len(params) != n or not all(math.isfinite(p) for p in params):
        raise InputError(f"perturbation {text!r} takes {n} finite number(s)", hint=hint)
    if kind == "noise" and params[0] <= 0 or kind == "dose-scale" and params[0] <= 0:
        raise InputError(f"perturbation {text!r}: the parameter must be positive", hint=hint)
    if kind == "shift" and max(abs(p) for p in params) >= 1 or kind == "dose-grid-shift" and abs(params[0]) >= 1:
        raise InputError(f"perturbation {text!r}: a sub-voxel shift is below 1 (in voxels)", hint=hint)
    return Perturbation(kind, params)


def parse_perturbations(texts) -> list:
    out = [parse_perturbation(t) for t in texts]
    names = [p.name for p in out]
    if not out:
        raise InputError("no perturbation given", hint="e.g. --perturbations " + " ".join(DEFAULT_PERTURBATIONS))
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"perturbation(s) given twice: {', '.join(dup)}", hint="give each once")
    return out


def _rng(seed: int, patient_id: str, name: str) -> np.random.Generator:
    """A generator fixed by (seed, patient, perturbation): the same noise on any worker and in any order."""
    key = hashlib.sha256(f"{patient_id}\0{name}".encode()).digest()
    return np.random.default_rng([int(seed), int.from_bytes(key[:8], "little")])


# ----------------------------------------------------------------------------- slice operations

CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)

# Every slice operation below takes a 2D array (rows, columns) or a stack of slices (slices, rows,
# columns) and acts on each slice in its own plane, the same way for every slice.


def _in_plane(structure: np.ndarray, ndim: int) -> np.ndarray:
    return structure if ndim == 2 else structure[None]


def erode_mask(mask: np.ndarray) -> np.ndarray:
    """One pixel off the contour of a mask, on each slice (4-connected in-plane cross)."""
    from scipy import ndimage
    return ndimage.binary_erosion(mask, structure=_in_plane(CROSS, mask.ndim))


def dilate_mask(mask: np.ndarray) -> np.ndarray:
    """One pixel onto the contour of a mask, on each slice (4-connected in-plane cross)."""
    from scipy import ndimage
    return ndimage.binary_dilation(mask, structure=_in_plane(CROSS, mask.ndim))


def shift_mask(mask: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """A mask moved by ``dx`` columns and ``dy`` rows (pixels) on each slice, linear resampling, kept
    where >= 0.5."""
    from scipy import ndimage
    shift = (dy, dx) if mask.ndim == 2 else (0.0, dy, dx)
    moved = ndimage.shift(mask.astype(float), shift, order=1, mode="constant", cval=0.0)
    return moved >= 0.5 - 1e-9


def rotate_array(arr: np.ndarray, degrees: float, centre_rc, spacing_rc, cval: float = 0.0) -> np.ndarray:
    """``arr`` (rows, columns) rotated by ``degrees`` about ``centre_rc`` (row, column index), in mm;
    a stack (slices, rows, columns) slice by slice about the same centre.

    Output pixel o takes the input at c + R(-theta)(S o - c) (S: pixel spacing, c the centre in mm),
    interpolated linearly; the content turns by +theta from the row axis towards the column axis.
    """
    from scipy import ndimage
    if np.ndim(arr) == 3:
        return np.stack([rotate_array(a, degrees, centre_rc, spacing_rc, cval) for a in arr])
    t = math.radians(degrees)
    rot_t = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])   # R(theta) transposed
    s = np.asarray(spacing_rc, float)
    c = s * np.asarray(centre_rc, float)
    matrix = (rot_t * s[None, :]) / s[:, None]        # S^-1 R^T S
    offset = (c - rot_t @ c) / s
    return ndimage.affine_transform(np.asarray(arr, float), matrix, offset=offset, order=1, mode="constant",
                                    cval=cval)


def _voxels(img: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(img)          # [slices, rows, columns]; one slice for --section largest


def _like(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    """An image of ``array`` ([slices, rows, columns]) with the geometry (and no metadata) of ``like``."""
    out = sitk.GetImageFromArray(np.ascontiguousarray(array))
    out.CopyInformation(like)
    return out


# ----------------------------------------------------------------------------- one patient

@dataclass
class PatientSlice:
    """What the perturbations start from: the unperturbed ROIs and the images behind them."""

    patient_id: str
    loaded: object            # pipeline.LoadedPatient (stored orientation)
    section: object           # crosssection.CrossSection, in the canonical orientation
    rois: object              # rois.SliceROIs of the unperturbed extraction
    extent: object = None     # crosssection.SectionExtent of a largest:K or volume section, else None


def prepare_patient(inputs, options, expected_section: int | None = None) -> PatientSlice:
    """Read and align the patient as the extraction does and rebuild its unperturbed ROIs."""
    from . import orientation as orient
    from .crosssection import largest_cross_section, section_extent
    from .pipeline import load_patient
    from .rois import make_rois

    pid = inputs.patient_id
    loaded = load_patient(inputs, options)
    try:   # the canonical orientation, as pipeline.measure_patient puts it before choosing the slice
        ct, gtv, dose_on_ct = (orient.to_canonical(i) for i in (loaded.ct.image, loaded.gtv, loaded.dose_on_ct))
        section = largest_cross_section(gtv, axis=options.axis, patient=pid)
        if expected_section is not None and section.index != expected_section:
            raise DataError(f"the largest cross-section is now slice {section.index}, the stored extraction "
                            f"used slice {expected_section}", patient=pid,
                            hint="rerun cohort-extract on this patient, then robustness")
        spec = options.section_spec
        extent = None if spec.is_single_slice else section_extent(gtv, section, spec, patient=pid)
        rois = make_rois(ct, dose_on_ct, gtv, section, isodose_gy=options.isodose_gy,
                         isodose_touching_gtv=options.isodose_touching_gtv, patient=pid, extent=extent)
    except DoseRadiomicsError as exc:
        raise exc.with_context(patient=pid)
    return PatientSlice(pid, loaded, section, rois, extent)


def _shifted_dose_slice(ps: PatientSlice, fraction: float, options) -> np.ndarray:
    """The dose on the chosen CT slice (or section) after resampling the RT dose onto its own grid moved
    by ``fraction`` of a voxel along each of its axes (zero where the moved grid leaves the old one)."""
    from . import orientation as orient
    from .alignment import align_dose_to_ct
    from .crosssection import extract_extent, extract_slice

    dose = ps.loaded.dose
    img = dose.image
    direction = np.asarray(img.GetDirection(), float).reshape(3, 3)
    origin = np.asarray(img.GetOrigin(), float) + direction @ (fraction * np.asarray(img.GetSpacing(), float))
    moved = sitk.Resample(img, img.GetSize(), sitk.Transform(), sitk.sitkLinear, tuple(origin.tolist()),
                          img.GetSpacing(), img.GetDirection(), 0.0, sitk.sitkFloat64)
    dose_on_ct, _ = align_dose_to_ct(ps.loaded.ct, replace(dose, image=moved), gtv=ps.loaded.gtv,
                                     transform=options.transform, register=options.register,
                                     patient=ps.patient_id)
    dose_on_ct = orient.to_canonical(dose_on_ct)
    cut = extract_slice(dose_on_ct, ps.section) if ps.extent is None else \
        extract_extent(dose_on_ct, ps.extent, ps.patient_id)
    return _voxels(sitk.Cast(cut, sitk.sitkFloat32))


def perturbed_rois(ps: PatientSlice, perturbation: Perturbation, options, seed: int = 0):
    """The ROIs of ``ps``'s slice under ``perturbation`` (a :class:`rois.SliceROIs`)."""
    from .crosssection import CrossSection, section_extent
    from .rois import GTV, make_rois

    base = ps.rois
    ct = _voxels(base.ct)
    dose = _voxels(base.dose)
    gtv = _voxels(base.masks[GTV]) != 0
    kind, prm = perturbation.kind, perturbation.params
    if kind == "erode":
        gtv = erode_mask(gtv)
    elif kind == "dilate":
        gtv = dilate_mask(gtv)
    elif kind == "shift":
        gtv = shift_mask(gtv, prm[0], prm[1])
    elif kind == "rotate":
        sx, sy = base.ct.GetSpacing()[:2]
        centre = np.argwhere(gtv).mean(axis=0)[-2:]   # (row, column): the axis is normal to the slices
        ct = rotate_array(ct, prm[0], centre, (sy, sx), cval=float(ct.min())).astype(np.float32)
        dose = rotate_array(dose, prm[0], centre, (sy, sx), cval=0.0).astype(np.float32)
        gtv = rotate_array(gtv, prm[0], centre, (sy, sx)) >= 0.5 - 1e-9
    elif kind == "noise":
        noisy = np.rint(ct + _rng(seed, ps.patient_id, perturbation.name).normal(0.0, prm[0], ct.shape))
        if np.issubdtype(ct.dtype, np.integer):
            info = np.iinfo(ct.dtype)
            noisy = np.clip(noisy, info.min, info.max)
        ct = noisy.astype(ct.dtype)
    elif kind == "dose-scale":
        dose = (dose.astype(np.float64) * prm[0]).astype(np.float32)
    elif kind == "dose-grid-shift":
        dose = _shifted_dose_slice(ps, prm[0], options)
    images = _like(ct, base.ct), _like(dose, base.dose), _like(gtv.astype(np.uint8), base.ct)
    if ps.extent is None:
        at = CrossSection(axis=2, index=0, position_mm=ps.section.position_mm, area_mm2=ps.section.area_mm2)
        whole = None
        # make_rois' messages count slices in the one-slice image: name the patient's slice
        renamed = ("slice 0", f"slice {ps.section.index}")
    else:   # the cut images are the whole section: an extent over all of them, of the same kind
        at = ps.section if ps.extent.spec == "volume" else \
            CrossSection(axis=2, index=ps.extent.centre - ps.extent.first, position_mm=ps.section.position_mm,
                         area_mm2=ps.section.area_mm2)
        whole = section_extent(images[2], at, ps.extent.spec, patient=ps.patient_id)
        renamed = (f"slices {whole.first}-{whole.last}", f"slices {ps.extent.first}-{ps.extent.last}")
    try:   # the ROIs rebuilt by the extraction's own rules, on the images already cut
        rois = make_rois(*images, at, isodose_gy=options.isodose_gy, isodose_touching_gtv=options.isodose_touching_gtv,
                         patient=ps.patient_id, extent=whole)
    except DoseRadiomicsError as exc:
        raise _under(exc, perturbation, ps, exc.problem.replace(*renamed))
    rois.section = ps.section
    if ps.extent is not None:
        rois.extent = ps.extent
    return rois


def _under(exc: DoseRadiomicsError, perturbation: Perturbation, ps: PatientSlice, problem: str | None = None):
    """``exc`` saying which perturbation it happened under."""
    exc.problem = f"under perturbation {perturbation.name}: {exc.problem if problem is None else problem}"
    return exc.with_context(patient=ps.patient_id)


def _changed_rois(base, rois) -> list:
    """The ROIs whose image or mask differs from the unperturbed ones (the others need no extraction)."""
    changed = []
    for name, mask in rois.masks.items():
        if not (np.array_equal(_voxels(mask), _voxels(base.masks[name]))
                and np.array_equal(_voxels(rois.image_for(name)), _voxels(base.image_for(name)))):
            changed.append(name)
    return changed


def perturbed_features(ps: PatientSlice, perturbations, options, reference: dict, seed: int = 0,
                       roi_pixels: dict | None = None) -> dict:
    """perturbation name -> {feature column: value} for every column of ``reference`` (the unperturbed
    features); ROIs a perturbation leaves identical keep their reference values. ``roi_pixels``, if
    given, receives each perturbation's ROI pixel counts and the ROIs it changed."""
    from .pipeline import ROI_SEPARATOR, extract_rois
    from .rois import SliceROIs

    out = {}
    for pert in perturbations:
        rois = perturbed_rois(ps, pert, options, seed)
        changed = _changed_rois(ps.rois, rois)
        if roi_pixels is not None:
            roi_pixels[pert.name] = {"pixels": rois.pixel_counts(), "changed": changed}
        values = dict(reference)
        if changed:
            sub = SliceROIs(section=rois.section, ct=rois.ct, dose=rois.dose,
                            masks=OrderedDict((n, rois.masks[n]) for n in changed), isodose_gy=rois.isodose_gy,
                            extent=rois.extent)
            try:
                new = extract_rois(sub, options, patient=ps.patient_id)
            except DoseRadiomicsError as exc:
                raise _under(exc, pert, ps)
            named = {n + options.section_spec.roi_suffix for n in changed}   # GTV -> GTV_25D2 of a section
            for col in values:
                if col.split(ROI_SEPARATOR, 1)[0] in named:
                    values[col] = new.get(col, float("nan"))
        out[pert.name] = values
    return out


# ----------------------------------------------------------------------------- the task

@dataclass
class RobustnessJob:
    """One task: one patient x all perturbations (picklable, for the pool and Dask)."""

    patient_id: str
    inputs: object            # pipeline.PatientInputs
    perturbations: tuple      # names
    seed: int
    features_dir: str
    job_fingerprint: str


def patient_json_path(out_dir, patient_id: str) -> Path:
    return Path(out_dir) / "patients" / f"{patient_id}.json"


def _reference(features_dir, patient_id: str) -> tuple:
    """(stored cohort-extract document, its feature columns -> values) of a patient."""
    from .cohort import _read_patient_json, patient_features
    from .cohort import patient_json_path as cohort_json
    from .pipeline import feature_columns

    doc = _read_patient_json(cohort_json(features_dir, patient_id))
    row = patient_features(doc, features_dir) if doc else None
    if row is None:
        raise DataError("no stored features for this patient in the features folder", patient=patient_id,
                        path=features_dir, hint="run cohort-extract on it first")
    return doc, OrderedDict((c, row[c]) for c in feature_columns(row))


def _robust_one(job: RobustnessJob, options, settings_hash: str, out_dir: str) -> dict:
    """Run one patient's perturbations and write its JSON (in the worker, as cohort-extract does)."""
    from .cohort import _failure, _store_columns
    from .fileio import atomic_write_text, jsonable

    t0 = time.perf_counter()
    pid = job.patient_id
    try:
        doc, reference = _reference(job.features_dir, pid)
        section = (doc.get("record") or {}).get("cross_section", {}).get("index")
        ps = prepare_patient(job.inputs, options, expected_section=section)
        perts = [parse_perturbation(n) for n in job.perturbations]
        pixels = {"unperturbed": {"pixels": ps.rois.pixel_counts(), "changed": []}}
        values = perturbed_features(ps, perts, options, reference, job.seed, roi_pixels=pixels)
        columns = list(reference)
        out = {"schema": PATIENT_SCHEMA, "patient_id": pid, "job_fingerprint": job.job_fingerprint,
               "settings_hash": settings_hash, "section": ps.section.to_dict(),
               "extent": None if ps.extent is None else ps.extent.to_dict(), "rois": pixels,
               "columns": _store_columns(out_dir, columns), "seconds": round(time.perf_counter() - t0, 3),
               "values": {name: [v[c] for c in columns] for name, v in values.items()}}
        atomic_write_text(patient_json_path(out_dir, pid), json.dumps(jsonable(out), separators=(",", ":")))
        return {"patient_id": pid, "status": "done", "seconds": time.perf_counter() - t0}
    except Exception as exc:  # noqa: BLE001 - the patient's failure, recorded; the run goes on
        return {"patient_id": pid, "status": "failed", "failure": _failure(pid, exc),
                "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- the run

@dataclass
class RobustnessResult:
    table: pd.DataFrame        # robustness.csv's rows
    record: dict               # robustness.json
    n_done: int
    n_skipped: int
    n_failed: int
    out_dir: Path


def _job_fingerprint(settings_hash: str, compatibility: str, reference_fingerprint: str, perturbations,
                     seed: int, patient_id: str) -> str:
    payload = {"settings_hash": settings_hash, "compatibility": compatibility, "inputs": reference_fingerprint,
               "perturbations": list(perturbations), "seed": int(seed), "patient_id": patient_id,
               "schema": PATIENT_SCHEMA}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _cohort_settings(features_dir: Path):
    """(ExtractionOptions, settings hash) of a cohort-extract output folder, checked to still hold."""
    from .pipeline import ExtractionOptions, options_settings_hash

    path = features_dir / "cohort.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        options = ExtractionOptions(**summary["options"])
        stored = summary["settings_hash"]
    except FileNotFoundError:
        raise InputError("the features folder has no cohort.json", path=features_dir,
                         hint="give the --out folder of a finished cohort-extract") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cohort.json cannot be read ({exc})", path=path,
                         hint="rerun cohort-extract into this folder") from None
    now = options_settings_hash(options)
    if now != stored:
        raise InputError(f"the cohort's parameter files changed since its extraction (settings hash {now}, "
                         f"recorded {stored})", path=path, hint="rerun cohort-extract, then robustness")
    return options, stored


def choose_sample(available: list, sample: int | None = None, patients=None, seed: int = 0) -> tuple:
    """(patient ids in manifest order, how they were chosen): ``patients`` as given, or ``sample`` of
    ``available`` drawn without replacement by a generator seeded with ``seed``."""
    if patients:
        unknown = [p for p in patients if p not in available]
        if unknown:
            raise InputError(f"patient(s) {', '.join(unknown[:10])} have no valid stored features in the "
                             "features folder", hint="choose among the cohort's extracted patients, or rerun "
                                                     "cohort-extract")
        chosen = set(patients)
        return [p for p in available if p in chosen], {"rule": "given by --patients"}
    n = int(sample or 0)
    if n < 2 or n > len(available):
        raise InputError(f"--sample {n}: between 2 and the {len(available)} extracted patient(s)",
                         hint="an ICC needs at least 2 patients")
    picked = set(np.random.default_rng(int(seed)).choice(len(available), size=n, replace=False).tolist())
    return [p for i, p in enumerate(available) if i in picked], \
        {"rule": f"{n} of {len(available)} extracted patients drawn without replacement, numpy "
                 f"default_rng({int(seed)}).choice over the manifest order", "seed": int(seed)}


def icc_table(references: dict, perturbed: dict, perturbations, settings_hash: str,
              by_perturbation: dict | None = None) -> pd.DataFrame:
    """robustness.csv's rows: per feature column, the ICC across the unperturbed and perturbed values
    of the patients in ``references`` (patient -> {column: value}; ``perturbed``: patient ->
    perturbation -> {column: value}). ``by_perturbation``, if given, receives per perturbation the
    counts of features whose ICC(3,1) between the unperturbed values and that perturbation alone is at
    least / below 0.75."""
    from .pipeline import ROI_SEPARATOR
    from .stats.icc import icc

    pids = list(references)
    columns = [c for c in references[pids[0]] if all(c in references[p] for p in pids)]
    names = list(perturbations)
    Y = np.empty((len(pids), 1 + len(names), len(columns)))
    for i, p in enumerate(pids):
        Y[i, 0] = [references[p][c] for c in columns]
        for j, n in enumerate(names, start=1):
            Y[i, j] = [perturbed[p][n].get(c, np.nan) for c in columns]
    c31, a21 = icc(Y, "3,1"), icc(Y, "2,1")
    roi, feat = zip(*(c.split(ROI_SEPARATOR, 1) for c in columns))
    # each perturbation on its own (unperturbed vs it): which kind of variation costs the most features
    for j, n in enumerate(names if by_perturbation is not None else [], start=1):
        one = icc(Y[:, [0, j]], "3,1")["icc"]
        ok = np.isfinite(one)
        by_perturbation[n] = {"at_least_0.75": int((one[ok] >= 0.75).sum()), "below_0.75": int((one[ok] < 0.75).sum()),
                              "undefined": int((~ok).sum()), "median": float(np.median(one[ok])) if ok.any() else None}
    return pd.DataFrame({"column": columns, "roi": roi, "feature": feat, "icc": c31["icc"],
                         "ci_low": c31["ci_low"], "ci_high": c31["ci_high"], "icc_form": "ICC(3,1)",
                         "icc_a1": a21["icc"], "icc_a1_ci_low": a21["ci_low"], "icc_a1_ci_high": a21["ci_high"],
                         "n_patients": len(pids), "n_perturbations": len(names), "settings_hash": settings_hash},
                        columns=CSV_COLUMNS)


def _stored_result(out: Path, pid: str, job_fingerprint: str, cache: dict):
    """perturbation -> {column: value} of a finished patient whose job is unchanged, else None."""
    from .cohort import _read_columns, _read_patient_json

    doc = _read_patient_json(patient_json_path(out, pid))
    if not doc or doc.get("schema") != PATIENT_SCHEMA or doc.get("job_fingerprint") != job_fingerprint:
        return None
    columns = _read_columns(out, doc.get("columns"), cache)
    values = doc.get("values")
    if columns is None or not isinstance(values, dict) or any(len(v) != len(columns) for v in values.values()):
        return None
    nan = float("nan")
    return {n: {c: nan if x is None else x for c, x in zip(columns, v)} for n, v in values.items()}


def run_robustness(manifest_path, features_dir, out_dir, *, sample: int | None = None, patients=None,
                   perturbations=DEFAULT_PERTURBATIONS, seed: int = 0, workers: int = 1,
                   scheduler: str | None = None, local_cluster: int | None = None,
                   progress: bool = True) -> RobustnessResult:
    """See the module docstring. ``seed`` draws the sample and seeds the CT noise."""
    from .cohort import (_folder_lock, _pool_results, _read_failures, _read_patient_json, _serial_results,
                         _unchanged, _write_failures)
    from .cohort import patient_json_path as cohort_json
    from .fileio import atomic_write_text, check_output_folder, ensure_folder
    from .fingerprint import digest
    from .manifest import read_manifest
    from .progress import ProgressBar, format_duration

    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    perts = parse_perturbations(perturbations)
    names = [p.name for p in perts]
    features_dir = Path(features_dir)
    options, settings_hash = _cohort_settings(features_dir)
    manifest = read_manifest(manifest_path)
    out = Path(out_dir)
    check_output_folder(out)
    ensure_folder(out / "patients")
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    compatibility = digest(options)
    by_id = {p.patient_id: p for p in manifest.patients()}
    available = []
    input_fingerprints = {}     # only these are kept: a cohort's stored values are read back for the sample
    for pid, p in by_id.items():
        doc = _read_patient_json(cohort_json(features_dir, pid))
        if doc and _unchanged(doc, p, settings_hash, features_dir, compatibility):
            available.append(pid)
            input_fingerprints[pid] = doc["fingerprint"]
    ids, how = choose_sample(available, sample, patients, seed)
    jobs = [RobustnessJob(pid, by_id[pid], tuple(names), int(seed), str(features_dir),
                          _job_fingerprint(settings_hash, compatibility, input_fingerprints[pid], names,
                                           seed, pid)) for pid in ids]
    results, failures = {}, {}
    n_done = n_skipped = 0
    with _folder_lock(out, say):
        for folder in (out, out / "patients", out / "columns"):
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
        failures = {k: v for k, v in _read_failures(out / "failures.csv").items() if k in set(ids)}
        cache = {}
        todo = []
        for job in jobs:
            stored = _stored_result(out, job.patient_id, job.job_fingerprint, cache)
            if stored is not None:
                results[job.patient_id] = stored
                failures.pop(job.patient_id, None)
                n_skipped += 1
            else:
                todo.append(job)
        dask = scheduler is not None or local_cluster is not None
        engine = ({"kind": "dask", "scheduler": scheduler, "local_cluster": local_cluster} if dask else
                  {"kind": "processes" if workers > 1 and len(todo) > 1 else "this process",
                   "workers": min(max(1, int(workers)), max(len(todo), 1))})
        say(f"robustness: {len(ids)} patient(s) x {len(names)} perturbation(s); {len(todo)} to run, "
            f"{n_skipped} unchanged")
        bar = ProgressBar(len(todo), "robustness", enabled=progress)
        if dask and todo:
            from .distributed import dask_results
            stream = dask_results(todo, options, settings_hash, out, scheduler=scheduler,
                                  local_workers=local_cluster, say=say, task=_robust_one)
        elif workers <= 1 or len(todo) <= 1:
            stream = _serial_results(todo, options, settings_hash, out, task=_robust_one)
        else:
            stream = _pool_results(todo, options, settings_hash, out, int(workers), task=_robust_one)
        seconds = []
        try:
            for r in stream:
                pid = r["patient_id"]
                if r["status"] == "done":
                    job = next(j for j in todo if j.patient_id == pid)
                    stored = _stored_result(out, pid, job.job_fingerprint, cache)
                    if stored is None:
                        r = {"status": "failed", "failure": {"patient_id": pid, "kind": "OutputError", "file": "",
                                                             "message": f"patient {pid}: result not readable"}}
                    else:
                        results[pid] = stored
                        failures.pop(pid, None)
                        n_done += 1
                        seconds.append(r["seconds"])
                if r["status"] == "failed":
                    failures[pid] = r["failure"]
                    patient_json_path(out, pid).unlink(missing_ok=True)
                    bar.message(f"robustness: {r['failure']['message']}")
                bar.update(failed=r["status"] == "failed", note=pid)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        bar.close()
        _write_failures(out / "failures.csv", failures, ids)
        done = [p for p in ids if p in results]
        if len(done) < 2:
            raise DataError(f"only {len(done)} of {len(ids)} patient(s) completed every perturbation: an ICC "
                            "needs at least 2", path=out / "failures.csv", hint="see failures.csv")
        refs = {p: _reference(features_dir, p)[1] for p in done}
        each = {}
        table = icc_table(refs, {p: results[p] for p in done}, names, settings_hash, by_perturbation=each)
        buf = table.to_csv(index=False, float_format="%.10g", lineterminator="\n")
        atomic_write_text(out / "robustness.csv", buf)
        ok = table["icc"].notna()
        record = {
            "doseradiomics_version": __version__,
            "manifest": str(manifest.path), "features_dir": str(features_dir.resolve()),
            "settings_hash": settings_hash, "options": options.to_dict(), "compatibility": compatibility,
            "sample": {"patients": ids, "completed": done, "failed": [p for p in ids if p in failures], **how},
            "seed": int(seed), "noise_seed": "numpy default_rng([seed, sha256(patient_id NUL perturbation)[:8]])",
            "perturbations": [p.describe() for p in perts],
            "cross_section": "not re-chosen: every perturbation is applied to the slice (or the slab centred on "
                             "it, or the volume) the unperturbed extraction chose (checked against its record)",
            "section": {"spec": options.section,
                        "perturbed": "the one slice" if options.section_spec.is_single_slice else
                        "every slice of the slab alike, in the cross-section's plane"
                        if options.section_spec.kind == "largest" else
                        "every slice of the volume alike, in the image's k-planes (axial in the canonical "
                        "orientation, whatever --axis)"},
            "icc": {"form": "ICC(3,1): two-way mixed, consistency, single rater (Shrout & Fleiss 1979; "
                            "McGraw & Wong 1996 ICC(C,1)); icc_a1: ICC(2,1)/ICC(A,1), absolute agreement",
                    "raters": ["unperturbed"] + names, "ci": "95 %, F-based (McGraw & Wong 1996)",
                    "features": int(len(table)), "undefined": int((~ok).sum()),
                    "at_least_0.75": int((table["icc"] >= 0.75).sum()),
                    "median": float(table.loc[ok, "icc"].median()) if ok.any() else None,
                    "by_perturbation": each},
            "engine": engine,
            "counts": {"patients": len(ids), "run": n_done, "unchanged": n_skipped, "failed": len(failures)},
            "timings_s": {"total": round(time.perf_counter() - t0, 3),
                          "per_patient_mean": round(float(np.mean(seconds)), 3) if seconds else None},
            "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        atomic_write_text(out / "robustness.json", json.dumps(record, indent=2))
    say(f"robustness: ICC of {len(table)} features over {len(done)} patient(s) x {len(names)} perturbation(s) "
        f"in {out / 'robustness.csv'}: {record['icc']['at_least_0.75']} with ICC(3,1) >= 0.75, "
        f"{record['icc']['undefined']} undefined; {len(failures)} failed in {format_duration(time.perf_counter() - t0)}")
    return RobustnessResult(table, record, n_done, n_skipped, len(failures), out)


# ----------------------------------------------------------------------------- train --min-icc

def read_robustness(path) -> pd.DataFrame:
    """A robustness.csv, checked: its columns, one settings hash, numeric ICCs."""
    path = Path(path)
    if not path.is_file():
        raise DataError("robustness file not found", path=path, hint="run doseradiomics robustness first")
    try:
        df = pd.read_csv(path, dtype={"column": str, "settings_hash": str})
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataError(f"cannot read the robustness file as CSV: {exc}", path=path,
                        hint="give the robustness.csv that doseradiomics robustness wrote") from None
    missing = [c for c in ("column", "icc", "settings_hash") if c not in df.columns]
    if missing:
        raise DataError(f"the robustness file has no {', '.join(missing)} column(s)", path=path,
                        hint="give the robustness.csv that doseradiomics robustness wrote")
    hashes = df["settings_hash"].dropna().unique()
    if len(hashes) != 1:
        raise DataError(f"the robustness file holds {len(hashes)} settings hashes", path=path,
                        hint="give the robustness.csv of one robustness run")
    df["icc"] = pd.to_numeric(df["icc"], errors="coerce")
    return df


def icc_screen(columns, settings_hash, robustness: pd.DataFrame, min_icc: float | None, path=None) -> tuple:
    """(the columns kept, a summary for the model file): with ``min_icc``, the feature columns whose
    ICC is at least ``min_icc`` (an undefined ICC, or a column the file does not hold, is removed);
    without, all of them (the ICCs are still reported). A file of other settings is refused."""
    file_hash = str(robustness["settings_hash"].iloc[0])
    if settings_hash is None:
        raise DataError("the features table has no settings_hash column: the robustness file cannot be "
                        "matched to it", path=path, hint="give the features.csv that cohort-extract wrote")
    if file_hash != str(settings_hash):
        raise DataError(f"the robustness file was computed for settings {file_hash}, the features are "
                        f"settings {settings_hash}", path=path,
                        hint="run doseradiomics robustness on this cohort's cohort-extract folder")
    iccs = dict(zip(robustness["column"], robustness["icc"]))
    columns = list(columns)
    if min_icc is None:
        keep, removed, unknown = columns, [], []
    else:
        if not 0 < float(min_icc) <= 1:
            raise DataError(f"--min-icc {min_icc}: an ICC threshold lies in (0, 1]", hint="e.g. --min-icc 0.75")
        unknown = [c for c in columns if c not in iccs]
        keep = [c for c in columns if c in iccs and iccs[c] >= float(min_icc)]
        removed = [c for c in columns if c in iccs and not iccs[c] >= float(min_icc)]
    form = str(robustness["icc_form"].iloc[0]) if "icc_form" in robustness else "ICC(3,1)"
    summary = {"file": None if path is None else str(path), "settings_hash": file_hash, "icc_form": form,
               "min_icc": None if min_icc is None else float(min_icc), "n_features": len(columns),
               "n_kept": len(keep), "n_removed": len(removed) + len(unknown), "n_without_icc": len(unknown),
               "n_undefined_icc": int(sum(1 for c in removed if not np.isfinite(iccs[c]))),
               "removed_by_roi": pd.Series([c.split("__", 1)[0] for c in removed + unknown],
                                           dtype=object).value_counts().to_dict(),
               "icc": {c: (None if not np.isfinite(iccs.get(c, np.nan)) else float(iccs[c])) for c in columns
                       if c in iccs}}
    return keep, summary


def selected_iccs(summary: dict, models: dict) -> dict:
    """model -> {selected feature: its ICC} (the screen's summary keeps only these in the model file)."""
    return {name: {f: summary["icc"].get(f) for f in m.get("features", []) if "__" in f}
            for name, m in models.items() if m.get("features")}


# ----------------------------------------------------------------------------- command line

def register_cli(sub) -> None:
    p = sub.add_parser(
        "robustness", help="ICC of every feature under perturbations that mimic real variation",
        description="For a sample of a cohort already through cohort-extract, re-extracts each patient under "
                    "perturbations (GTV erosion/dilation by one pixel, sub-pixel GTV shifts, in-plane rotation, "
                    "CT noise, dose scaled and resampled on a shifted dose grid) on the slice the extraction "
                    "chose (every slice of a largest:K slab or of the volume alike), and writes "
                    "OUT/robustness.csv: per feature the ICC(3,1) (two-way mixed, consistency, single rater) "
                    "with its 95% CI across the unperturbed and perturbed values, and ICC(2,1) (absolute "
                    "agreement); OUT/robustness.json records the sample, seeds, perturbations and settings hash. "
                    "Parallel and resumable like cohort-extract.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--manifest", required=True, help="the cohort manifest cohort-extract ran on")
    p.add_argument("--features-dir", required=True, help="the --out folder of that cohort-extract")
    p.add_argument("--out", required=True, help="output folder")
    s = p.add_mutually_exclusive_group(required=True)
    s.add_argument("--sample", type=int, metavar="N", help="N patients drawn at random (seeded by --seed)")
    s.add_argument("--patients", nargs="+", metavar="ID", help="these patients")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample and of the CT noise")
    p.add_argument("--perturbations", nargs="+", default=list(DEFAULT_PERTURBATIONS), metavar="P",
                   help="perturbations, each NAME or NAME:PARAMETERS: " + "; ".join(
                       f"{k}{':' + ','.join(f'{d:g}' for d in dflt) if dflt else ''} ({what})"
                       for k, (_n, dflt, what) in KINDS.items()))
    p.add_argument("--workers", type=int, default=1, help="patients run in parallel (processes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    d = p.add_argument_group("running on a Dask cluster (instead of --workers)")
    g = d.add_mutually_exclusive_group()
    g.add_argument("--scheduler", metavar="ADDRESS", help="address of a running Dask scheduler")
    g.add_argument("--local-cluster", type=int, metavar="N", help="a local Dask cluster of N worker processes")
    p.set_defaults(func=run)


def run(args) -> int:
    run_robustness(args.manifest, args.features_dir, args.out, sample=args.sample, patients=args.patients,
                   perturbations=args.perturbations, seed=args.seed, workers=args.workers,
                   scheduler=args.scheduler, local_cluster=args.local_cluster, progress=not args.quiet)
    return 0


def format_screen(entry: dict) -> list:
    """Console lines of a model's ``robustness`` block (what ``train`` prints)."""
    lines = []
    if entry.get("min_icc") is not None:
        by_roi = ", ".join(f"{k} {v}" for k, v in sorted(entry.get("removed_by_roi", {}).items()))
        lines.append(f"robustness screen ({entry['icc_form']} >= {entry['min_icc']:g}): {entry['n_removed']} of "
                     f"{entry['n_features']} features removed" + (f" ({by_roi})" if by_roi else "")
                     + (f", {entry['n_undefined_icc']} of them with an undefined ICC" if entry.get("n_undefined_icc") else ""))
    for name, feats in entry.get("selected", {}).items():
        text = ", ".join(f"{f} {'n/a' if v is None else f'{v:.3f}'}" for f, v in feats.items())
        lines.append(f"  {entry['icc_form']} of {name}'s features: {text}")
    return lines
