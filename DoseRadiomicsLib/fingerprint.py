"""A compatibility fingerprint: do this installation's libraries compute the training features?

A model is only valid where its features are computed as at training. Version strings do not say
that: the same pyradiomics reports "3.0.1" from PyPI and "v3.1.0-2-g..." from a git checkout
(SlicerRadiomics), while numpy, SciPy, PyWavelets or SimpleITK may change a value under an unchanged
pyradiomics version. So it is measured: :func:`compute` runs a small built-in phantom (a CT-like
slice, a dose-like map, a GTV and the model's isodose ROIs, generated here in code) through the same
code path as a patient (the model's :class:`~pipeline.ExtractionOptions` -> :func:`rois.make_rois`
-> :func:`pipeline.extract_rois`), and ``train`` stores the result in the model file.
:func:`check_model` recomputes it (once per process and model) before ``predict`` and refuses the
model with :class:`errors.ModelFileError` when a feature differs beyond the tolerance, naming the
features, the differences and the library versions then and now.

**The phantom** (``PHANTOM_VERSION`` 1) is a 48 x 48 one-slice image (1.2 mm pixels, 3 mm slice): air,
a body, two lungs, a tumour with a smooth profile plus texture; the dose a rational-function
plateau over the tumour with penumbra, a bath and a cold spot. Its noise comes from splitmix64, a
hash of the pixel index in unsigned 64-bit integer arithmetic (wraps identically in every numpy), and
every other value from additions, multiplications and divisions only (IEEE 754 rounds those exactly
the same everywhere; no exp/sin/pow, whose SIMD implementations differ between numpy builds). The
CT is rounded to integer HU and the dose stored as float32, as readers do. A test pins a digest of
both arrays, so a change to the phantom cannot pass unnoticed: change ``PHANTOM_VERSION`` with it.

For ``--section largest:K`` and ``volume`` the phantom is three slices (the slice shifted one
pixel either way by ``np.roll``, which moves values without arithmetic), so that the through-plane
computations of 2.5D and 3D features are checked too; ``largest`` keeps the one-slice phantom.

**The tolerance.** Two values agree when ``|now - then| <= RTOL * max(|now|, |then|) + ATOL`` with
``RTOL = 1e-6`` and ``ATOL = 1e-12``, for every one of the phantom's features (3 ROIs x 1,595 in the
paper configuration). Measured (README, *Compatibility fingerprint*): between numpy 1.26.4 / SciPy
1.13.1 / SimpleITK 2.3.1 / pyradiomics v3.1.0 / Python 3.10 (as in Slicer 5.8) and numpy 2.4.6 /
SciPy 1.16.3 / SimpleITK 2.5.7 / pyradiomics 3.0.1 / Python 3.11, 4,766 of the 4,785 features are
bit-identical and the largest relative difference is 1.7e-15 (LBP3D m2 first-order), nine orders of
magnitude inside RTOL. A change of method is far
outside it: a bin rule, a formula or a percentile definition moves features by 1e-3 or more (the
tests patch pyradiomics each way), and even scaling the phantom's dose by 1 + 3e-7 (2.5 float32
ulp) moves the first-order features by up to 2e-4. No feature family is exempt. The z-high-pass wavelet sub-bands (``wavelet-LLH``,
``-LHH``, ``-HLH``, ``-HHH``) of a one-slice image hold only round-off (one slice filtered along z),
and that same 3e-7 perturbation changes their features by 10-100 %; but they are reproduced bit
for bit wherever the arithmetic is the same, and models do select them (the demo model has 11), so
an installation whose round-off differs would give those models other inputs: it must be refused,
and the message says when only such round-off features differ.

A model file without a fingerprint (written before this check existed) is refused with a message
saying to retrain, see :func:`check_model`.
"""

from __future__ import annotations

import math
import platform
import time
from collections import OrderedDict

import numpy as np
import SimpleITK as sitk

from .errors import ModelFileError

PHANTOM_VERSION = 1
RTOL = 1e-6
ATOL = 1e-12   # values zero in exact arithmetic (a symmetric ROI's skewness) come out as ~1e-16
# Image types whose values are round-off on a one-slice image (see the module docstring).
ROUNDOFF_IMAGES = ("wavelet-LLH_", "wavelet-LHH_", "wavelet-HLH_", "wavelet-HHH_")
SHOWN = 5   # differing features named in a refusal

_SIZE = 48
_SPACING = (1.2, 1.2, 3.0)
_MASK64 = (1 << 64) - 1


def _splitmix64(index: np.ndarray, stream: int) -> np.ndarray:
    """Uniform doubles in [0, 1) from the pixel index: splitmix64's finaliser, integer-only."""
    with np.errstate(over="ignore"):
        z = index.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64((stream * 0xBF58476D1CE4E5B9) & _MASK64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    # the top 53 bits as an exact double
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def _noise(stream: int) -> np.ndarray:
    """Zero-mean, unit-variance, bell-shaped noise (Irwin-Hall of 4 uniforms), shape (48, 48)."""
    index = np.arange(_SIZE * _SIZE, dtype=np.uint64)
    total = np.zeros(_SIZE * _SIZE)
    for k in range(4):
        total = total + _splitmix64(index, 4 * stream + k)
    return ((total - 2.0) * 1.7320508075688772).reshape(_SIZE, _SIZE)   # sqrt(3): variance 4/12 -> 1


def phantom_arrays(peak_gy: float = 66.0) -> tuple:
    """(CT in HU as int16, dose in Gy as float32, GTV as uint8), each (48, 48): the phantom slice."""
    y, x = np.mgrid[0:_SIZE, 0:_SIZE].astype(np.float64)

    def ellipse(cx, cy, a, b):   # squared elliptical distance from (cx, cy)
        return (x - cx) * (x - cx) / (a * a) + (y - cy) * (y - cy) / (b * b)

    body = ellipse(23.5, 24.0, 22.0, 17.0)
    lungs = np.minimum(ellipse(14.0, 23.0, 8.0, 11.0), ellipse(33.0, 23.0, 8.0, 11.0))
    tumour = ellipse(31.0, 21.0, 6.5, 5.0)
    ct = np.full((_SIZE, _SIZE), -1000.0)
    ct = np.where(body <= 1.0, 40.0 + 12.0 * _noise(0), ct)
    ct = np.where(lungs <= 1.0, -840.0 + 30.0 * _noise(1), ct)
    # the tumour: a smooth dome (denser centre), a coarse texture and fine noise
    coarse = _noise(2)
    coarse = (coarse + np.roll(coarse, 1, 0) + np.roll(coarse, 1, 1) + np.roll(coarse, (1, 1), (0, 1))) * 0.5
    ct = np.where(tumour <= 1.0, -20.0 + 80.0 * (1.0 - tumour) + 25.0 * coarse + 8.0 * _noise(3), ct)
    ct = np.floor(ct + 0.5).astype(np.int16)

    # dose: plateau 1 / (1 + s^4) over the tumour (penumbra at s ~ 1), a 15 % bath in the body, a cold spot
    s = ellipse(30.0, 21.5, 10.0, 8.5)
    s2 = s * s
    plateau = 1.0 / (1.0 + s2 * s2)
    cold = ellipse(33.0, 19.0, 2.5, 2.0)
    dip = 0.12 / (1.0 + cold * cold)
    relative = np.where(body <= 1.0, 0.15 + 0.85 * plateau - dip, 0.0)
    dose = peak_gy * relative + np.where(body <= 1.0, 0.35 * _noise(4), 0.0)
    dose = np.maximum(dose, 0.0).astype(np.float32)
    return ct, dose, (tumour <= 1.0).astype(np.uint8)


def _image(array: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(array if array.ndim == 3 else array[np.newaxis])   # numpy (k, j, i)
    img.SetSpacing(_SPACING)
    img.SetOrigin((-28.2, -28.2, 0.0))
    return img


def phantom_rois(options):
    """The phantom's ROIs under ``options`` (the model's isodoses, touching rule), as for a patient."""
    from .crosssection import largest_cross_section
    from .rois import make_rois

    # the plateau reaches the highest isodose with margin, as a prescription would
    peak = max(66.0, 1.15 * max(options.isodose_gy)) if options.isodose_gy else 66.0
    ct, dose, gtv = phantom_arrays(peak)
    spec = options.section_spec
    if not spec.is_single_slice:
        # 2.5D and 3D sections see through-plane neighbours: three slices, the phantom shifted one pixel
        # left, as it is, and one pixel right (np.roll moves values exactly, so no new arithmetic)
        ct, dose, gtv = (np.stack([np.roll(a, -1, axis=1), a, np.roll(a, 1, axis=1)]) for a in (ct, dose, gtv))
    ct_img, dose_img, gtv_img = _image(ct), _image(dose), _image(gtv)
    section = largest_cross_section(gtv_img, axis=2, patient="phantom")
    extent = None
    if not spec.is_single_slice:
        from .crosssection import section_extent
        extent = section_extent(gtv_img, section, spec, patient="phantom")
    return make_rois(ct_img, dose_img, gtv_img, section, isodose_gy=options.isodose_gy,
                     isodose_touching_gtv=options.isodose_touching_gtv, patient="phantom", extent=extent)


_computed: dict = {}     # options -> fingerprint: the libraries of a process do not change
_checked: dict = {}      # (model checksum) -> check result
_digests: dict = {}      # options -> digest of _computed's features


def clear_cache() -> None:
    """Forget computed fingerprints and checked models (tests that patch a library call this)."""
    _computed.clear()
    _checked.clear()
    _digests.clear()


def compute(options) -> dict:
    """The fingerprint of this installation under ``options``: what ``train`` stores in the model.

    ``{"phantom_version", "features": {<ROI>__<feature>: value | None}, "library_versions",
    "seconds"}``; NaN becomes None as everywhere in JSON files. Computed once per process and options.
    """
    from .environment import library_versions
    from .fileio import canonical_json
    from .pipeline import extract_rois, extractors

    key = canonical_json(options.to_dict())
    if key not in _computed:
        extractors(options)   # built (pyradiomics imported) once per process anyway: not the phantom's cost
        # The phantom is axial by construction; ``options.axis`` only chooses a patient's slice.
        started = time.perf_counter()
        features = extract_rois(phantom_rois(options), options, patient="phantom")
        seconds = time.perf_counter() - started
        _computed[key] = {
            "phantom_version": PHANTOM_VERSION,
            "features": OrderedDict((k, float(v) if math.isfinite(float(v)) else None)
                                    for k, v in features.items()),
            "library_versions": environment_versions(library_versions()),
            "seconds": round(seconds, 3)}
    out = dict(_computed[key])
    out["features"] = OrderedDict(out["features"])
    return out


def digest(options) -> str:
    """A short digest of this installation's phantom features under ``options`` (bit-exact).

    ``cohort-extract`` records it per patient and re-extracts a stored patient whose digest differs:
    features computed by another installation are never reused or mixed in one features table.
    """
    import hashlib
    from .fileio import canonical_json
    key = canonical_json(options.to_dict())
    if key not in _digests:   # cohort-extract asks once per patient: hash the phantom's features once
        _digests[key] = hashlib.sha256(canonical_json(compute(options)["features"]).encode()).hexdigest()[:16]
    return _digests[key]


def environment_versions(versions: dict | None = None) -> dict:
    """The versions that can change feature values, plus the platform (for messages only)."""
    from .environment import library_versions
    versions = versions or library_versions()
    keep = ("pyradiomics", "numpy", "scipy", "SimpleITK", "PyWavelets", "pydicom", "python")
    out = {k: versions.get(k) for k in keep}
    out["platform"] = f"{platform.system()} {platform.machine()}"
    return out


def is_roundoff(name: str) -> bool:
    """True for a feature of a z-high-pass wavelet sub-band (round-off on a one-slice image)."""
    return name.split("__", 1)[-1].startswith(ROUNDOFF_IMAGES)


def model_inputs(model: dict) -> set:
    """The feature inputs of a model file's models."""
    return {f for m in (model.get("models") or {}).values() if isinstance(m, dict)
            for f, s in zip(m.get("features") or [], m.get("sources") or []) if s == "feature"}


def compare(then: dict, now: dict) -> list:
    """Differences between two feature dicts: ``[(name, then, now, relative difference)]``, worst first.

    A feature present in one and not the other is a difference (value None on the missing side,
    relative difference inf); None (NaN) equals None.
    """
    out = []
    for name in list(then) + [n for n in now if n not in then]:
        a, b = then.get(name, "missing"), now.get(name, "missing")
        if a is None and b is None:
            continue
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            out.append((name, a, b, math.inf))
            continue
        diff = abs(a - b)
        scale = max(abs(a), abs(b))
        if diff > RTOL * scale + ATOL:
            out.append((name, a, b, diff / scale if scale else math.inf))
    out.sort(key=lambda d: -d[3])
    return out


def _format_value(v) -> str:
    return f"{v:.6g}" if isinstance(v, (int, float)) else ("NaN" if v is None else str(v))


def refusal_message(differences: list, total: int, then_versions: dict, now_versions: dict,
                    inputs: set = frozenset()) -> str:
    """The one message a refused model gives: features, differences, versions then and now.

    ``inputs``: the model's own feature inputs, to say how many of the differing features it uses.
    """
    shown = "; ".join(f"{n} {_format_value(a)} -> {_format_value(b)}"
                      + (f" ({r:.1e} relative)" if math.isfinite(r) else "")
                      for n, a, b, r in differences[:SHOWN])
    more = f" and {len(differences) - SHOWN} more" if len(differences) > SHOWN else ""
    keys = list(then_versions) + [k for k in now_versions if k not in then_versions]
    changed = [f"{k} {then_versions.get(k)} -> {now_versions.get(k)}" for k in keys
               if then_versions.get(k) != now_versions.get(k)]
    versions = ("; versions that differ: " + ", ".join(changed)) if changed else \
        "; the library versions are the same, so a library was modified or patched"
    used = sum(1 for d in differences if d[0] in inputs)
    notes = ""
    if all(is_roundoff(d[0]) for d in differences):
        notes += ("; all of them are z-high-pass wavelet features, which hold only round-off on a one-slice "
                  "image: this installation rounds differently")
    if inputs:
        notes += f"; {used} of them are inputs of the model" if used else \
            "; none of them is an input of the model, but they show the computation differs"
    return (f"this installation computes {len(differences)} of the model's {total} reference features "
            f"differently from the installation that trained it (built-in phantom, tolerance "
            f"{RTOL:g} relative): {shown}{more}{notes}{versions}")


def check_model(model: dict, model_path=None) -> dict:
    """Recompute the model's fingerprint here; refuse the model (ModelFileError) if features differ.

    Once per process per model file content (its checksum). Returns ``{"compared": n of features,
    "seconds": time to compute}``. A model without a fingerprint is refused with a message saying
    to retrain: nothing can show that this installation computes its features, and such a file was
    written by a DoseRadiomics whose settings hash held the pyradiomics version, so its hash does
    not match any features extracted now either.
    """
    from .pipeline import ExtractionOptions

    recorded = (model.get("extraction") or {}).get("fingerprint")
    if recorded is None:
        raise ModelFileError(
            "the model file has no compatibility fingerprint (it was trained by a DoseRadiomics older "
            "than the fingerprint check), so it cannot be shown that this installation computes its "
            "features as the training one did", path=model_path,
            hint="re-extract the cohort and retrain the model with doseradiomics train")
    version = recorded.get("phantom_version")
    if version != PHANTOM_VERSION:
        raise ModelFileError(f"the model's fingerprint uses phantom version {version!r}; this DoseRadiomics "
                             f"computes version {PHANTOM_VERSION}", path=model_path,
                             hint="retrain the model with this version of DoseRadiomics, or use the "
                                  "version that trained it")
    key = model.get("checksum")
    if key is not None and key in _checked:
        return _checked[key]
    opts = (model.get("extraction") or {}).get("options")
    try:
        options = ExtractionOptions(**opts) if opts else ExtractionOptions()
    except TypeError as exc:
        raise ModelFileError(f"the model's extraction options are not understood: {exc}", path=model_path,
                             hint="upgrade DoseRadiomics to the version that trained the model") from None
    now = compute(options)
    differences = compare(recorded["features"], now["features"])
    if differences:
        raise ModelFileError(refusal_message(differences, len(recorded["features"]),
                                             recorded.get("library_versions") or {}, now["library_versions"],
                                             model_inputs(model)),
                             path=model_path,
                             hint="predict in an environment that computes the model's features (see the "
                                  "versions above), or retrain the model in this one")
    result = {"compared": len(recorded["features"]), "seconds": now["seconds"]}
    if key is not None:
        _checked[key] = result
    return result
