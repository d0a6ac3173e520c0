"""The count for the closing note: every bad-input case the project has, through the public commands.

- the listed corpus (make_corpus.py): each case through its command (extract, cohort-extract, train,
  predict, report), as Testing/Python/test_bad_inputs.py runs them;
- the generated cases: the hypothesis strategies of Testing/Python/test_property_commands.py, at the
  same bounded counts, derandomised (images, RTDOSE headers, features CSVs and model files through
  extract / predict, contours through the GTV reader, manifests through cohort-extract).

A case is *handled* when the command exits 0 with valid outputs (one features row and its record; a
probability in [0, 1]) or exits 1 with exactly one line ``doseradiomics CMD: error: ...`` and no
traceback, leaving no temporary file and no output; a listed bad case must exit 1 with its documented
message, a listed valid one exit 0. A cohort run that exits 0 must account for every patient of its
manifest (features.csv or failures.csv: else *lost*), and each patient in features.csv must carry the
fingerprint of its manifest row's current files and settings, hashed afresh (else *stale*: the output
folder is shared between the generated manifests, which reuse ids with other files, as a rerun does).

    python Testing/BadInputs/run_all.py            # prints "N cases tried, N handled, 0 lost/stale"

Runs in this process; about 10 minutes on 2 cores. Exit 0 when every case is handled.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE), str(REPO / "Testing" / "Python")]

import pandas as pd  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from DoseRadiomicsLib import cli  # noqa: E402
from DoseRadiomicsLib.errors import DoseRadiomicsError  # noqa: E402

TALLY: Counter = Counter()        # (source, outcome) -> cases
PROBLEMS: list = []


def _note(source: str, outcome: str, problem: str | None = None) -> None:
    TALLY[(source, outcome)] += 1
    if problem:
        PROBLEMS.append(f"{source}: {problem}")


def run_command(argv: list, out: Path | None) -> tuple:
    """(exit code, stderr, problem or None) of ``doseradiomics ARGV``, with the one-line rule checked."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = cli.main(argv)
        except BaseException as exc:  # noqa: BLE001 - anything escaping main is a defect to count
            return -1, f"{type(exc).__name__}: {exc}", f"{argv[0]} raised {type(exc).__name__}: {exc}"
    text = err.getvalue()
    if "Traceback" in text:
        return rc, text, f"{argv[0]}: a traceback"
    if out is not None and out.exists():
        leftovers = [p.name for p in out.rglob(".*.tmp")] if out.is_dir() else []
        if leftovers:
            return rc, text, f"{argv[0]}: temporary files left {leftovers}"
    if rc == 1:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) != 1 or not lines[0].startswith(f"doseradiomics {argv[0]}: error: "):
            return rc, text, f"{argv[0]}: not one error line: {lines}"
    elif rc != 0:
        return rc, text, f"{argv[0]}: exit code {rc}"
    return rc, text, None


def _extract_outputs_valid(out: Path) -> str | None:
    try:
        df = pd.read_csv(out / "features.csv")
        json.loads((out / "extraction.json").read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001
        return f"outputs unreadable: {exc}"
    if len(df) != 1:
        return f"features.csv has {len(df)} rows"
    if (df.select_dtypes("number").abs() == math.inf).any().any():
        return "an infinite feature"
    return None


def _refused_cleanly(out: Path) -> str | None:
    if (out / "features.csv").exists() or (out / "prediction.json").exists():
        return "refused but an output was written"
    return None


# ----------------------------------------------------------------------------- the listed corpus

def corpus_cases(root: Path, shared: Path) -> None:
    from make_corpus import make_corpus
    from test_bad_inputs import _cli_args
    from test_training import synthetic_cohort

    from DoseRadiomicsLib.modelfile import save_model
    from DoseRadiomicsLib.training import train_models

    features, manifest, truth = synthetic_cohort(n=100, n_noise=8, seed=4)
    model = root / "valid_model.json"
    save_model(train_models(features, manifest, seed=1, ground_truth=truth, repeated_splits=3), model)
    for case in make_corpus(root, shared, valid_model=model):
        work = Path(tempfile.mkdtemp(dir=root, prefix="case-"))
        argv = _cli_args(case, work)
        out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else None
        rc, err, problem = run_command(argv, out)
        if problem is None and case.expect == "ok":
            if rc != 0:
                problem = f"{case.name}: a valid input refused: {err.strip()}"
            elif argv[0] == "extract":
                problem = _extract_outputs_valid(out)
        elif problem is None:
            if rc != 1:
                problem = f"{case.name}: a bad input accepted (exit {rc})"
            elif not re.search(case.match, err, re.I | re.S):
                problem = f"{case.name}: refused, but not for /{case.match}/: {err.strip()}"
            elif argv[0] == "extract":
                problem = _refused_cleanly(out)
        _note("listed corpus", "handled" if problem is None else "NOT handled",
              problem and f"{case.name}: {problem}")


# ----------------------------------------------------------------------------- the generated cases

def _settings(n):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def generated_cases(root: Path, shared: Path) -> None:
    import numpy as np
    import SimpleITK as sitk
    import test_property_commands as tpc
    from make_corpus import _rewrite_dicom, _rtss_edit_roi, write_dicom_base, write_tiny_patient
    from test_training import synthetic_cohort

    from DoseRadiomicsLib.cohort import _read_patient_json, input_fingerprint, patient_json_path
    from DoseRadiomicsLib.manifest import read_manifest
    from DoseRadiomicsLib.modelfile import save_model
    from DoseRadiomicsLib.pipeline import ExtractionOptions, options_settings_hash
    from DoseRadiomicsLib.readers import read_ct, read_dose, read_gtv
    from DoseRadiomicsLib.training import train_models

    counter = {"n": 0}

    def fresh(prefix):
        counter["n"] += 1
        d = root / f"{prefix}-{counter['n']:04d}"
        d.mkdir()
        return d

    def command_case(source, argv, out, valid=None):
        rc, err, problem = run_command(argv, out)
        if problem is None and rc == 0 and valid is not None:
            problem = valid()
        if problem is None and rc == 1 and out is not None:
            if out.is_dir():
                problem = _refused_cleanly(out)
            elif out.exists():
                problem = "refused but an output was written"
        _note(source, "handled" if problem is None else "NOT handled", problem)
        return rc

    # images through extract
    @_settings(15)
    @given(p=tpc.patients())
    def images(p):
        d = fresh("img")
        try:
            paths = tpc._write(d / "in", p)
        except RuntimeError:      # SimpleITK will not write it: not an input anyone can have
            return
        out = d / "out"
        argv = ["extract", "--ct", str(paths["ct"]), "--dose", str(paths["dose"]), "--gtv", str(paths["gtv"]),
                "--quiet", "--no-png", "--config", "2d", "--out", str(out)]
        if p["label"] is not None:
            argv += ["--gtv-label", str(p["label"])]

        def valid():
            if p["direction"] in ("sheared", "scaled"):
                return f"a {p['direction']} direction accepted"
            return _extract_outputs_valid(out)
        command_case("generated images (extract)", argv, out, valid)

    # contours through the GTV reader
    base = write_dicom_base(root / "dicom-base", shared)
    ct = read_ct(base["ct"])

    @_settings(30)
    @given(edit=tpc.contour_edits())
    def contours(edit):
        mutate = tpc.contour_mutation(edit)
        rs = _rewrite_dicom(base["gtv"], fresh("rs") / "rs.dcm", lambda ds: _rtss_edit_roi(ds, "Tumor Bed", mutate))
        try:
            mask = read_gtv(rs, ct, name="Tumor Bed")
        except DoseRadiomicsError as exc:
            _note("generated contours (GTV reader)", "handled" if exc.path and str(rs) in str(exc) else "NOT handled",
                  None if exc.path and str(rs) in str(exc) else f"the file is not named: {exc}")
            return
        except Exception as exc:  # noqa: BLE001
            _note("generated contours (GTV reader)", "NOT handled", f"{type(exc).__name__}: {exc}")
            return
        ok = bool(sitk.GetArrayViewFromImage(mask).any())
        _note("generated contours (GTV reader)", "handled" if ok else "NOT handled", None if ok else "an empty mask")

    # RTDOSE headers through the dose reader, and each readable kind through extract
    extracted = set()

    @_settings(25)
    @given(edits=tpc.rtdose_edits())
    def rtdose(edits):
        d = fresh("rtdose")
        dose = _rewrite_dicom(base["dose"], d / "rtdose.dcm", lambda ds: tpc._edit_rtdose(ds, edits))
        try:
            loaded = read_dose(dose)
        except DoseRadiomicsError as exc:
            named = str(dose) in str(exc)
            _note("generated RTDOSE headers", "handled" if named else "NOT handled",
                  None if named else f"the file is not named: {exc}")
            return
        except Exception as exc:  # noqa: BLE001
            _note("generated RTDOSE headers", "NOT handled", f"{type(exc).__name__}: {exc}")
            return
        values = sitk.GetArrayViewFromImage(loaded.image)
        plausible = bool(np.isfinite(values).all() and 0 < values.max() <= 200)
        key = tuple(sorted(t for t, _ in edits))
        if not plausible or key in extracted:
            _note("generated RTDOSE headers", "handled" if plausible else "NOT handled",
                  None if plausible else "an implausible dose read")
            return
        extracted.add(key)
        out = d / "out"
        command_case("generated RTDOSE headers", ["extract", "--ct", str(base["ct"]), "--dose", str(dose), "--gtv",
                                                  str(base["gtv"]), "--gtv-name", "Tumor Bed", "--quiet", "--no-png",
                                                  "--config", "2d", "--out", str(out)], out,
                     lambda: _extract_outputs_valid(out))

    # features CSVs and model files through predict
    model_dir = root / "model"
    model_dir.mkdir()
    features, manifest, _ = synthetic_cohort(n=100, n_noise=8, seed=4)
    model = model_dir / "model.json"
    save_model(train_models(features, manifest, seed=1), model)
    features.to_csv(model_dir / "features.csv", index=False)

    def prediction_valid(out):
        def check():
            probs = json.loads(out.read_text())["probabilities"]
            bad = [p for p in probs.values() if not (isinstance(p, float) and 0 <= p <= 1)]
            return f"probabilities outside [0, 1]: {bad}" if bad else None
        return check

    @_settings(40)
    @given(data=st.data())
    def features_csvs(data):
        d = fresh("features")
        f = d / "features.csv"
        f.write_bytes(data.draw(tpc.features_files(features)))
        out = d / "prediction.json"
        argv = ["predict", "--model", str(model), "--features", str(f), "--out", str(out)]
        if data.draw(st.booleans()):
            argv += ["--patient", str(features["patient_id"].iloc[0])]
        command_case("generated features CSVs (predict)", argv, out, prediction_valid(out))

    @_settings(40)
    @given(edits=tpc.model_edits())
    def models(edits):
        content = tpc.apply_model_edits(json.loads(model.read_text()), edits)
        d = fresh("model")
        f = d / "model.json"
        try:
            save_model(content, f)
        except DoseRadiomicsError:
            _note("generated model files (predict)", "handled")     # refused when saved: never reaches a user
            return
        out = d / "prediction.json"
        command_case("generated model files (predict)",
                     ["predict", "--model", str(f), "--features", str(model_dir / "features.csv"), "--patient",
                      str(features["patient_id"].iloc[0]), "--clinical", "hb=120", "t_stage=T3", "--out", str(out)],
                     out, prediction_valid(out))

    # manifests through cohort-extract, into one shared output folder (a rerun each time)
    cohort_dir = root / "manifests"
    good = write_tiny_patient(cohort_dir / "good", seed=6)
    (cohort_dir / "a-folder").mkdir()
    (cohort_dir / "garbage.nrrd").write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 99999 99999 99999\n\n")
    settings_hash = options_settings_hash(ExtractionOptions())
    cohort_out = cohort_dir / "out"

    @_settings(20)
    @given(data=st.data())
    def manifests(data):
        m = cohort_dir / "manifest.csv"
        m.write_text(data.draw(tpc.manifests(cohort_dir, good)), encoding="utf-8")

        def accounted():
            patients = read_manifest(m).patients()
            feats = pd.read_csv(cohort_out / "features.csv", dtype={"patient_id": str})
            fails = pd.read_csv(cohort_out / "failures.csv", dtype={"patient_id": str}, keep_default_na=False)
            ids = [p.patient_id for p in patients]
            if sorted(list(feats["patient_id"]) + list(fails["patient_id"])) != sorted(ids):
                TALLY[("cohort patients", "lost")] += 1
                return f"lost: manifest {ids}, features {list(feats['patient_id'])}, failures {list(fails['patient_id'])}"
            for p in patients:
                if p.patient_id in set(feats["patient_id"]):
                    doc = _read_patient_json(patient_json_path(cohort_out, p.patient_id))
                    fresh_fp, _ = input_fingerprint(p, settings_hash)     # hashed afresh, no stored digest
                    if not doc or doc.get("fingerprint") != fresh_fp:
                        TALLY[("cohort patients", "stale")] += 1
                        return f"stale: {p.patient_id} in features.csv was extracted from other inputs"
            TALLY[("cohort patients", "accounted for")] += len(ids)
            return None
        command_case("generated manifests (cohort-extract)",
                     ["cohort-extract", "--manifest", str(m), "--out", str(cohort_out), "--workers", "1", "--quiet"],
                     None, accounted)

    for name, run in (("images", images), ("contours", contours), ("RTDOSE headers", rtdose),
                      ("features CSVs", features_csvs), ("model files", models), ("manifests", manifests)):
        t0 = time.perf_counter()
        run()
        print(f"  generated {name}: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


def main() -> int:
    shared = Path(os.environ.get("DOSERADIOMICS_SHARED_DATA", REPO.parents[1] / "shared" / "data"))
    if not (shared / "dicompyler_breast_rt").is_dir():
        shared = Path("/work/shared/data")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="doseradiomics-badinputs-") as tmp:
        root = Path(tmp)
        (root / "corpus").mkdir()
        (root / "generated").mkdir()
        corpus_cases(root / "corpus", shared)
        print(f"  listed corpus: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        generated_cases(root / "generated", shared)
    sources = sorted({s for s, _ in TALLY if s != "cohort patients"})
    for s in sources:
        print(f"{s}: {TALLY[(s, 'handled')] + TALLY[(s, 'NOT handled')]} tried, {TALLY[(s, 'handled')]} handled")
    tried = sum(v for (s, o), v in TALLY.items() if s != "cohort patients")
    handled = sum(v for (s, o), v in TALLY.items() if s != "cohort patients" and o == "handled")
    lost, stale = TALLY[("cohort patients", "lost")], TALLY[("cohort patients", "stale")]
    print(f"cohort-extract patients accounted for: {TALLY[('cohort patients', 'accounted for')]}")
    for p in PROBLEMS:
        print("  NOT handled:", p)
    print(f"{tried} cases tried, {handled} handled (exit 0 with valid outputs, or exit 1 with one error line and "
          f"no traceback), {lost + stale} lost/stale ({lost} lost, {stale} stale) in "
          f"{time.perf_counter() - t0:.0f} s")
    return 0 if handled == tried and not lost + stale else 1


if __name__ == "__main__":
    sys.exit(main())
