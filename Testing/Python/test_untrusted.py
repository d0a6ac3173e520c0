"""Untrusted data: no code is ever loaded from data, input files are bounded, the report escapes data.

- The library and the Slicer module never call pickle (or dill, joblib, shelve, marshal), eval, exec,
  ``yaml.load`` without a safe loader, ``np.load(..., allow_pickle=True)``, ``torch.load`` or
  ``pandas.read_pickle``: checked on the syntax tree of every source file (comments and docstrings
  that mention them do not count), and the checker itself is shown to catch each of them.
- Model files and manifests larger than their limits are refused from their size alone.
- A report rendered from a model whose every string (feature and ROI names, clinical variables and
  their levels, notes, cohort table cells, library names...) carries ``<script>``, ``"onerror=`` or
  ``</td>`` has exactly the element structure of the clean report: no element or attribute came from
  data, and the payloads show as text.
"""

from __future__ import annotations

import ast
import html
import json
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from DoseRadiomicsLib import cli, manifest as manifest_module, modelfile
from DoseRadiomicsLib.errors import ManifestError, ModelFileError
from DoseRadiomicsLib.manifest import read_manifest
from DoseRadiomicsLib.modelfile import content_checksum, load_model, save_model
from DoseRadiomicsLib.training import train_models

from test_training import synthetic_cohort

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted((REPO / "DoseRadiomicsLib").rglob("*.py")) + sorted((REPO / "DoseRadiomics").rglob("*.py"))

UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
UNSAFE_NAMES = {"eval", "exec", "__import__"}
UNSAFE_ATTRIBUTES = {"unsafe_load", "full_load", "read_pickle", "to_pickle"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader"}


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return _dotted(node.value) + "." + node.attr
    return ""


def unsafe_calls(source: str, filename: str = "<source>") -> list:
    """Lines of ``source`` that load code from data (see the module docstring)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            found.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            last = name.rsplit(".", 1)[-1]
            keywords = {k.arg: k.value for k in node.keywords}
            if name in UNSAFE_NAMES or last in UNSAFE_ATTRIBUTES:
                found.append(f"{where}: {name}(...)")
            elif name.endswith("torch.load") or name == "torch.load":
                found.append(f"{where}: {name}(...)")
            elif last == "load" and name.split(".")[0] in ("yaml", "ruamel"):
                loader = keywords.get("Loader", node.args[1] if len(node.args) > 1 else None)
                if loader is None or _dotted(loader).rsplit(".", 1)[-1] not in SAFE_YAML_LOADERS:
                    found.append(f"{where}: {name}(...) without a safe loader")
            elif last == "load" and name.split(".")[0] in ("np", "numpy"):
                allow = keywords.get("allow_pickle")
                if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                    found.append(f"{where}: {name}(..., allow_pickle=...)")
    return found


def test_the_checker_catches_each_unsafe_pattern():
    bad = {
        "import pickle": 1, "from joblib import load": 1, "import dill as d": 1,
        "eval('1+1')": 1, "exec(code)": 1, "__import__('os')": 1,
        "yaml.load(text)": 1, "yaml.load(text, Loader=yaml.FullLoader)": 1, "yaml.unsafe_load(t)": 1,
        "np.load(p, allow_pickle=True)": 1, "numpy.load(p, allow_pickle=flag)": 1,
        "torch.load(p)": 1, "pd.read_pickle(p)": 1,
    }
    for code, n in bad.items():
        assert len(unsafe_calls(code)) == n, code
    good = ["yaml.safe_load(text)", "yaml.load(text, Loader=yaml.SafeLoader)", "np.load(p)",
            "np.load(p, allow_pickle=False)", "json.loads(t)", "re.compile('x')", "model.eval_score(1)",
            "'''no pickle, no eval('x') here'''", "# eval(x)"]
    for code in good:
        assert unsafe_calls(code) == [], code


def test_no_code_is_loaded_from_data_anywhere_in_the_library():
    assert len(SOURCES) > 20
    found = [hit for path in SOURCES for hit in unsafe_calls(path.read_text(encoding="utf-8"),
                                                              str(path.relative_to(REPO)))]
    assert not found, "code loaded from data:\n" + "\n".join(found)


# --------------------------------------------------------------------------------------- sizes

def _sparse(path: Path, head: bytes, size: int) -> Path:
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)
    return path


def test_model_and_manifest_sizes_are_bounded(tmp_path):
    assert 1 << 20 <= modelfile.MAX_BYTES <= 100 << 20
    assert 1 << 20 <= manifest_module.MAX_MANIFEST_BYTES <= 200 << 20
    t0 = time.perf_counter()
    with pytest.raises(ModelFileError, match="MB limit") as e:
        load_model(_sparse(tmp_path / "big.json", b'{"schema": "doseradiomics-model"', modelfile.MAX_BYTES + 1))
    assert e.value.path.endswith("big.json") and e.value.hint
    with pytest.raises(ManifestError, match="more than the") as e:
        read_manifest(_sparse(tmp_path / "big.csv", b"patient_id,ct,dose,gtv\n",
                              manifest_module.MAX_MANIFEST_BYTES + 1))
    assert e.value.hint
    assert time.perf_counter() - t0 < 2.0  # refused from the size, not after reading
    # just under the limits they are read (and refused for their content)
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(_sparse(tmp_path / "edge.json", b'{"a": "', modelfile.MAX_BYTES))


# -------------------------------------------------------------------------------------- report

PAYLOADS = ['<script>alert(1)</script>', '"onerror="alert(2)', '</td></tr></table><img src=x onerror=alert(3)>',
            "' onmouseover='alert(4)"]
STRUCTURAL = {"sources", "kind", "schema", "checksum", "schema_version"}


def _poison(value, key=None):
    """Append a payload to every string that came from data (the same string, the same payload, so
    names that refer to each other still match); dictionary keys that are data get one as well."""
    if key in STRUCTURAL:
        return value
    if isinstance(value, str):
        return value + PAYLOADS[sum(map(ord, value)) % len(PAYLOADS)]
    if isinstance(value, list):
        return [_poison(v, key) for v in value]
    if isinstance(value, dict):
        data_keys = key in ("clinical_coding", "library_versions", "level_labels", "imputed")
        return {(_poison(k) if data_keys else k): _poison(v, k) for k, v in value.items()}
    return value


class _Structure(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.events, self.attributes, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.events.append(("start", tag))
        self.attributes += [(tag, name, value) for name, value in attrs]

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        self.events.append(("end", tag))

    def handle_data(self, data):
        self.text.append(data)


def _parse(text: str) -> _Structure:
    p = _Structure()
    p.feed(text)
    p.close()
    return p


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("untrusted report")
    features, manifest, truth = synthetic_cohort(n=120, n_noise=10, seed=6)
    # clinical levels from the manifest carry markup too, before training sees them
    manifest.df["histology"] = manifest.df["histology"].replace("other", "<b onclick=x>other</b>")
    clean = folder / "clean.json"
    save_model(train_models(features, manifest, seed=0, ground_truth=truth, repeated_splits=3), clean)
    content = json.loads(clean.read_text())
    content["notes"] = list(content.get("notes") or []) + ["patient P007 excluded"]  # a patient id in a note
    content["checksum"] = content_checksum(content)
    clean.write_text(json.dumps(content))
    evil = _poison({k: v for k, v in content.items() if k != "checksum"})
    evil["checksum"] = content_checksum(evil)
    evil_path = folder / "evil.json"
    evil_path.write_text(json.dumps(evil))
    out = {}
    for name, path in (("clean", clean), ("evil", evil_path)):
        html_path = folder / f"{name}.html"
        assert cli.main(["report", "--model", str(path), "--out", str(html_path)]) == 0
        out[name] = html_path.read_text(encoding="utf-8")
    return out, load_model(evil_path)


def test_report_from_poisoned_model_has_the_clean_structure(reports):
    texts, evil_model = reports
    # the payloads did reach the model's feature, ROI and clinical names
    feature = evil_model["models"]["RM_GTV"]["features"][0]
    assert any(p in feature for p in PAYLOADS)
    assert any(any(p in v for p in PAYLOADS) for v in evil_model["settings"]["roi_models"].values())
    clean, evil = _parse(texts["clean"]), _parse(texts["evil"])
    assert evil.events == clean.events  # not one element added, removed or closed by data
    assert not [a for a in evil.attributes if a[1].startswith("on")]
    assert not [e for e in evil.events if e[1] == "script"]
    assert [(t, n) for t, n, _ in evil.attributes] == [(t, n) for t, n, _ in clean.attributes]
    text = "".join(evil.text)
    for payload in PAYLOADS + ["<b onclick=x>other</b>", _poison("patient P007 excluded")]:
        assert payload in text, payload  # shown as text
    assert html.escape(feature) in texts["evil"]
