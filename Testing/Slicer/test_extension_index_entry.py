"""The Extensions Index entry (DoseRadiomics.json) and the CMake metadata pass the index's checks that
run offline.

Two layers. First, the rules written out here, each naming where it comes from: the catalog entry
schema (Slicer ``Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json``) and the checks of
Slicer/ExtensionsIndex ``scripts/check_description_files.py`` (main at 07f1d1b2, 2026-08-07), which
its ``.github/workflows/extension-validation.yml`` runs on every submission. Second, when a clone of
Slicer/ExtensionsIndex is on this machine (``DOSERADIOMICS_EXTENSIONS_INDEX_GIT``), that script
itself, run on a copy of the files git would commit, with every check that needs no network. Two checks need the network and are not run: the GitHub topic ``3d-slicer-extension``
(``check_git_repository_topics``: set it on the GitHub repository) and that the icon and screenshot
URLs answer with an image (here: they name PNG files of this repository on its ``main`` branch).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.parse
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENTRY = REPO / "DoseRadiomics.json"
NAME = ENTRY.stem  # the extension name is the entry's file name
OWNER, REPOSITORY = "DoseRadiomics", "SlicerDoseRadiomics"
INDEX_GIT = Path(os.environ.get("DOSERADIOMICS_EXTENSIONS_INDEX_GIT", "/work/.mirror/Slicer+ExtensionsIndex/repo"))
INDEX_REF = "main"


def _entry() -> dict:
    return json.loads(ENTRY.read_text(encoding="utf-8"))


def _cmake() -> str:
    return (REPO / "CMakeLists.txt").read_text(encoding="utf-8")


def _cmake_value(text: str, variable: str) -> str:
    # The patterns of check_cmakelists_content.
    m = re.search(rf'set\s*\({variable}\s*"([^"]+)"[ ]*\)', text, re.IGNORECASE | re.MULTILINE)
    assert m, f"{variable} missing from CMakeLists.txt"
    return m.group(1)


# ----------------------------------------------------------------------------- our own checks

def test_entry_follows_the_catalog_entry_schema_v1_0_2():
    entry = _entry()
    # "required": ["$schema", "category", "scm_url"], "additionalProperties": false
    assert {"$schema", "category", "scm_url"} <= set(entry)
    properties = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
                  "build_dependencies": list, "dicom_support_rule": str, "build_subdirectory": str,
                  "enabled": bool, "tier": int}
    assert set(entry) <= set(properties), f"keys the schema does not allow: {set(entry) - set(properties)}"
    for key, kind in properties.items():
        if key in entry:
            assert isinstance(entry[key], kind) and not (kind is int and isinstance(entry[key], bool)), key
    assert entry["$schema"].split("#")[0] == ("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
                                              "slicer-extension-catalog-entry-schema-v1.0.2.json")
    assert entry.get("scm_type", "git") in ("git", "local")  # "enum"
    assert 1 <= entry.get("tier", 1) <= 5  # "minimum": 1, "maximum": 5
    assert all(isinstance(d, str) and d for d in entry.get("build_dependencies", []))  # "items": string


def test_entry_file_is_json_with_lf_line_endings():
    # check_json_file_format
    data = ENTRY.read_bytes()
    json.loads(data)
    assert b"\r" not in data


def test_extension_name_and_repository_name_follow_the_index_rules():
    entry = _entry()
    # check_extension_name: the extension name should not start with "Slicer"
    assert not NAME.lower().startswith("slicer")
    # check_git_repository_name: the repository name should start with "Slicer" (or these variations)
    url = entry["scm_url"].strip().strip("/")
    repo_name = os.path.splitext(urllib.parse.urlsplit(url).path.split("/")[-1])[0]
    assert repo_name.startswith(("Slicer", "Slicer-", "Slicer_", "SlicerExtension-", "SlicerExtension_"))
    assert urllib.parse.urlsplit(url).path.strip("/").split("/")[:2] == [OWNER, REPOSITORY + ".git"]
    # check_scm_url_syntax
    assert "://" in url and urllib.parse.urlsplit(url).scheme in ("git", "https")


def test_category_is_one_the_index_accepts():
    # check_category: ACCEPTED_EXTENSION_CATEGORIES holds "Radiotherapy" (SlicerRT's category).
    assert _entry()["category"] == "Radiotherapy"


def test_cmake_metadata_matches_the_entry():
    text, entry = _cmake(), _entry()
    # check_cmakelists_content: the project() name is the extension name.
    project = re.findall(r'project\s*\(\s*([^\s\)\n\r]+)', text, re.IGNORECASE | re.MULTILINE)
    assert project and project[0].strip("\"'") == NAME
    assert _cmake_value(text, "EXTENSION_CATEGORY") == entry["category"]
    assert _cmake_value(text, "EXTENSION_DEPENDS").split() == entry["build_dependencies"]
    assert _cmake_value(text, "EXTENSION_HOMEPAGE").startswith(f"https://github.com/{OWNER}/{REPOSITORY}")
    # Icon and screenshots: images of this repository, as raw URLs of its main branch.
    urls = [_cmake_value(text, "EXTENSION_ICONURL")] + _cmake_value(text, "EXTENSION_SCREENSHOTURLS").split()
    prefix = f"https://raw.githubusercontent.com/{OWNER}/{REPOSITORY}/main/"
    for url in urls:
        assert url.startswith(prefix), url
        path = REPO / url[len(prefix):]
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", url


def test_license_and_repository_size():
    # check_license_file, check_repository_size (100 MB of checked-out files)
    assert (REPO / "LICENSE").is_file()
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           capture_output=True, check=True).stdout
    total = sum((REPO / f).stat().st_size for f in files.decode().split("\0") if f and (REPO / f).is_file())
    assert total < 100 * 1024 * 1024, f"{total / 2**20:.1f} MB"


def test_dependencies_are_extensions_of_the_index():
    # check_dependencies: every build dependency is an entry of the index (SlicerRT.json and
    # SlicerRadiomics.json on main, 5.10 and 5.12 at the commit above).
    assert sorted(_entry()["build_dependencies"]) == ["SlicerRT", "SlicerRadiomics"]


def test_readme_says_which_releases_get_it_from_the_extension_manager():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Installing from the Extension Manager", 1)[1].split("\n### ", 1)[0]
    assert "5.8 or later from the Extension" not in text
    for needed in ("Preview", "5.12", "5.8", "5.10", "main", "Building it locally"):
        assert needed in section, needed


# ----------------------------------------------------------------------------- the index's own script

def _git(*args) -> bytes:
    return subprocess.run(["git", "-C", str(INDEX_GIT), *args], capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def index_script():
    try:
        source = _git("show", f"{INDEX_REF}:scripts/check_description_files.py").decode()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"no Slicer/ExtensionsIndex clone at {INDEX_GIT} (set DOSERADIOMICS_EXTENSIONS_INDEX_GIT)")
    # print_categories (a listing helper, not a check) uses Python 3.12 f-string syntax (the index's
    # CI runs 3.12); it is cut out so that the checks also load on 3.10 and 3.11.
    start, end = source.find("\ndef print_categories("), source.find("\ndef main(")
    if 0 < start < end:
        source = source[:start] + source[end:]
    namespace = {"__name__": "check_description_files"}
    exec(compile(source, "check_description_files.py", "exec"), namespace)  # noqa: S102 - upstream's checks
    return namespace


@pytest.fixture(scope="module")
def clean_export(tmp_path_factory):
    """The files git would commit (tracked and new, .gitignore respected: no venvs, caches or outputs),
    copied as the index's check clones the repository."""
    import shutil
    out = tmp_path_factory.mktemp("export")
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, out / name)
    return out


def test_the_index_script_passes_the_offline_checks(index_script, clean_export, monkeypatch):
    s = index_script
    metadata = s["parse_json"](str(ENTRY))

    def offline_image_url(url, url_type, extension_name, check_name):
        # validate_image_url downloads the image; offline, the URL must name a PNG of this repository.
        prefix = f"https://raw.githubusercontent.com/{OWNER}/{REPOSITORY}/main/"
        path = clean_export / url[len(prefix):] if url.startswith(prefix) else None
        if path is None or not path.is_file() or path.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
            raise s["ExtensionCheckError"](extension_name, check_name, f"{url_type} '{url}' is not a PNG of the repository")

    s["validate_image_url"] = offline_image_url
    checks = [(s["check_json_file_format"], {"extension_file_path": str(ENTRY)}),
              (s["check_extension_name"], {}), (s["check_category"], {}),
              (s["check_git_repository_name"], {}), (s["check_scm_url_syntax"], {}),
              (s["check_cmakelists_content"], {"cloned_repository_folder": str(clean_export)}),
              (s["check_repository_size"], {"cloned_repository_folder": str(clean_export)}),
              (s["check_license_file"], {"cloned_repository_folder": str(clean_export)})]
    for check, kwargs in checks:
        check(NAME, metadata, **kwargs)  # raises ExtensionCheckError with the index's message


@pytest.mark.parametrize("branch", ["main", "5.12"])
def test_the_index_script_finds_the_dependencies(index_script, tmp_path, monkeypatch, branch):
    names = _git("ls-tree", "--name-only", branch).decode().split()
    for dependency in _entry()["build_dependencies"]:
        assert f"{dependency}.json" in names, f"{dependency} is not in the index's {branch} branch"
        (tmp_path / f"{dependency}.json").write_bytes(_git("show", f"{branch}:{dependency}.json"))
    (tmp_path / ENTRY.name).write_bytes(ENTRY.read_bytes())
    index_script["check_dependencies"](str(tmp_path))  # raises ExtensionDependencyError
