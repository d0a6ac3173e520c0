"""Browser tests: a real headless Chromium (Debian's, installed by install_chromium.sh from make test).

Chromium missing is a failure (CI installs it), unless DOSERADIOMICS_NO_BROWSER=1 says this machine
has none: then the tests skip and say so.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "Python"))  # the synthetic cohorts of the library tests


@pytest.fixture(scope="session")
def chromium():
    from cdp import find_chromium
    path = find_chromium()
    if path:
        return path
    if os.environ.get("DOSERADIOMICS_NO_BROWSER") == "1":
        pytest.skip("DOSERADIOMICS_NO_BROWSER=1: no Chromium on this machine, the reports are not checked "
                    "in a browser")
    pytest.fail("chromium is not installed: run Testing/Browser/install_chromium.sh (make test does), or set "
                "DOSERADIOMICS_NO_BROWSER=1 to skip the browser tests on this machine")
