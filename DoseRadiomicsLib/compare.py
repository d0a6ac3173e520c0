"""2D vs 2.5D vs 3D on one cohort: ``doseradiomics compare``.

The paper's Discussion leaves open "the differences among 2D, 3D, or even multiple dosiomics
characteristic sections". ``compare`` answers it on a user's cohort: the features of each section
(``cohort-extract --section largest``, ``largest:2``, ``volume``: one folder each) are trained with the
same method (:func:`training.train_models`) on the SAME development/validation split, and the six
models' validation AUCs are reported side by side with paired DeLong tests between sections, model by
model (:func:`stats.roc.delong_test`: the same validation patients scored by two sections' models).

The same split: patients are those with an outcome and a feature row in every section (a patient
whose extraction failed in one section is left out of all, and named); the split is the manifest's
``split`` column when complete, else one stratified seeded 7:3 split of those patients, written into
the manifest every section is trained on. Output: ``OUT/compare.json``, ``OUT/compare.html`` (in the
report's style) and each patient's probabilities per section ``OUT/predictions.csv`` and each section's model file
``OUT/models/<section>.json`` (``predict`` and
``report`` take them; each model records its section and refuses features of another).
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, InputError
from .training import MODEL_NAMES

MODEL_FILE_NAMES = {":": "_"}


def model_file_name(label: str) -> str:
    """``largest:2`` -> ``largest_2.json``."""
    return "".join(MODEL_FILE_NAMES.get(ch, ch) for ch in label) + ".json"


def parse_section_items(items, option: str, what: str, example: str) -> "OrderedDict[str, Path]":
    """``["largest=DIR1", "volume=DIR2"]`` -> {label: path}; each label a section name, once. ``option``,
    ``what`` and ``example`` name the option in its errors (``--features`` SECTION=FOLDER, ``--robustness``
    SECTION=CSV)."""
    from .crosssection import parse_section
    out: "OrderedDict[str, Path]" = OrderedDict()
    for item in items or ():
        label, sep, path = str(item).partition("=")
        if not sep or not label.strip() or not path.strip():
            raise InputError(f"{option} takes SECTION={what} items, got {item!r}", hint=f"e.g. {option} {example}")
        label = parse_section(label.strip()).text
        if label in out:
            raise InputError(f"section {label} given twice in {option}")
        out[label] = Path(path.strip())
    return out


def parse_feature_args(items) -> "OrderedDict[str, Path]":
    """``--features``: at least two sections' cohort-extract folders (:func:`parse_section_items`)."""
    out = parse_section_items(items, "--features", "FOLDER", "largest=feat2d largest:2=feat25d volume=feat3d")
    if len(out) < 2:
        raise InputError(f"compare needs the features of at least two sections, got {len(out)}",
                         hint="e.g. --features largest=feat2d volume=feat3d")
    return out


def read_section_features(label: str, path) -> tuple:
    """(features table, extraction options, fingerprint) of one section from a cohort-extract folder or
    its features.csv; refused when its feature names are of another section than ``label``."""
    from .pipeline import section_of_columns
    from .training import _find_extraction_record, read_features
    path = Path(path)
    csv = path / "features.csv" if path.is_dir() else path
    table = read_features(csv)
    held = section_of_columns(table.columns)
    if held is None:
        raise DataError(f"the features table for section {label} holds no features of one section", path=csv,
                        hint="give the features.csv that cohort-extract --section wrote")
    if held != label:
        raise DataError(f"the features table given for section {label} holds features of section {held}",
                        path=csv, hint=f"pass it as {held}={path}, or extract with --section {label}")
    options, fingerprint = _find_extraction_record(csv)
    if options is not None and (options.get("section") or "largest") != label:
        raise DataError(f"the extraction record beside {csv.name} says section "
                        f"{options.get('section') or 'largest'}, the features say {label}", path=csv,
                        hint="the folder mixes two extractions: re-extract it")
    return table, options, fingerprint


def _ids_with_features(table: pd.DataFrame) -> set:
    from .training import _feature_columns
    t = table.set_index("patient_id") if "patient_id" in table.columns else table
    cols = _feature_columns(t.columns)
    values = t[cols].apply(pd.to_numeric, errors="coerce")
    return {str(i) for i in values.index[values.notna().any(axis=1)]}


def compare_sections(tables: "OrderedDict[str, pd.DataFrame]", manifest, *, seed: int = 0,
                     options: dict | None = None, fingerprints: dict | None = None,
                     ground_truth: pd.Series | None = None, workers: int = 1, progress=None,
                     stability: dict | None = None, keep_unstable: bool = False, robustness: dict | None = None,
                     **train_kwargs) -> tuple:
    """Train the six models on each section's features with one split; ``(result dict, {label: TrainedModels})``.

    ``tables``: section label -> features table; ``manifest``: a :class:`manifest.Manifest`;
    ``options``/``fingerprints``: per label, the cohort's extraction options and fingerprint (None:
    computed here). ``stability``: per label, the :class:`stability.Exclusion` of the section's
    feature_stability.json (None or absent: no screen), applied as ``train`` applies it unless
    ``keep_unstable``. ``robustness``: per label, ``(robustness.csv table, min_icc or None, path)`` as
    ``train --robustness/--min-icc`` takes it (absent: no ICC screen on that section). ``train_kwargs`` go to :func:`training.train_models` (default: no repeated
    splits, no leave-one-centre-out: a comparison of sections, not an internal validation).
    """
    from .pipeline import ExtractionOptions
    from .stats.roc import delong_test
    from .training import split_cohort, train_models

    say = progress or (lambda _m: None)
    options, fingerprints, stability = dict(options or {}), dict(fingerprints or {}), dict(stability or {})
    robustness = dict(robustness or {})
    unknown = [label for label in robustness if label not in tables]
    if unknown:
        raise InputError(f"--robustness given for section(s) {', '.join(unknown)}, which --features does not have",
                         hint="give a robustness.csv per compared section, as SECTION=CSV")
    for label, (rob_table, min_icc, path) in robustness.items():   # refused before any section trains
        from .pipeline import feature_columns
        from .robustness import icc_screen
        hashes = tables[label]["settings_hash"].dropna().unique() if "settings_hash" in tables[label] else []
        icc_screen(feature_columns(tables[label]), hashes[0] if len(hashes) else None, rob_table, min_icc, path)
    df = manifest.df.copy()
    df.index = df.index.map(str)
    if "outcome" not in df.columns:
        raise DataError("the manifest has no outcome column", path=getattr(manifest, "path", None),
                        hint="add 'outcome' (1 = resistant, 0 = sensitive, or RECIST CR/PR/SD/PD)")
    with_outcome = [p for p in df.index if pd.notna(df.at[p, "outcome"])]
    have = {label: _ids_with_features(t) for label, t in tables.items()}
    common = [p for p in with_outcome if all(p in h for h in have.values())]
    left_out = {label: sorted(p for p in with_outcome if p in have[label] and p not in common)
                for label in tables}
    if len(common) < 20:
        raise DataError(f"only {len(common)} patients have an outcome and features in every section",
                        hint="check that every section was extracted on the same manifest")
    given = df.loc[common, "split"] if "split" in df.columns and df.loc[common, "split"].notna().all() else None
    y = df.loc[common, "outcome"].astype(int)
    split = split_cohort(y, seed=seed, given=given)
    shared = copy.copy(manifest)
    shared.df = df.loc[common].copy()
    shared.df["split"] = split
    train_kwargs.setdefault("repeated_splits", 0)
    train_kwargs.setdefault("loco", False)

    trained = OrderedDict()
    for label, table in tables.items():
        say(f"compare: training the six models on section {label}")
        t0 = time.perf_counter()
        # without cohort-extract's record, the section's default options (recorded in the model file)
        opts = options.get(label) or ExtractionOptions(section=label).to_dict()
        trained[label] = train_models(table, shared, seed=seed, extraction_options=opts,
                                      fingerprint=fingerprints.get(label) or "compute",
                                      ground_truth=ground_truth, workers=workers,
                                      stability=stability.get(label), keep_unstable=keep_unstable,
                                      robustness=robustness.get(label), **train_kwargs)
        trained[label].settings["compare_seconds"] = round(time.perf_counter() - t0, 1)

    # validation patients scored by every section's every model (a non-finite score drops the patient)
    val = [p for p in common if split[p] == "validation"]
    finite = [p for p in val if all(np.isfinite(trained[s].patients.loc[p, f"p_{m}"])
                                    for s in trained for m in MODEL_NAMES)]
    yv = df.loc[finite, "outcome"].astype(int).to_numpy()
    aucs, tests = OrderedDict(), []
    labels = list(trained)
    for m in MODEL_NAMES:
        aucs[m] = OrderedDict()
        for s in labels:
            ev = trained[s].evaluation["validation"][m]
            aucs[m][s] = {"auc": ev["auc"], "ci_low": ev["ci_low"], "ci_high": ev["ci_high"],
                          "n_inputs": len(trained[s].models[m]["features"])}
        for i, a in enumerate(labels):
            for b in labels[i + 1:]:
                r = delong_test(yv, trained[a].patients.loc[finite, f"p_{m}"].to_numpy(float),
                                trained[b].patients.loc[finite, f"p_{m}"].to_numpy(float))
                tests.append({"model": m, "section_a": a, "section_b": b, **r})
    result = {
        "sections": labels,
        "seed": seed,
        "split": "the manifest's split column" if given is not None else
                 f"one stratified random 7:3 split of the common patients, seed {seed}",
        "n": len(common), "events": int(y.sum()),
        "train": {"n": int((split == "train").sum()), "events": int(y[split == "train"].sum())},
        "validation": {"n": len(val), "events": int(y[split == "validation"].sum()),
                       "n_compared": len(finite)},
        "left_out": {k: v for k, v in left_out.items() if v},
        "settings_hash": {s: trained[s].settings_hash for s in labels},
        "stability_screen": {s: _screen_summary(trained[s]) for s in labels},
        "robustness_screen": {s: _icc_summary(trained[s]) for s in labels},
        "validation_auc": aucs,
        "delong": tests,
        "oracle_auc": {s: (trained[s].ground_truth or {}).get("oracle_auc") for s in labels}
        if ground_truth is not None else None,
        "seconds": {s: trained[s].settings.get("compare_seconds") for s in labels},
    }
    return result, trained


def _screen_summary(trained) -> dict:
    """What the stability screen did to one section: applied or not, how many features it left out."""
    screen = trained.cohort.get("stability_screen") or {}
    return {"sidecar": screen.get("source"),
            "applied": bool(screen.get("applied")),
            "excluded": len(screen.get("excluded") or []), "kept_unstable": len(screen.get("kept_unstable") or []),
            "usable_features": trained.cohort.get("n_features_usable"), "note": screen.get("note")}


def _icc_summary(trained) -> dict:
    """What the ICC screen did to one section: its file and threshold, how many features it removed."""
    r = trained.robustness or {}
    return {"file": r.get("file"), "min_icc": r.get("min_icc"), "icc_form": r.get("icc_form"),
            "removed": r.get("n_removed", 0) if r.get("min_icc") is not None else 0,
            "features": r.get("n_features")}


def predictions_table(trained: dict) -> pd.DataFrame:
    """Every patient's cohort and each model's probability, per section (long format)."""
    frames = []
    for label, t in trained.items():
        f = t.patients.drop(columns=["risk_group"], errors="ignore").copy()
        f.insert(0, "section", label)
        frames.append(f.rename_axis("patient_id").reset_index())
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- HTML

def render_compare_html(result: dict) -> str:
    """The comparison as one HTML page in the model report's style (report.py's renderer)."""
    from .report import CSS, e, num, pval, table
    from .report_trust import add_anchors

    labels = result["sections"]
    rows = []
    for m, per in result["validation_auc"].items():
        rows.append([e(m)] + [f"{num(per[s]['auc'])} ({num(per[s]['ci_low'])}–{num(per[s]['ci_high'])}); "
                              f"{e(per[s]['n_inputs'])} input(s)" for s in labels])
    auc_table = table(["Model"] + [e(s) for s in labels], rows, numeric=tuple(range(1, len(labels) + 1)))
    test_rows = [[e(t["model"]), f"{e(t['section_a'])} vs {e(t['section_b'])}", num(t["auc_a"]), num(t["auc_b"]),
                  num(t["diff"]), num(t["z"], 2), pval(t["p"])] for t in result["delong"]]
    tests = table(["Model", "Sections", "AUC a", "AUC b", "Difference", "z", "P (DeLong, paired)"], test_rows,
                  numeric=(2, 3, 4, 5, 6))
    v = result["validation"]
    left = "".join(f"<li>{e(s)}: {e(len(ids))} patient(s) with features here but not in every section "
                   f"({e(', '.join(ids[:10]))}{' ...' if len(ids) > 10 else ''})</li>"
                   for s, ids in result["left_out"].items())
    oracle = result.get("oracle_auc")
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>DoseRadiomics: sections compared</title><style>" + CSS + "</style></head><body>",
        "<h1>2D, 2.5D and 3D sections compared</h1>",
        "<h2>Design</h2>",
        f"<p>The six models of Zhang et al. (2025), trained with the same method on the features of each section, "
        f"on one development/validation split ({e(result['split'])}): {e(result['n'])} patients "
        f"({e(result['events'])} resistant), training {e(result['train']['n'])} ({e(result['train']['events'])}), "
        f"validation {e(v['n'])} ({e(v['events'])}); {e(v['n_compared'])} validation patients scored by every "
        "model of every section enter the DeLong tests. Sections: <code>largest</code> = the largest "
        "cross-section (one slice, the paper); <code>largest:K</code> = the K slices either side of it as "
        "one thin 3D image; <code>volume</code> = the whole GTV and isodose regions in 3D.</p>",
        f"<ul>{left}</ul>" if left else "",
        "<h2>Validation AUCs</h2>",
        "<p>AUC (DeLong 95% CI) in the validation cohort, and the number of inputs of the model.</p>", auc_table,
        "<h2>Numerical-stability screen</h2>",
        table(["Section", "Features left out", "Note"],
              [[e(s), e(sc["excluded"]) if sc.get("sidecar") else "none (no sidecar)", e(sc.get("note") or "")]
               for s, sc in (result.get("stability_screen") or {}).items()], numeric=(1,)),
        "<h2>Robustness (ICC) screen</h2>",
        table(["Section", "Robustness file", "Features removed"],
              [[e(s), e(r["file"]) if r.get("file") else "none",
                f"{e(r['removed'])} of {e(r['features'])} ({e(r['icc_form'])} below {e(r['min_icc'])})"
                if r.get("min_icc") is not None else ("ICCs reported, no screen" if r.get("file") else "no screen")]
               for s, r in (result.get("robustness_screen") or {}).items()], numeric=(2,)),
    ]
    if oracle:
        parts.append("<p>Oracle AUC (true probabilities, synthetic cohort): "
                     + ", ".join(f"{e(s)} {num(o)}" for s, o in oracle.items()) + ".</p>")
    parts += ["<h2>Paired DeLong tests between sections</h2>",
              "<p>Per model, the same validation patients scored by the two sections' models. The clinical model "
              "does not use features, so its sections agree up to the split (p = 1 when identical). "
              "No correction for multiple testing.</p>", tests,
              "<h2>Reproducibility</h2>",
              table(["Section", "Settings hash", "Training time (s)"],
                    [[e(s), f"<code>{e(result['settings_hash'][s])}</code>", num(result['seconds'][s], 1)]
                     for s in labels]),
              "</body></html>"]
    return add_anchors("\n".join(p for p in parts if p))


# ----------------------------------------------------------------------------- command line

def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "compare", help="2D vs 2.5D vs 3D: the six models on each section's features, one split, DeLong tests",
        description="Train the six models on the features of each section (cohort-extract --section ...) with "
                    "the same development/validation split, and report the validation AUCs side by side with "
                    "paired DeLong tests between sections per model: OUT/compare.json, OUT/compare.html and "
                    "each section's model file OUT/models/<section>.json.")
    p.add_argument("--features", nargs="+", required=True, metavar="SECTION=FOLDER",
                   help="each section's cohort-extract folder (or its features.csv), e.g. largest=feat2d "
                        "largest:2=feat25d volume=feat3d")
    p.add_argument("--manifest", required=True, help="the cohort manifest (outcome, clinical variables)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the one 7:3 split and the LASSO folds (default 0)")
    p.add_argument("--ground-truth", help="ground_truth.csv of a synthetic cohort: also the oracle AUC")
    p.add_argument("--workers", type=int, default=1, help="processes for train's resampling (default 1)")
    from .training import add_stability_screen_arguments
    add_stability_screen_arguments(p, "the features each section's stability screen found numerically unstable (as "
                                      "train --keep-unstable); by default each section's feature_stability.json "
                                      "is applied")
    p.add_argument("--robustness", nargs="+", metavar="SECTION=CSV",
                   help="each section's robustness.csv (doseradiomics robustness on that section's cohort-extract "
                        "folder), e.g. largest=rob2d/robustness.csv; a section without one gets no ICC screen")
    p.add_argument("--min-icc", type=float, metavar="ICC",
                   help="with --robustness: keep only features whose ICC(3,1) is at least this (as train --min-icc)")
    p.set_defaults(func=run)


def run(args) -> int:
    from .fileio import atomic_write_text, check_output_folder, ensure_folder
    from .manifest import read_manifest
    from .modelfile import save_model
    from .training import find_stability, format_auc_table, read_ground_truth

    out = check_output_folder(args.out)
    sources = parse_feature_args(args.features)
    manifest = read_manifest(args.manifest)
    tables, options, fingerprints, stability = OrderedDict(), {}, {}, {}
    for label, path in sources.items():
        tables[label], options[label], fingerprints[label] = read_section_features(label, path)
        # each section's own sidecar, by train's rule (feature_stability.json beside its features)
        stability[label] = find_stability(path / "features.csv" if path.is_dir() else path,
                                          max_unstable_share=args.max_unstable_share)
    truth = read_ground_truth(args.ground_truth) if args.ground_truth else None
    if args.min_icc is not None and not args.robustness:
        raise DataError("--min-icc needs --robustness SECTION=CSV (each section's robustness.csv)")
    screens = OrderedDict()
    if args.robustness:
        from .robustness import read_robustness
        for label, csv in parse_section_items(args.robustness, "--robustness", "CSV",
                                              "largest=rob2d/robustness.csv volume=rob3d/robustness.csv").items():
            screens[label] = (read_robustness(csv), args.min_icc, csv)
    result, trained = compare_sections(tables, manifest, seed=args.seed, options=options,
                                       fingerprints=fingerprints, ground_truth=truth, workers=args.workers,
                                       progress=lambda m: print(m, file=sys.stderr, flush=True),
                                       stability=stability, keep_unstable=args.keep_unstable, robustness=screens)
    ensure_folder(out / "models")
    for label, t in trained.items():
        format_auc_table(t)
        save_model(t, out / "models" / model_file_name(label))
    atomic_write_text(out / "compare.json", json.dumps(result, indent=1, allow_nan=True) + "\n")
    atomic_write_text(out / "predictions.csv", predictions_table(trained).to_csv(index=False, lineterminator="\n"))
    atomic_write_text(out / "compare.html", render_compare_html(result))
    labels = result["sections"]
    print(f"validation AUC ({result['validation']['n']} patients, {result['validation']['events']} resistant)")
    print(f"{'model':10s} " + " ".join(f"{s:>12s}" for s in labels))
    for m, per in result["validation_auc"].items():
        print(f"{m:10s} " + " ".join(f"{per[s]['auc']:12.3f}" for s in labels))
    print("paired DeLong p between sections:")
    for t in result["delong"]:
        print(f"  {t['model']:10s} {t['section_a']} vs {t['section_b']}: {t['auc_a']:.3f} vs {t['auc_b']:.3f}, "
              f"p = {t['p']:.3g}")
    for s, screen in result["stability_screen"].items():
        if screen["sidecar"] is None:
            print(f"stability screen, {s}: no feature_stability.json beside the features, nothing left out")
        elif screen["kept_unstable"]:
            print(f"stability screen, {s}: {screen['kept_unstable']} unstable feature(s) kept (--keep-unstable)")
        else:
            print(f"stability screen, {s}: {screen['excluded']} feature(s) left out, {screen['usable_features']} "
                  "usable kept")
    for s, r in result["robustness_screen"].items():
        if r["min_icc"] is not None:
            print(f"robustness screen, {s}: {r['removed']} of {r['features']} feature(s) removed "
                  f"({r['icc_form']} below {r['min_icc']})")
    for s, ids in result["left_out"].items():
        print(f"note: {len(ids)} patient(s) with {s} features left out (not extracted in every section)")
    print(f"written: {out / 'compare.json'}, {out / 'compare.html'}, {out / 'predictions.csv'}, {out / 'models'}")
    return 0
