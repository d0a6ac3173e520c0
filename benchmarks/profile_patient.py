"""Where one patient's extraction spends its CPU time: reading, alignment, slicing, filters, feature classes.

Runs the cohort worker's own step (``cohort._extract_one``: fingerprint, ``extract_patient``, the
patient JSON) on synthetic patients (``doseradiomics synth``, 96x96x20 CT) and, when the shared data
are there, on OpenKBP patients (128^3), warm, one process, one thread. Timers wrap the library's
stages and pyradiomics' own steps (its filters, its crop, each feature class's set-up + features),
measured in process CPU time so that a busy machine does not distort the split.

    .venv/bin/python benchmarks/profile_patient.py [--synth 20] [--openkbp 5]

Writes benchmarks/results/profile.json and the table between the ``profile`` markers of
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import _common  # noqa: F401  (pins threads, puts the repository on sys.path)
from _common import SHARED_DATA, load_note, publish, stamp, synth_cohort

clock = time.process_time
ACC: "defaultdict[str, float]" = defaultdict(float)
_ACTIVE: list = []     # stack of open buckets: time is charged to the innermost only (self time)


def _charge(bucket: str, fn, *args, **kwargs):
    t0 = clock()
    _ACTIVE.append(bucket)
    try:
        return fn(*args, **kwargs)
    finally:
        _ACTIVE.pop()
        dt = clock() - t0
        ACC[bucket] += dt
        if _ACTIVE:
            ACC[_ACTIVE[-1]] -= dt  # the parent keeps only its own time


def _wrap_function(owner, name: str, bucket: str) -> None:
    fn = getattr(owner, name)
    static = isinstance(getattr(owner, "__dict__", {}).get(name), staticmethod)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return _charge(bucket, fn, *args, **kwargs)
    setattr(owner, name, staticmethod(wrapper) if static else wrapper)


def _wrap_generator(owner, name: str, bucket: str) -> None:
    gen_fn = getattr(owner, name)

    @functools.wraps(gen_fn)
    def wrapper(*args, **kwargs):
        it = gen_fn(*args, **kwargs)
        while True:
            try:
                item = _charge(bucket, next, it)
            except StopIteration:
                return
            yield item
    setattr(owner, name, wrapper)


def instrument() -> None:
    """Wrap the library's stages and pyradiomics' steps with CPU timers (this process only)."""
    import radiomics
    from radiomics import base, featureextractor, glcm, imageoperations

    from DoseRadiomicsLib import alignment, cohort, pipeline, readers

    for name in ("read_ct", "read_dose", "read_gtv"):
        _wrap_function(readers, name, "read CT, dose, GTV")
    _wrap_function(alignment, "align_dose_to_ct", "align dose to CT")
    _wrap_function(pipeline, "largest_cross_section", "largest cross-section, ROIs, dose statistics")
    _wrap_function(pipeline, "make_rois", "largest cross-section, ROIs, dose statistics")
    _wrap_function(pipeline, "gtv_dose_statistics", "largest cross-section, ROIs, dose statistics")
    _wrap_function(cohort, "input_fingerprint", "cohort: input fingerprint (sha256)")
    _wrap_function(cohort, "atomic_write_text", "cohort: patient JSON")
    _wrap_function(cohort, "jsonable", "cohort: patient JSON")
    # pyradiomics: the image/mask check and pre-crop, the filters, the per-image crop, the classes
    _wrap_function(featureextractor.RadiomicsFeatureExtractor, "loadImage", "pyradiomics: load, check, pre-crop")
    _wrap_function(imageoperations, "checkMask", "pyradiomics: load, check, pre-crop")
    _wrap_function(imageoperations, "cropToTumorMask", "pyradiomics: crop per filtered image")
    for t in ("Original", "Wavelet", "Square", "SquareRoot", "Logarithm", "Exponential", "Gradient",
              "LBP3D", "LBP2D", "LoG"):
        _wrap_generator(imageoperations, f"get{t}Image", f"filter: {t}")
    classes = radiomics.getFeatureClasses()
    for cname, cls in list(classes.items()):
        bucket = f"features: {cname}" + (" (without MCC)" if cname == "glcm" else "")
        timed = type(cls.__name__, (cls,), {
            "__init__": (lambda c, b: lambda self, *a, **k: _charge(b, c.__init__, self, *a, **k))(cls, bucket),
            "execute": (lambda c, b: lambda self: _charge(b, c.execute, self))(cls, bucket),
            "__module__": cls.__module__})
        classes[cname] = timed
    _wrap_function(glcm.RadiomicsGLCM, "getMCCFeatureValue", "features: glcm, MCC eigenvalues only")
    names = base.RadiomicsFeaturesBase.getFeatureNames.__func__

    def feature_names(cls):
        return _charge("pyradiomics: feature-name lookup (inspect)", names, cls)
    base.RadiomicsFeaturesBase.getFeatureNames = classmethod(feature_names)


def profile(patients, label: str) -> dict:
    from DoseRadiomicsLib import cohort
    from DoseRadiomicsLib.pipeline import ExtractionOptions, options_settings_hash

    options = ExtractionOptions()
    settings_hash = options_settings_hash(options)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "patients").mkdir()
        cohort._extract_one(patients[0], options, settings_hash, tmp)          # warm-up
        ACC.clear()
        t0, w0 = clock(), time.perf_counter()
        for p in patients:
            r = _charge("other (ours: record, checks; pyradiomics glue)", cohort._extract_one,
                        p, options, settings_hash, tmp)
            assert r["status"] == "done", r
        cpu, wall = clock() - t0, time.perf_counter() - w0
    n = len(patients)
    buckets = {k: v / n for k, v in ACC.items() if abs(v) > 1e-9}
    return {"label": label, "patients": n, "cpu_s_per_patient": cpu / n, "wall_s_per_patient": wall / n,
            "buckets_cpu_s": buckets}


def table(results: list) -> str:
    order: list = []
    for r in results:
        for k in r["buckets_cpu_s"]:
            if k not in order:
                order.append(k)
    head = "| stage (CPU ms per patient, self time) | " + " | ".join(r["label"] for r in results) + " |"
    lines = [head, "|---|" + "---:|" * len(results)]
    for k in sorted(order, key=lambda k: -max(r["buckets_cpu_s"].get(k, 0) for r in results)):
        cells = []
        for r in results:
            v = r["buckets_cpu_s"].get(k)
            cells.append("" if v is None else f"{1000 * v:.1f} ({100 * v / r['cpu_s_per_patient']:.0f} %)")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("| **total CPU per patient** | " + " | ".join(
        f"**{1000 * r['cpu_s_per_patient']:.0f}**" for r in results) + " |")
    lines.append("| wall per patient (load-dependent) | " + " | ".join(
        f"{1000 * r['wall_s_per_patient']:.0f}" for r in results) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synth", type=int, default=20, help="synthetic patients to profile")
    ap.add_argument("--openkbp", type=int, default=5, help="OpenKBP patients to profile (0: none)")
    args = ap.parse_args(argv)
    import SimpleITK as sitk

    from DoseRadiomicsLib.manifest import read_manifest
    from DoseRadiomicsLib.pipeline import PatientInputs

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    instrument()
    results = []
    synth = read_manifest(synth_cohort(max(args.synth, 2) + 1)).patients()
    results.append(profile(synth[1:args.synth + 1], f"synthetic 96x96x20 (n={args.synth})"))
    data = SHARED_DATA / "openkbp_hn"
    if args.openkbp and data.is_dir():
        dirs = sorted((p for p in data.glob("pt_*") if p.is_dir()), key=lambda p: int(p.name[3:]))
        kbp = [PatientInputs(p.name, str(p / "ct.nrrd"), str(p / "dose.nrrd"), str(p / "mask_PTV70.nrrd"),
                             dose_unit="Gy") for p in dirs[:args.openkbp + 1]]
        results.append(profile(kbp, f"OpenKBP 128^3 (n={len(kbp)})"))
    md = table(results)
    note = (f"_`benchmarks/profile_patient.py --synth {args.synth} --openkbp {args.openkbp}`, {stamp()}, "
            f"{load_note()}; paper configuration, 3 ROIs (GTV, GTV-heat, 50Gy-heat) x 1,595 features; "
            "CPU time of one warm process, one thread._")
    publish("profile", results, md, note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
