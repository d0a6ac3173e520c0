"""External validation: apply a model file, unchanged, to a new cohort (``doseradiomics validate``).

Every patient goes through :func:`prediction.predict_from_features`, the code ``predict`` and the
Slicer module use (ComBat harmonisation by the patient's ``centre`` when the model has it; nothing
imputed). For every model: AUC with DeLong CI, accuracy/sensitivity/specificity at the model's own
training cut-off, calibration (intercept, slope, curve, Brier, Hosmer-Lemeshow) and decision curves
(:func:`training.evaluate_scores`), paired DeLong tests; risk groups at the combined model's cut-off
with Kaplan-Meier, log-rank and Cox (:func:`training.stratify_survival`); the development cohort's
figures from the model file beside them. ``recalibrate=True`` adds a logistic recalibration
(``logit p' = a + b logit p``) fitted on this cohort and reported separately: it shows what
updating the model would give, and its calibration is apparent (fitted and judged on the same
patients). Features extracted with other settings than the model's are refused.

Output: ``validation.json`` (schema ``doseradiomics-validation``), ``validation.html`` (built
from :mod:`report`'s pieces) and ``predictions.csv`` (each patient's probabilities, risk group, outcome).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, DoseRadiomicsError, ModelFileError
from .modelfile import MODEL_NAMES, load_model

SCHEMA = "doseradiomics-validation"
SCHEMA_VERSION = 1
FIGURE_COHORTS = (("development", "Development cohort (internal validation split)"),
                  ("external", "External cohort"))


def model_cutoffs(model: dict) -> dict:
    """Each model's cut-off as trained: the combined model's is the risk cut-off."""
    out = {}
    for name in MODEL_NAMES:
        ev = (model.get("evaluation", {}).get("train", {}) or {}).get(name) or {}
        out[name] = ev.get("cutoff")
    out["combined"] = model["risk"]["cutoff"]
    return out


def _model_features(model: dict) -> list:
    names = []
    for name in ("RM_GTV", "DM_GTV", "DM_50Gy", "RDM"):
        names += [f for f in model["models"][name]["features"] if f not in names]
    return names


def predict_cohort(model: dict, X: pd.DataFrame, df: pd.DataFrame, clinical_columns) -> tuple[pd.DataFrame, list]:
    """Every patient through ``predict_from_features``: a table of probabilities and the risk group."""
    from .prediction import predict_from_features
    has_centre = "centre" in df.columns
    rows, warnings = {}, []
    for pid in X.index:
        feats = {k: v for k, v in X.loc[pid].items()}
        clinical = {c: df.at[pid, c] for c in clinical_columns}
        try:
            out = predict_from_features(model, feats, clinical, centre=df.at[pid, "centre"] if has_centre else None)
        except DoseRadiomicsError as exc:
            raise exc.with_context(patient=str(pid)) from None
        rows[pid] = {**{f"p_{n}": out["probabilities"].get(n, np.nan) for n in MODEL_NAMES},
                     "risk_group": out["risk_group"]}
        warnings += [f"{pid}: {w}" for w in out["warnings"]]
    return pd.DataFrame.from_dict(rows, orient="index"), warnings


def _development(model: dict) -> dict:
    """The development cohort's figures per model (from the model file)."""
    out = {}
    for name in MODEL_NAMES:
        out[name] = {}
        for cohort in ("train", "validation"):
            ev = (model.get("evaluation", {}).get(cohort) or {}).get(name) or {}
            if "auc" not in ev:
                continue
            slope = ev.get("calibration_slope") or {}
            out[name][cohort] = {"n": ev.get("n"), "events": ev.get("events"), "auc": ev["auc"],
                                 "ci_low": ev.get("ci_low"), "ci_high": ev.get("ci_high"),
                                 "brier": ev.get("brier"), "calibration_intercept": slope.get("intercept"),
                                 "calibration_slope": slope.get("slope"),
                                 **{k: (ev.get("classification") or {}).get(k)
                                    for k in ("accuracy", "sensitivity", "specificity")}}
    return out


def _logit(p):
    p = np.clip(np.asarray(p, dtype=float), 1e-15, 1 - 1e-15)
    return np.log(p / (1 - p))


def validate_cohort(model: dict, features: pd.DataFrame, manifest, *, ground_truth: pd.Series | None = None,
                    recalibrate: bool = False, model_path=None, features_path=None) -> dict:
    """Evaluate a model on a new cohort; returns the JSON-ready result (see the module docstring).

    ``features``: a cohort-extract ``features.csv`` table; ``manifest``: a :class:`manifest.Manifest`
    with ``outcome`` (and ``centre`` for a harmonised model, survival columns for the risk groups).
    """
    from .prediction import check_settings_hash
    from .training import _prepare, compare_models, evaluate_scores, sigmoid, stratify_survival

    X, df, settings_hash, notes = _prepare(features, manifest)
    if settings_hash is None and model["extraction"].get("settings_hash"):
        notes.append("the features table has no settings_hash column: the extraction settings could not be "
                     "checked against the model's")
    check_settings_hash(model, settings_hash, model_path=model_path,
                        where=f"the features in {features_path or 'the features table'}")
    needed = _model_features(model)
    absent = [f for f in needed if f not in X.columns]
    if absent:
        raise DataError(f"the features table lacks {len(absent)} feature(s) the model uses, e.g. {absent[0]}",
                        path=features_path, hint="extract the cohort with the model's settings (cohort-extract)")
    y = df["outcome"].astype(int)
    if y.min() == y.max():
        raise DataError(f"the validation cohort has one outcome class only ({int(y.sum())} resistant of {len(y)})",
                        path=features_path, hint="external validation needs resistant and sensitive patients")
    clinical_columns = [c for c in getattr(manifest, "clinical_columns", []) if c in df.columns]
    scores, warnings = predict_cohort(model, X[needed], df, clinical_columns)
    cutoffs = model_cutoffs(model)

    evaluation, recalibrated = {}, {}
    for name in MODEL_NAMES:
        p = scores[f"p_{name}"].to_numpy(dtype=float)
        ok = np.isfinite(p)
        if ok.sum() < 2 or y[ok].min() == y[ok].max():
            evaluation[name] = {"n": int(ok.sum()), "notes": ["too few patients with this model's inputs"]}
            continue
        ev = evaluate_scores(y[ok].to_numpy(), p[ok], cutoffs[name])
        ev.update(cutoff=cutoffs[name], n_without_inputs=int((~ok).sum()))
        evaluation[name] = ev
        slope = ev.get("calibration_slope")
        if recalibrate and slope:
            a, b = slope["intercept"], slope["slope"]
            p_new = sigmoid(a + b * _logit(p[ok]))
            cut = float(sigmoid(a + b * _logit(cutoffs[name]))) if b > 0 else cutoffs[name]
            rev = evaluate_scores(y[ok].to_numpy(), p_new, cut)
            rev.update(cutoff=cut, recalibration={"intercept": a, "slope": b})
            recalibrated[name] = rev
    complete = np.isfinite(scores[[f"p_{n}" for n in MODEL_NAMES]].to_numpy(dtype=float)).all(axis=1)
    comparisons = []
    if complete.sum() > 2 and y[complete].min() != y[complete].max():
        comparisons = compare_models(y[complete].to_numpy(),
                                     {n: scores.loc[complete, f"p_{n}"].to_numpy(dtype=float) for n in MODEL_NAMES},
                                     "external")

    survival = {"cutoff": cutoffs["combined"], "endpoints": {}, "notes": []}
    grouped = scores["risk_group"].notna()
    for endpoint in ("pfs", "os"):
        tcol, ecol = f"{endpoint}_months", f"{endpoint}_event"
        if tcol not in df.columns or ecol not in df.columns or df[tcol].isna().all():
            survival["notes"].append(f"{endpoint.upper()}: no {tcol}/{ecol} columns in the manifest, skipped")
            continue
        rows = grouped & df[tcol].notna() & df[ecol].notna()
        if rows.sum() >= 2:
            survival["endpoints"][endpoint] = stratify_survival(
                df.loc[rows, tcol].astype(float), df.loc[rows, ecol].astype(int),
                (scores.loc[rows, "risk_group"] == "high").astype(int))

    gt = None
    if ground_truth is not None:
        from .stats.roc import delong_auc_ci
        truth = ground_truth.copy()
        truth.index = truth.index.map(str)
        ids = [p for p, ok in zip(X.index, np.isfinite(scores["p_combined"].to_numpy(dtype=float)))
               if ok and p in truth.index]
        if ids and y[ids].min() != y[ids].max():
            oracle = delong_auc_ci(y[ids].to_numpy(), truth[ids].to_numpy(dtype=float))
            comb = evaluation["combined"].get("auc")
            gt = {"n": len(ids), "oracle_auc": oracle["auc"], "oracle_ci_low": oracle["ci_low"],
                  "oracle_ci_high": oracle["ci_high"], "combined_auc": comb,
                  "difference": None if comb is None else oracle["auc"] - comb}

    centres = sorted(df["centre"].dropna().astype(str).unique()) if "centre" in df.columns else []
    h = model.get("harmonisation")
    if warnings:
        shown = sorted(set(w.split(": ", 1)[1] for w in warnings))
        notes += [f"{sum(w.endswith(s) for w in warnings)} patient(s): {s}" for s in shown]
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "model": {"path": None if model_path is None else str(model_path), "checksum": model.get("checksum"),
                  "created": model.get("created")},
        "features": {"path": None if features_path is None else str(features_path), "settings_hash": settings_hash},
        "cohort": {"n": int(len(y)), "events": int(y.sum()), "centres": centres,
                   "n_with_risk_group": int(grouped.sum())},
        "harmonisation": None if not h else {
            "method": h["method"], "model_centres": h["centres"], "unknown_centre": h["unknown_centre"],
            "cohort_centres_unknown_to_model": [c for c in centres if c not in h["centres"]]},
        "cutoffs": cutoffs, "evaluation": evaluation, "recalibrated": recalibrated or None,
        "comparisons": comparisons, "survival": survival, "development": _development(model),
        "ground_truth": gt, "notes": notes,
        "patients": scores.assign(outcome=y),  # per-patient table: written to CSV, not into the JSON
    }


# --------------------------------------------------------------------------------------------
# HTML (report.py's pieces)


def _pseudo_model(model: dict, result: dict) -> dict:
    """The figures' input: the development validation split beside the external cohort."""
    dev_eval = model.get("evaluation", {}).get("validation", {})
    dev_surv = model.get("survival", {}).get("endpoints", {})
    return {"evaluation": {"development": dev_eval, "external": result["evaluation"],
                           "recalibrated": result.get("recalibrated") or {}},
            "survival": {"endpoints": {ep: {"development": (dev_surv.get(ep) or {}).get("validation"),
                                            "external": s}
                                       for ep, s in result["survival"]["endpoints"].items()}}}


def _comparison_table(result: dict) -> str:
    from .report import e, num, table
    rows = []
    for name in MODEL_NAMES:
        ext = result["evaluation"].get(name) or {}
        dev = result["development"].get(name, {})
        for label, d in (("Development, training", dev.get("train")), ("Development, validation split",
                                                                          dev.get("validation"))):
            if d:
                rows.append([e(name), e(label), e(d["n"]), f"{num(d['auc'])} ({num(d['ci_low'])}–{num(d['ci_high'])})",
                             num(d["accuracy"]), num(d["sensitivity"]), num(d["specificity"]), num(d["brier"]),
                             num(d["calibration_intercept"]), num(d["calibration_slope"]), ""])
        if "auc" in ext:
            c, s = ext["classification"], ext.get("calibration_slope") or {}
            dv = (dev.get("validation") or {}).get("auc")
            rows.append([e(name), "<b>External</b>", e(ext["n"]),
                         f"<b>{num(ext['auc'])}</b> ({num(ext['ci_low'])}–{num(ext['ci_high'])})",
                         num(c["accuracy"]), num(c["sensitivity"]), num(c["specificity"]), num(ext["brier"]),
                         num(s.get("intercept")), num(s.get("slope")),
                         "–" if dv is None else f"{ext['auc'] - dv:+.3f}"])
        else:
            rows.append([e(name), "<b>External</b>", e(ext.get("n")), "not computed", "", "", "", "", "", "",
                         e("; ".join(ext.get("notes", [])))])
    return table(["Model", "Cohort", "n", "AUC (DeLong 95% CI)", "Accuracy", "Sensitivity", "Specificity",
                  "Brier", "Cal. intercept", "Cal. slope", "External − development validation AUC"], rows,
                 numeric=(2, 4, 5, 6, 7, 8, 9, 10))


def _recalibration_table(result: dict) -> str:
    from .report import e, num, table
    rows = []
    for name, r in (result.get("recalibrated") or {}).items():
        s = r.get("calibration_slope") or {}
        rows.append([e(name), num(r["recalibration"]["intercept"]), num(r["recalibration"]["slope"]),
                     num(result["evaluation"][name]["brier"]), num(r["brier"]), num(s.get("intercept")),
                     num(s.get("slope")), num(r["cutoff"])])
    return table(["Model", "Recalibration intercept a", "Recalibration slope b", "Brier before", "Brier after",
                  "Cal. intercept after", "Cal. slope after", "Cut-off on the new scale"], rows,
                 numeric=(1, 2, 3, 4, 5, 6, 7))


def render_validation_report(model: dict, result: dict) -> str:
    """The validation report's HTML text."""
    from .report import (CSS, calibration_figure, decision_figure, e, km_figure, num, pval, roc_figure, table)
    fig_model = _pseudo_model(model, result)
    c = result["cohort"]
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>DoseRadiomics external validation</title><style>" + CSS + "</style></head><body>",
        "<h1>DoseRadiomics external validation</h1>",
        f"<p>Model file <code>{e(result['model']['path'])}</code> (checksum <code>{e(result['model']['checksum'])}"
        f"</code>, written {e(result['model']['created'])}) applied unchanged to {e(c['n'])} patients "
        f"({e(c['events'])} resistant) of <code>{e(result['features']['path'])}</code>, extraction settings hash "
        f"<code>{e(result['features']['settings_hash'])}</code> (the model's). Centres: "
        f"{e(', '.join(c['centres']) or 'not given')}. Cut-offs are each model's Youden cut-off in the "
        "development training cohort; nothing is refitted except the separately reported recalibration.</p>",
    ]
    h = result.get("harmonisation")
    if h:
        unknown = h["cohort_centres_unknown_to_model"]
        parts.append(f"<p>ComBat harmonisation of the model (centres {e(', '.join(h['model_centres']))}) applied "
                     f"by each patient's centre; centres unknown to the model: {e(', '.join(unknown) or 'none')} "
                     f"(policy: {e(h['unknown_centre'])}).</p>")
    parts += ["<h2>Discrimination, classification and calibration beside the development cohort</h2>",
              _comparison_table(result),
              f"<figure>{roc_figure(fig_model, FIGURE_COHORTS)}<figcaption>ROC curves: the development "
              "cohort's validation split and the external cohort.</figcaption></figure>"]
    if result["comparisons"]:
        rows = [[e(r["model_a"]), e(r["model_b"]), num(r.get("auc_a")), num(r.get("auc_b")), pval(r.get("p"))]
                for r in result["comparisons"]]
        parts += ["<h3>DeLong comparisons (external cohort)</h3>",
                  table(["Model A", "Model B", "AUC A", "AUC B", "P value"], rows, numeric=(2, 3, 4))]
    parts += ["<h2>Calibration</h2>",
              f"<figure>{calibration_figure(fig_model, FIGURE_COHORTS)}<figcaption>Observed proportion against "
              "mean predicted probability in deciles of predicted risk.</figcaption></figure>"]
    if result.get("recalibrated"):
        parts += ["<h3>Logistic recalibration fitted on the external cohort (reported separately)</h3>",
                  "<p>logit p' = a + b logit p, fitted on this cohort: what updating the model would give. Its "
                  "calibration is apparent (fitted and judged on the same patients); discrimination is "
                  "unchanged.</p>", _recalibration_table(result),
                  f"<figure>{calibration_figure(fig_model, (('external', 'External, as trained'), ('recalibrated', 'External, recalibrated on itself')))}"
                  "<figcaption>Calibration before and after recalibration.</figcaption></figure>"]
    parts += ["<h2>Decision curves</h2>",
              f"<figure>{decision_figure(fig_model, FIGURE_COHORTS)}<figcaption>Net benefit against threshold "
              "probability, with treat-all and treat-none.</figcaption></figure>",
              "<h2>Risk stratification</h2>",
              f"<p>High risk: combined probability &ge; {num(result['cutoffs']['combined'])} "
              f"(the model's cut-off); {e(c['n_with_risk_group'])} patients have the combined model's inputs.</p>"]
    rows = []
    for ep, s in result["survival"]["endpoints"].items():
        parts.append(f"<h3>{e(ep.upper())}</h3><figure>{km_figure(fig_model, ep, FIGURE_COHORTS)}<figcaption>"
                     f"Kaplan-Meier {e(ep.upper())} by risk group with 95% CI and numbers at risk.</figcaption></figure>")
        cox, g = s.get("cox") or {}, s["groups"]
        rows.append([e(ep.upper()), e((g.get("high") or {}).get("n", 0)), e((g.get("low") or {}).get("n", 0)),
                     pval((s.get("logrank") or {}).get("p")), num(cox.get("hr"), 2),
                     f"{num(cox.get('ci_low'), 2)}–{num(cox.get('ci_high'), 2)}"])
    if rows:
        parts.append(table(["Endpoint", "High risk n", "Low risk n", "Log-rank p", "HR (high vs low)", "95% CI"],
                           rows, numeric=(1, 2, 3, 4)))
    parts += [f'<p class="note">{e(n)}</p>' for n in result["survival"]["notes"]]
    gt = result.get("ground_truth")
    if gt:
        parts += ["<h2>Ground truth (synthetic cohort)</h2>",
                  f"<p>External cohort (n={e(gt['n'])}): combined model AUC {num(gt['combined_auc'])}, oracle AUC of "
                  f"the true probabilities {num(gt['oracle_auc'])} ({num(gt['oracle_ci_low'])}–"
                  f"{num(gt['oracle_ci_high'])}); oracle minus combined {num(gt['difference'])}.</p>"]
    if result["notes"]:
        parts += ["<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in result["notes"]) + "</ul>"]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_validation(result: dict, model: dict, out_dir) -> tuple[Path, Path]:
    """validation.json, validation.html and predictions.csv (each patient's probabilities and risk
    group) in ``out_dir``, each written atomically."""
    from .fileio import atomic_write_text, csv_safe_frame, jsonable
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j, h = out / "validation.json", out / "validation.html"
    body = {k: v for k, v in result.items() if k != "patients"}
    atomic_write_text(j, json.dumps(jsonable(body), indent=1, allow_nan=False) + "\n")
    atomic_write_text(h, render_validation_report(model, result))
    if result.get("patients") is not None:
        atomic_write_text(out / "predictions.csv", csv_safe_frame(result["patients"]).to_csv(index_label="patient_id"))
    return j, h


def format_validation(result: dict) -> str:
    """The console table: external AUC beside the development validation split's."""
    lines = [f"{'model':10s} {'n':>4s} {'AUC':>6s} {'95% CI':>13s} {'acc':>6s} {'sens':>6s} {'spec':>6s} "
             f"{'slope':>6s} {'brier':>6s} {'dev AUC':>8s}"]
    for name in MODEL_NAMES:
        ev = result["evaluation"].get(name) or {}
        dev = (result["development"].get(name) or {}).get("validation") or {}
        if "auc" not in ev:
            lines.append(f"{name:10s} {ev.get('n', 0):4d}   not computed")
            continue
        c, s = ev["classification"], ev.get("calibration_slope") or {}
        slope = s.get("slope")
        lines.append(f"{name:10s} {ev['n']:4d} {ev['auc']:6.3f} {ev['ci_low']:6.3f}-{ev['ci_high']:<6.3f} "
                     f"{c['accuracy']:6.3f} {c['sensitivity']:6.3f} {c['specificity']:6.3f} "
                     f"{'–' if slope is None else f'{slope:6.3f}':>6s} {ev['brier']:6.3f} "
                     f"{'–' if dev.get('auc') is None else format(dev['auc'], '8.3f'):>8s}")
    return "\n".join(lines)


def run(args) -> int:
    """``doseradiomics validate``."""
    from .manifest import read_manifest
    from .training import read_features, read_ground_truth
    model = load_model(args.model)
    features = read_features(args.features)
    manifest = read_manifest(args.manifest)
    truth = read_ground_truth(args.ground_truth) if args.ground_truth else None
    result = validate_cohort(model, features, manifest, ground_truth=truth, recalibrate=args.recalibrate,
                             model_path=args.model, features_path=args.features)
    try:
        j, h = write_validation(result, model, args.out)
    except (KeyError, TypeError) as exc:  # a hand-made model file without the report's sections
        raise ModelFileError(f"the validation report cannot be written: {exc}", path=args.model,
                             hint="write the model with doseradiomics train") from None
    c = result["cohort"]
    print(f"external cohort: {c['n']} patients ({c['events']} resistant)")
    print(format_validation(result))
    if result["ground_truth"]:
        g = result["ground_truth"]
        print(f"oracle AUC (true probabilities) {g['oracle_auc']:.3f}, combined {g['combined_auc']:.3f}")
    for note in result["notes"]:
        print(f"note: {note}")
    print(f"validation written to {j} and {h}")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "validate", help="apply a model file to a new cohort (external validation)",
        description="Apply a trained model file unchanged to a new cohort (a manifest with outcomes and its "
                    "cohort-extract features, same extraction settings) and report every model's AUC with "
                    "DeLong CI, classification at the model's cut-off, calibration, decision curves and risk "
                    "groups beside the development cohort's figures: validation.json and validation.html.")
    p.add_argument("--model", required=True, help="model.json from doseradiomics train")
    p.add_argument("--features", required=True, help="features.csv of the new cohort (doseradiomics cohort-extract)")
    p.add_argument("--manifest", required=True, help="the new cohort's manifest (outcome; centre for a "
                                                     "harmonised model; survival columns for risk groups)")
    p.add_argument("--out", required=True, help="folder for validation.json and validation.html")
    p.add_argument("--recalibrate", action="store_true",
                   help="also fit a logistic recalibration (intercept and slope) on this cohort, reported separately")
    p.add_argument("--ground-truth", help="ground_truth.csv of a synthetic cohort: report the oracle AUC")
    p.set_defaults(func=run)
