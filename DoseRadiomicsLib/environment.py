"""Checks that the scientific stack can produce the paper's feature set.

pyradiomics' LBP3D filter calls ``scipy.special.sph_harm``, removed in SciPy 1.17 (bundled by Slicer
>= 5.12); pyradiomics then logs a warning and yields no LBP features at all. Where SciPy has its
successor ``sph_harm_y`` we map the old name onto it (:mod:`DoseRadiomicsLib.compat`); otherwise we
refuse up front and say why.
``python -m DoseRadiomicsLib.environment --check`` runs the checks (the Makefile does after setup).
"""

from __future__ import annotations

import importlib
import sys

from .errors import ExtractionError


def library_versions() -> dict:
    """Versions of the libraries whose behaviour decides the features and models."""
    out = {"python": sys.version.split()[0]}
    for name, module in [("DoseRadiomics", "DoseRadiomicsLib"), ("pyradiomics", "radiomics"),
                         ("SimpleITK", "SimpleITK"), ("numpy", "numpy"), ("scipy", "scipy"),
                         ("PyWavelets", "pywt"), ("pydicom", "pydicom"), ("scikit-learn", "sklearn"),
                         ("statsmodels", "statsmodels"), ("lifelines", "lifelines")]:
        try:
            mod = importlib.import_module(module)
            out[name] = getattr(mod, "__version__", None) or getattr(mod, "Version", lambda: "?")()
        except Exception:  # noqa: BLE001 - a missing optional library is reported, not fatal here
            out[name] = None
    return out


def check_lbp3d_support() -> None:
    """Raise ExtractionError if pyradiomics' LBP3D filter cannot run in this environment."""
    try:
        import scipy.special
        import trimesh  # noqa: F401  (LBP3D's icosphere)
    except ImportError as exc:
        raise ExtractionError(f"LBP3D needs scipy and trimesh: {exc}",
                              hint="install them: pip install scipy trimesh") from exc
    from .compat import ensure_scipy_sph_harm

    if ensure_scipy_sph_harm() == "missing":
        raise ExtractionError(
            f"SciPy {scipy.__version__} has neither scipy.special.sph_harm nor sph_harm_y, so "
            "pyradiomics' LBP3D filter silently yields no features",
            hint="install another SciPy (pip install scipy), or use a configuration without LBP3D")


def check_lbp2d_support() -> None:
    """Raise ExtractionError if pyradiomics' LBP2D filter cannot run (it needs scikit-image)."""
    try:
        import skimage.feature  # noqa: F401
    except ImportError as exc:
        raise ExtractionError("pyradiomics' LBP2D filter needs scikit-image, which cannot be imported",
                              hint="pip install scikit-image, or use a configuration without LBP2D") from exc


def check_pyradiomics() -> None:
    try:
        import radiomics  # noqa: F401
    except ImportError as exc:
        raise ExtractionError(
            "pyradiomics cannot be imported",
            hint="build it with: pip install numpy versioneer wheel setuptools && "
                 "pip install --no-build-isolation pyradiomics") from exc


def main(argv=None) -> int:
    check_pyradiomics()
    check_lbp3d_support()
    check_lbp2d_support()
    from .compat import ensure_scipy_sph_harm

    for k, v in library_versions().items():
        print(f"{k:14s} {v}")
    how = ensure_scipy_sph_harm()
    print(f"{'sph_harm':14s} {how}" + (" (scipy.special.sph_harm_y behind the old name, for LBP3D)"
                                         if how == "shim" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
