"""Dependencies: the self-test skips (not ImportError) when a package is missing, the restart check
sees a package pip upgraded under a loaded module, Sample Data registers on 5.8, 5.10 and 5.12.

Missing packages are made missing the way Python sees it (``sys.modules[name] = None`` makes
``import name`` fail and ``importlib.util.find_spec(name)`` return None); the upgrade is a real
distribution (``.dist-info``) on ``sys.path`` whose version changes on disk.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import types
import unittest
from pathlib import Path

import pytest


def _run_with_unittest(module):
    """As ctest runs the module: slicer_add_python_unittest (CMake/SlicerMacroPythonTesting.cmake) calls
    slicer.testing.runUnitTest, a unittest.TextTestRunner over loadTestsFromName(<module>), and fails
    only if the result is not wasSuccessful() (skips are successful)."""
    suite = unittest.TestLoader().loadTestsFromName(module.__name__)  # runUnitTest's call
    with open(os.devnull, "w") as sink:
        return unittest.TextTestRunner(stream=sink, verbosity=0).run(suite)


def test_self_test_skips_naming_missing_packages(module, scene, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "skimage", None)
    result = _run_with_unittest(module)
    assert result.wasSuccessful() and not result.errors and not result.failures
    assert len(result.skipped) == 1
    reason = result.skipped[0][1]
    assert "scikit-learn>=" in reason and "scikit-image>=" in reason
    assert "Install Python packages" in reason and "slicer.util.pip_install(" in reason
    # Reload and Test / slicer.selfTests call runTest directly: the same message, as SkipTest.
    parent = types.SimpleNamespace(path=module.__file__)
    with pytest.raises(unittest.SkipTest, match="scikit-learn"):
        module.DoseRadiomics(parent).runTest(msec=0)


def test_self_test_skips_when_pyradiomics_is_missing(module, scene, monkeypatch):
    monkeypatch.setitem(sys.modules, "radiomics", None)
    result = _run_with_unittest(module)
    assert result.wasSuccessful() and len(result.skipped) == 1
    assert "SlicerRadiomics" in result.skipped[0][1]


def test_self_test_skips_when_scipy_breaks_lbp3d(module, scene, monkeypatch):
    import scipy.special
    if hasattr(scipy.special, "sph_harm_y"):   # SciPy >= 1.15
        # SciPy >= 1.17 (Slicer >= 5.12) has no sph_harm: the library's shim maps it onto sph_harm_y, so
        # nothing is in the way ...
        monkeypatch.delattr(scipy.special, "sph_harm", raising=False)
        assert module.DoseRadiomicsLogic().pyradiomicsProblem() is None
        monkeypatch.delattr(scipy.special, "sph_harm_y")
    # ... unless SciPy has neither function: then the self-test skips saying why.
    monkeypatch.delattr(scipy.special, "sph_harm", raising=False)   # the native one or the shim
    problem = module.DoseRadiomicsLogic().pyradiomicsProblem()
    assert "neither scipy.special.sph_harm nor sph_harm_y" in problem
    result = _run_with_unittest(module)
    assert result.wasSuccessful() and len(result.skipped) == 1 and "sph_harm" in result.skipped[0][1]


def test_requirements_name_scikit_image(module):
    lines = module.DoseRadiomicsLogic.requirementsPath().read_text().splitlines()
    assert any(line.startswith("scikit-image>=") for line in lines)
    assert module.REQUIRED_IMPORTS["skimage"] == "scikit-image"


def _write_distribution(site: Path, version: str) -> None:
    """An installed distribution 'doseradiomics-fake-dep' (module doseradiomics_fake_dep), as pip
    leaves one: the package and its .dist-info (METADATA, top_level.txt, RECORD)."""
    for old in site.glob("doseradiomics_fake_dep-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    pkg = site / "doseradiomics_fake_dep"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text(f'__version__ = "{version}"\n')
    info = site / f"doseradiomics_fake_dep-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: doseradiomics-fake-dep\nVersion: {version}\n")
    (info / "top_level.txt").write_text("doseradiomics_fake_dep\n")
    (info / "RECORD").write_text("doseradiomics_fake_dep/__init__.py,,\n")


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("doseradiomics_fake_dep", None)


def test_restart_needed_when_pip_upgrades_a_loaded_package(module, fake_site):
    logic = module.DoseRadiomicsLogic()
    _write_distribution(fake_site, "1.0")
    before = logic.installedVersions()
    assert before["doseradiomics-fake-dep"] == "1.0"
    importlib.import_module("doseradiomics_fake_dep")
    assert logic.restartNeeded(["scikit-learn>=1.3"], before=before) == []  # nothing changed yet
    _write_distribution(fake_site, "2.0")  # what pip install --upgrade does on disk
    changed = logic.restartNeeded(["scikit-learn>=1.3"], before=before)  # not among the requested lines
    assert changed == ["doseradiomics-fake-dep 1.0 -> 2.0"]


def test_no_restart_for_an_upgrade_of_a_package_not_loaded(module, fake_site):
    logic = module.DoseRadiomicsLogic()
    _write_distribution(fake_site, "1.0")
    before = logic.installedVersions()
    _write_distribution(fake_site, "2.0")
    assert "doseradiomics_fake_dep" not in sys.modules
    assert logic.restartNeeded(before=before) == []


def test_no_restart_for_a_newly_installed_package(module, fake_site):
    logic = module.DoseRadiomicsLogic()
    before = logic.installedVersions()
    _write_distribution(fake_site, "1.0")
    importlib.import_module("doseradiomics_fake_dep")
    assert logic.restartNeeded(before=before) == []


def test_restart_check_defaults_to_the_versions_seen_at_start(module):
    logic = module.DoseRadiomicsLogic()
    assert module._VERSIONS_AT_START  # taken when the first Logic was made
    assert logic.restartNeeded() == []  # nothing was installed since in this process


# ----------------------------------------------------------------------------- Sample Data

SLICER_GIT = Path(os.environ.get("DOSERADIOMICS_SLICER_GIT", "/work/.mirror/Slicer+Slicer/repo"))


def _upstream_sample_data(tag: str):
    """Slicer's own SampleDataSource and SampleDataLogic classes at ``tag``, read from its source
    (a git mirror), and run on the headless ``slicer`` namespace (the classes' registration
    methods are plain Python; the module's Qt parts are left out)."""
    import ast
    try:
        text = subprocess.run(["git", "-C", str(SLICER_GIT), "show", f"{tag}:Modules/Scripted/SampleData/SampleData.py"],
                              check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"Slicer's source at {tag} is not available here (set DOSERADIOMICS_SLICER_GIT to a clone)")
    tree = ast.parse(text)
    keep = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name in ("SampleDataSource", "SampleDataLogic")]
    import slicer
    namespace = {"slicer": slicer, "logging": __import__("logging"), "os": os, "_": lambda s: s}
    exec(compile(ast.Module(body=keep, type_ignores=[]), f"SampleData.py@{tag}", "exec"), namespace)  # noqa: S102
    return types.SimpleNamespace(SampleDataLogic=namespace["SampleDataLogic"])


@pytest.mark.parametrize("tag, category_titles", [("v5.8.0", False), ("v5.10.0", False), ("v5.12.3", True)])
def test_sample_data_registers_with_each_slicer_release(module, scene, monkeypatch, tag, category_titles):
    import slicer
    upstream = _upstream_sample_data(tag)
    monkeypatch.setitem(sys.modules, "SampleData", upstream)
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(**vars(slicer.modules)))
    module.registerSampleData()
    sources = slicer.modules.sampleDataSources["DoseRadiomics"]
    assert [s.sampleName for s in sources] == [module.SAMPLE_CASE_NAME]
    has_titles = hasattr(upstream.SampleDataLogic, "registerCustomSampleDataCategory")
    assert has_titles == category_titles  # registerCustomSampleDataCategory first appears in 5.12
    if has_titles:
        assert upstream.SampleDataLogic.categoryTitle("DoseRadiomics") == "DoseRadiomics"
    assert Path(sources[0].thumbnailFileName).is_file()
    case = sources[0].customDownloader(sources[0])  # what the Sample Data button calls
    assert case["ct"].GetImageData() is not None and case["gtvSegmentId"]
