"""Rewrite the library and shared-resource file lists in DoseRadiomics/CMakeLists.txt.

Run after adding a file to DoseRadiomicsLib/ or to a packaged Resources/ folder:

    python DoseRadiomics/update_cmake_lists.py

Testing/Slicer/test_slicer_static.py fails when a file is missing from the lists.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CMAKE = REPO / "DoseRadiomics" / "CMakeLists.txt"
# Shared resources the library reads at run time (relative to DoseRadiomicsLib's parent).
PACKAGED_RESOURCE_DIRS = ("Resources/Parameters", "Resources/ColourTables", "Resources/SampleData",
                          "Resources/DemoModel")


def library_files() -> list:
    return sorted(p.relative_to(REPO).as_posix() for p in (REPO / "DoseRadiomicsLib").rglob("*.py")
                  if "__pycache__" not in p.parts)


def resource_files() -> list:
    out = []
    for d in PACKAGED_RESOURCE_DIRS:
        folder = REPO / d
        if folder.is_dir():
            out += [p.relative_to(REPO).as_posix() for p in folder.rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts]
    return sorted(out)


def _replace(text: str, variable: str, entries: list) -> str:
    block = f"set({variable}\n" + "".join(f"  {e}\n" for e in entries) + "  )"
    new, n = re.subn(rf"set\({variable}\n.*?\n  \)", block, text, flags=re.S)
    if n != 1:
        raise SystemExit(f"{CMAKE}: no single set({variable} ...) block to update")
    return new


def main() -> int:
    text = CMAKE.read_text()
    text = _replace(text, "DoseRadiomicsLib_PYTHON_SCRIPTS", library_files())
    text = _replace(text, "DoseRadiomicsLib_PYTHON_RESOURCES", resource_files())
    CMAKE.write_text(text)
    print(f"updated {CMAKE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
