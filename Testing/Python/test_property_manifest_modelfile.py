"""Property tests: whatever the bytes, the manifest reader raises only ManifestError and the model
loader only ModelFileError (or they accept the file); nothing else ever escapes.

Inputs: random bytes, random CSV text (required and clinical columns with hostile cells: NUL,
quotes, delimiters, line breaks, non-ASCII, numbers, NaN spellings, paths), random JSON values,
random JSON with the model file's schema fields and a correct checksum (so validation runs to the
end), and random mutations of valid files. A model the loader accepts must also predict without an
undocumented exception. Hypothesis is derandomised with bounded example counts, so the run is
reproducible and takes seconds; the counts are printed.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from DoseRadiomicsLib.errors import DoseRadiomicsError, ManifestError, ModelFileError
from DoseRadiomicsLib.manifest import read_manifest
from DoseRadiomicsLib.modelfile import SCHEMA, content_checksum, load_model, save_model
from DoseRadiomicsLib.prediction import predict_from_features
from DoseRadiomicsLib.training import train_models

from test_training import synthetic_cohort

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
EXAMPLES: Counter = Counter()

COLUMNS = ["patient_id", "ct", "dose", "gtv", "gtv_name", "gtv_label", "dose_unit", "age", "sex", "kps", "hb",
           "smoking", "t_stage", "outcome", "response", "pfs_months", "pfs_event", "os_months", "os_event",
           "split", "centre", "Patient ID", "CT", "other", ""]
HOSTILE = ["", "NA", "nan", "NaN", "inf", "-inf", "1e999", "0", "1", "1.0", "-3", "2.5", "yes", "no", "M",
           "female", "T3", "CR", "PD", "train", "val", "Gy", "cGy", "~", "~nobody/x", "../x", "/", "\x00",
           "a\x00b", '"', '""', "a,b", "a;b", "a\tb", "a\nb", "\r", "\x1c", "\u2028", "ü", "日本", " 1 ", "1_000",
           "P1", "p1", ".hidden", "x" * 300, "y" * 5000, "-", "\u2013", "<script>", "=cmd|' /C calc'!A0"]
CELLS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(HOSTILE),
    st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


def _csv_text(header, rows, delimiter):
    def cell(c):
        if any(ch in c for ch in (delimiter, '"', "\n", "\r")):
            return '"' + c.replace('"', '""') + '"'
        return c
    return "\n".join(delimiter.join(cell(c) for c in r) for r in [header, *rows]) + "\n"


@st.composite
def csv_manifests(draw):
    header = draw(st.lists(st.sampled_from(COLUMNS), min_size=0, max_size=10))
    if draw(st.booleans()):
        header = ["patient_id", "ct", "dose", "gtv"] + header
    n = len(header)
    # mostly well-formed rows (so the cells reach validation), sometimes ragged ones
    width = st.just(n) if draw(st.integers(0, 3)) else st.integers(max(0, n - 1), n + 1)
    rows = draw(st.lists(width.flatmap(lambda w: st.lists(CELLS, min_size=w, max_size=w)), max_size=5))
    return _csv_text(header, rows, draw(st.sampled_from([",", ";", "\t"])))


VALID_MANIFEST = _csv_text(
    ["patient_id", "ct", "dose", "gtv", "gtv_label", "dose_unit", "age", "sex", "hb", "smoking", "t_stage",
     "outcome", "response", "pfs_months", "pfs_event", "split"],
    [["P1", "a/ct.nrrd", "a/dose.nrrd", "a/gtv.nrrd", "1", "Gy", "61", "M", "118", "yes", "T3", "1", "PD", "10.5",
      "1", "train"],
     ["P2", "b/ct.nrrd", "b/dose.nrrd", "b/gtv.nrrd", "2", "cGy", "NA", "female", "130", "no", "T1", "0", "CR",
      "24", "0", "validation"]], ",")


@st.composite
def mutated_text(draw, text):
    out = list(text)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "duplicate_line", "drop_line"]))
        if op in ("delete", "replace") and out:
            i = draw(st.integers(0, len(out) - 1))
            if op == "delete":
                del out[i]
            else:
                out[i] = draw(st.characters())
        elif op == "insert":
            out.insert(draw(st.integers(0, len(out))), draw(st.sampled_from([",", ";", "\t", "\n", '"', "\x00",
                                                                               "é", "-", " ", "9"])))
        else:
            lines = "".join(out).split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            if op == "duplicate_line":
                lines.insert(i, lines[i])
            else:
                del lines[i]
            out = list("\n".join(lines))
    return "".join(out)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("property")


def _read_manifest_only_manifest_error(path: Path, what: str):
    EXAMPLES[what] += 1
    try:
        manifest = read_manifest(path)
    except ManifestError:
        return
    # accepted: using it must not fail either
    manifest.patients()
    manifest.missing_files()
    try:
        manifest.check_files()
    except ManifestError:
        pass


@SETTINGS
@given(data=st.binary(max_size=600))
def test_manifest_random_bytes(folder, data):
    path = folder / "bytes.csv"
    path.write_bytes(data)
    _read_manifest_only_manifest_error(path, "manifest: random bytes")


@SETTINGS
@given(text=csv_manifests())
def test_manifest_random_csv(folder, text):
    path = folder / "random.csv"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _read_manifest_only_manifest_error(path, "manifest: random CSV")


@SETTINGS
@given(text=mutated_text(VALID_MANIFEST), suffix=st.sampled_from([".csv", ".tsv", ".txt"]))
def test_manifest_mutations_of_a_valid_file(folder, text, suffix):
    assert read_manifest(_write(folder / "valid.csv", VALID_MANIFEST)).patient_ids == ["P1", "P2"]
    path = folder / f"mutated{suffix}"
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    _read_manifest_only_manifest_error(path, "manifest: mutations of a valid file")


VALID_ROWS = [r.split(",") for r in VALID_MANIFEST.strip().split("\n")]


def test_manifest_every_hostile_value_in_every_cell(folder):
    """Exhaustive: each hostile value in each column of a valid two-patient manifest."""
    path = folder / "cell.csv"
    for column in range(len(VALID_ROWS[0])):
        for cell in HOSTILE:
            rows = [list(r) for r in VALID_ROWS]
            rows[2][column] = cell
            path.write_text(_csv_text(rows[0], rows[1:], ","), encoding="utf-8")
            _read_manifest_only_manifest_error(path, "manifest: each hostile value in each cell")


@SETTINGS
@given(row=st.integers(1, len(VALID_ROWS) - 1), column=st.integers(0, len(VALID_ROWS[0]) - 1), cell=CELLS)
def test_manifest_valid_file_with_one_hostile_cell(folder, row, column, cell):
    rows = [list(r) for r in VALID_ROWS]
    rows[row][column] = cell
    path = folder / "one_cell.csv"
    path.write_text(_csv_text(rows[0], rows[1:], ","), encoding="utf-8", errors="surrogatepass")
    _read_manifest_only_manifest_error(path, "manifest: one hostile cell in a valid file")


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ models

class _Valid:
    """A valid model file's text and a features row for it (kept out of Hypothesis' reports)."""

    def __init__(self, text):
        self.text = text
        content = json.loads(text)
        self.features = {f: 1.0 for m in content["models"].values()
                         for f, s in zip(m["features"], m["sources"]) if s == "feature"}

    def __repr__(self):
        return "<valid model>"


@pytest.fixture(scope="module")
def valid_model(folder):
    features, manifest, truth = synthetic_cohort(n=100, n_noise=8, seed=4)
    path = folder / "valid_model.json"
    save_model(train_models(features, manifest, seed=1, ground_truth=truth, repeated_splits=3), path)
    return _Valid(path.read_text())


def _load_only_model_error(path: Path, what: str, features=None):
    EXAMPLES[what] += 1
    try:
        model = load_model(path)
    except ModelFileError:
        return
    # accepted: applying it must end well or in a documented error
    try:
        predict_from_features(model, features or {}, {"hb": "120", "t_stage": "T3", "sex": "M"})
    except DoseRadiomicsError:
        pass


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=8),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                                     max_size=4),
                    max_leaves=20)


@SETTINGS
@given(data=st.binary(max_size=600))
def test_model_random_bytes(folder, data):
    path = folder / "bytes.json"
    path.write_bytes(data)
    _load_only_model_error(path, "model: random bytes")


@SETTINGS
@given(value=JSON)
def test_model_random_json(folder, value):
    _load_only_model_error(_write(folder / "random.json", json.dumps(value)), "model: random JSON")


@SETTINGS
@given(body=st.dictionaries(st.sampled_from(["models", "clinical_coding", "risk", "extraction", "cohort",
                                             "library_versions", "model_order", "settings"]), JSON, max_size=8),
       version=st.one_of(st.just(1), JSON))
def test_model_random_json_with_schema_and_checksum(folder, body, version):
    content = {**body, "schema": SCHEMA, "schema_version": version}
    content["checksum"] = content_checksum(content)
    _load_only_model_error(_write(folder / "schema.json", json.dumps(content)),
                           "model: random JSON with schema and checksum")


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:6]):
            yield from _paths(v, prefix + (i,))


@SETTINGS
@given(data=st.data())
def test_model_mutations_of_a_valid_file(folder, valid_model, data):
    model, features = json.loads(valid_model.text), valid_model.features
    # where to mutate: mostly the parts prediction reads (models, coding, risk, extraction)
    top = data.draw(st.sampled_from(["models", "models", "models", "clinical_coding", "clinical_coding", "risk",
                                     "extraction", "schema_version", "cohort", "library_versions"]))
    paths = [p for p in _paths(model[top], (top,))]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        try:  # an earlier mutation may have removed or replaced part of this path
            parent = model
            for key in path[:-1]:
                parent = parent[key]
            if data.draw(st.booleans()):
                del parent[path[-1]]
            else:
                parent[path[-1]] = data.draw(JSON)
        except (KeyError, IndexError, TypeError):
            continue
    model["checksum"] = content_checksum(model)
    _load_only_model_error(_write(folder / "mutated.json", json.dumps(model)), "model: mutations of a valid file",
                           features=features)


def test_zz_examples_run():
    """Not a property: prints how many examples each property ran (for the issue's closing note)."""
    print("\nproperty-test examples run: " + ", ".join(f"{k}: {v}" for k, v in sorted(EXAMPLES.items()))
          + f"; total {sum(EXAMPLES.values())}")
    assert sum(EXAMPLES.values()) >= 500 or not EXAMPLES
