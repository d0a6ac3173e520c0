"""SciPy >= 1.17 (Slicer >= 5.12): scipy.special.sph_harm mapped onto sph_harm_y for pyradiomics' LBP3D.

Checked three ways: the shim against closed-form spherical harmonics, against SciPy's own
``sph_harm`` where this SciPy still has it, and pyradiomics' LBP3D features of a real OpenKBP patient
under SciPy 1.17.1 (the Slicer-5.12-like environment, run as a subprocess) against those computed here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy
import scipy.special
import SimpleITK as sitk

from DoseRadiomicsLib import compat
from DoseRadiomicsLib.errors import ExtractionError
from DoseRadiomicsLib.extraction import FeatureExtractor, parameter_file

REPO = Path(__file__).resolve().parents[2]
NEEDS_SUCCESSOR = pytest.mark.skipif(not hasattr(scipy.special, "sph_harm_y"),
                                     reason=f"SciPy {scipy.__version__} has no sph_harm_y (added in 1.15)")


def _angles():
    """pyradiomics' own angles (an icosphere's vertices, azimuth in [-pi, pi]) plus random ones."""
    from trimesh.creation import icosphere
    v = np.asarray(icosphere(1, 1).vertices)
    polar, azimuth = np.arccos(v[:, 2]), np.arctan2(v[:, 1], v[:, 0])
    rng = np.random.default_rng(17)
    return (np.concatenate([polar, rng.uniform(0, np.pi, 200)]),
            np.concatenate([azimuth, rng.uniform(-np.pi, 2 * np.pi, 200)]))


@NEEDS_SUCCESSOR
def test_shim_equals_closed_form_spherical_harmonics():
    sph_harm = compat._sph_harm_from_sph_harm_y(scipy.special.sph_harm_y)
    polar, az = _angles()
    # Y_n^m with the Condon-Shortley phase (DLMF 14.30), written out by hand; old argument order.
    expected = {
        (0, 0): np.full_like(polar, 0.5 / np.sqrt(np.pi)) + 0j,
        (-1, 1): 0.5 * np.sqrt(3 / (2 * np.pi)) * np.exp(-1j * az) * np.sin(polar),
        (0, 1): 0.5 * np.sqrt(3 / np.pi) * np.cos(polar) + 0j,
        (1, 1): -0.5 * np.sqrt(3 / (2 * np.pi)) * np.exp(1j * az) * np.sin(polar),
        (2, 2): 0.25 * np.sqrt(15 / (2 * np.pi)) * np.exp(2j * az) * np.sin(polar) ** 2,
        (0, 2): 0.25 * np.sqrt(5 / np.pi) * (3 * np.cos(polar) ** 2 - 1) + 0j,
    }
    for (m, n), want in expected.items():
        got = sph_harm(m, n, az, polar)        # sph_harm(m, n, theta=azimuth, phi=polar)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, err_msg=f"m={m} n={n}")


@NEEDS_SUCCESSOR
@pytest.mark.skipif(not hasattr(scipy.special, "sph_harm"), reason=f"SciPy {scipy.__version__} has no sph_harm")
def test_shim_equals_scipys_sph_harm_with_pyradiomics_arguments():
    """pyradiomics calls sph_harm(m, n, polar, azimuth), i.e. with the angles the other way round from
    SciPy's doc; the shim must give what SciPy gave for exactly those calls."""
    import warnings
    sph_harm = compat._sph_harm_from_sph_harm_y(scipy.special.sph_harm_y)
    a, b = _angles()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for n in range(4):
            for m in range(-n, n + 1):
                for x, y in ((a, b), (b, a)):
                    np.testing.assert_allclose(sph_harm(m, n, x, y), scipy.special.sph_harm(m, n, x, y),
                                               rtol=1e-12, atol=1e-15, err_msg=f"m={m} n={n}")


@NEEDS_SUCCESSOR
def test_extractor_installs_the_shim_when_scipy_lacks_sph_harm(monkeypatch):
    if hasattr(scipy.special, "sph_harm"):
        monkeypatch.delattr(scipy.special, "sph_harm")
    FeatureExtractor(parameter_file("paper", "CT"))
    assert compat.ensure_scipy_sph_harm() == "shim"
    from scipy.special import sph_harm  # what pyradiomics' LBP3D does
    assert sph_harm(0, 0, 0.3, 0.2) == pytest.approx(0.5 / np.sqrt(np.pi))


def test_scipy_without_either_function_is_refused_with_the_reason(monkeypatch):
    for name in ("sph_harm", "sph_harm_y"):
        if hasattr(scipy.special, name):
            monkeypatch.delattr(scipy.special, name)
    with pytest.raises(ExtractionError, match="SciPy .* neither scipy.special.sph_harm nor sph_harm_y"):
        FeatureExtractor(parameter_file("paper", "CT"))


# --- the same patient's features under SciPy 1.17.1 and under this SciPy --------------------------

OTHER_VENV = Path(os.environ.get("DOSERADIOMICS_SCIPY117_VENV", REPO / ".venv-slicer-5.12"))

# Run in the other environment: the paper configuration on ROI images written by this process.
_CHILD = r"""
import json, sys
import SimpleITK as sitk, scipy
from DoseRadiomicsLib import compat
from DoseRadiomicsLib.extraction import FeatureExtractor, parameter_file
job = json.loads(sys.argv[1])
out = {"scipy": scipy.__version__}
for modality, spec in job.items():
    fx = FeatureExtractor(parameter_file("paper", modality))
    masks = {roi: sitk.ReadImage(p) for roi, p in spec["masks"].items()}
    out[modality] = fx.extract_many(sitk.ReadImage(spec["image"]), masks)
out["sph_harm"] = compat.ensure_scipy_sph_harm()
print(json.dumps(out))
"""


@pytest.mark.skipif(not hasattr(scipy.special, "sph_harm"),
                    reason="this interpreter's SciPy has no native sph_harm to compare with")
def test_lbp3d_features_under_scipy_117_equal_those_under_this_scipy(openkbp, tmp_path):
    python = OTHER_VENV / "bin" / "python"
    if not python.is_file():
        pytest.skip(f"{OTHER_VENV} is absent: build it with `make {OTHER_VENV.name}` (make test does)")
    from DoseRadiomicsLib.crosssection import largest_cross_section
    from DoseRadiomicsLib.rois import make_rois, roi_modality

    d = openkbp("pt_10")
    ct, dose = sitk.ReadImage(str(d / "ct.nrrd")), sitk.ReadImage(str(d / "dose.nrrd"))
    gtv = sitk.Cast(sitk.ReadImage(str(d / "mask_PTV70.nrrd")) > 0, sitk.sitkUInt8)
    rois = make_rois(ct, dose, gtv, largest_cross_section(gtv))
    job = {}
    for roi, mask in rois.masks.items():
        modality = roi_modality(roi)
        spec = job.setdefault(modality, {"image": str(tmp_path / f"{modality}.nrrd"), "masks": {}})
        sitk.WriteImage(rois.image_for(roi), spec["image"])   # NRRD: the same voxels, bit for bit
        spec["masks"][roi] = str(tmp_path / f"{roi}.nrrd")
        sitk.WriteImage(mask, spec["masks"][roi])

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([str(python), "-c", _CHILD, json.dumps(job)], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    other = json.loads(proc.stdout.strip().splitlines()[-1])
    assert other["scipy"].startswith("1.17") and other["sph_harm"] == "shim", other["scipy"]

    compared = 0
    for modality, spec in job.items():
        fx = FeatureExtractor(parameter_file("paper", modality))
        masks = {roi: sitk.ReadImage(p) for roi, p in spec["masks"].items()}
        here = fx.extract_many(sitk.ReadImage(spec["image"]), masks)
        for roi in masks:
            theirs = other[modality][roi]
            assert set(theirs) == set(here[roi]) and len(here[roi]) == 1595
            lbp = [k for k in here[roi] if k.startswith("lbp-3D")]
            assert len(lbp) == 3 * 93
            bad = [k for k in here[roi] if not np.isclose(theirs[k], here[roi][k], rtol=1e-9, atol=0)]
            assert not bad, (f"{roi}: {len(bad)} of 1595 features differ between SciPy {other['scipy']} and "
                             f"{scipy.__version__}, e.g. " + ", ".join(f"{k}: {theirs[k]!r} vs {here[roi][k]!r}"
                                                                      for k in bad[:4]))
            compared += len(here[roi])
    assert compared == 3 * 1595
