"""Build and install pyradiomics 3.1.0 from PyPI's source archive into the running environment.

Usage (the Makefile does this after the environment's requirements file):
    .venv-slicer-X/bin/python Testing/Environments/install_pyradiomics.py [--download-with .venv/bin/python]

Slicer gets pyradiomics from the SlicerRadiomics extension, which pins commit 146e3bd: v3.1.0 plus
two commits to the pyradiomics command line, which DoseRadiomics does not use. PyPI's 3.1.0 archive
holds v3.1.0's ``radiomics/`` package but cannot be built as published:

- its metadata says 3.0.1a1, so pip discards it when asked for ``pyradiomics==3.1.0`` (we fetch it by
  URL and hash instead);
- it lacks ``radiomics/src/cmatrices.h`` and ``cshape.h`` (its MANIFEST.in includes ``src/radiomics``,
  a path that does not exist), so the C extensions do not compile. The two headers are unchanged
  from v3.0.1 to v3.1.0 (``git diff v3.0.1 v3.1.0 -- radiomics/src`` is empty), and PyPI's 3.0.1
  archive has them: we take them from there;
- so that pip's records say what it is (``pip check`` compares them with our requirement
  ``pyradiomics>=3.0.1``), the unpacked tree's ``pyproject.toml`` gets ``version = "3.1.0"``, the
  version its own ``radiomics/_version.py`` reports.

pip fetches both archives by URL and hash. It must read each archive's metadata to do so, and
3.0.1's ``setup.py`` (versioneer 0.17) fails on Python 3.12, so the download can run in another
environment (``--download-with``; the Makefile uses ``.venv``, Python 3.11, numpy and versioneer
installed).

It compiles against the numpy already installed (``--no-build-isolation``), as SlicerRadiomics
does against Slicer's numpy. Both archives are checked against their sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

FILES = "https://files.pythonhosted.org/packages"
ARCHIVES = {
    "3.1.0": (f"{FILES}/03/c1/20fc2c50ab1e3304da36d866042a1905a2b05a1431ece35448ab6b4578f2/pyradiomics-3.1.0.tar.gz",
              "24722c962a6bbd09bc39c1c67dbffe92435f9692a421fabaae8a6b4511eb48e4"),
    "3.0.1": (f"{FILES}/1b/35/c7f7fb7affd302fd8107dcee6b6e7aaf3708b75ad69d5f9a3dfcadb73eaa/pyradiomics-3.0.1.tar.gz",
              "47c57f441d6cb7973fa3b2ea48d3948df78e3348e1c69e1e2ff19001601fc2f5"),
}
MISSING_HEADERS = ("radiomics/src/cmatrices.h", "radiomics/src/cshape.h")


def pip(python: str, *args: str) -> None:
    subprocess.run([python, "-m", "pip", *args], check=True)


def download(version: str, folder: Path, python: str) -> Path:
    """PyPI's archive of ``version`` through pip (its cache, its index settings), hash checked."""
    url, sha256 = ARCHIVES[version]
    pip(python, "download", "--quiet", "--no-deps", "--no-build-isolation", "--dest", str(folder),
        f"{url}#sha256={sha256}")
    path = folder / url.rsplit("/", 1)[1]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        sys.exit(f"{path.name}: sha256 {digest}, expected {sha256}")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--download-with", default=sys.executable, metavar="PYTHON",
                        help="the Python whose pip downloads the archives (default: this one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pyradiomics-") as tmp:
        tmp = Path(tmp)
        new, old = download("3.1.0", tmp, args.download_with), download("3.0.1", tmp, args.download_with)
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}   # no paths outside tmp
        with tarfile.open(new) as tar:
            tar.extractall(tmp / "src", **safe)
        tree = tmp / "src" / "pyradiomics-3.1.0"
        with tarfile.open(old) as tar:
            for name in MISSING_HEADERS:
                target = tree / name
                if target.exists():   # a fixed re-upload: use its own header
                    continue
                member = tar.extractfile(f"pyradiomics-3.0.1/{name}")
                target.write_bytes(member.read())
        meta = tree / "pyproject.toml"
        text = meta.read_text(encoding="utf-8")
        if 'version = "3.0.1a1"' not in text:
            sys.exit(f"{new.name}: its pyproject.toml no longer says 3.0.1a1; check this script")
        meta.write_text(text.replace('version = "3.0.1a1"', 'version = "3.1.0"'), encoding="utf-8")
        pip(sys.executable, "install", "--quiet", "--no-deps", "--no-build-isolation", str(tree))
    out = subprocess.run([sys.executable, "-c", "import radiomics; print(radiomics.__version__)"],
                         check=True, capture_output=True, text=True, cwd=tempfile.gettempdir())
    print(f"pyradiomics {out.stdout.strip()} (PyPI's 3.1.0 archive) installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
