"""Shims that keep pyradiomics working on the library versions 3D Slicer bundles.

SciPy 1.17 (bundled by Slicer >= 5.12) removed ``scipy.special.sph_harm``, which pyradiomics' LBP3D
filter imports each time it runs; without it the filter logs a warning and yields no features. Its
successor ``sph_harm_y`` (SciPy >= 1.15) computes the same function with the degree first and the
angles swapped:

    sph_harm(m, n, theta=azimuth, phi=polar) == sph_harm_y(n, m, theta=polar, phi=azimuth)

(SciPy's docstrings of both; ``Testing/Python/test_compat.py`` checks the values against the 1.16
``sph_harm``). pyradiomics passes its own angles in the old order, so the shim takes the old
arguments as they are and only reorders them.
"""

from __future__ import annotations


def _sph_harm_from_sph_harm_y(sph_harm_y):
    def sph_harm(m, n, theta, phi):
        """scipy.special.sph_harm (removed in SciPy 1.17), computed by sph_harm_y; see
        DoseRadiomicsLib.compat."""
        return sph_harm_y(n, m, phi, theta)

    sph_harm._doseradiomics_shim = True
    return sph_harm


def ensure_scipy_sph_harm() -> str:
    """Make ``scipy.special.sph_harm`` importable; say how: "native", "shim" or "missing".

    Idempotent and per process: call it before pyradiomics runs LBP3D in that process (the
    extractor's constructor does, so cohort worker processes and Dask workers get it too).
    """
    import scipy.special

    current = getattr(scipy.special, "sph_harm", None)
    if current is not None:
        return "shim" if getattr(current, "_doseradiomics_shim", False) else "native"
    successor = getattr(scipy.special, "sph_harm_y", None)
    if successor is None:
        return "missing"
    scipy.special.sph_harm = _sph_harm_from_sph_harm_y(successor)
    return "shim"
