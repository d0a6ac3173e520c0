"""The HTML report of a model file: one self-contained page a reviewer can read.

Everything comes from the model file (no patient-level data): the cohort table (Table 1 style), the
selected features and coefficients (Tables 2-4 style), the model equations, AUCs with DeLong CIs,
DeLong comparisons, ROC, decision and calibration curves, Kaplan-Meier curves with numbers at risk,
and a TRIPOD-oriented methods paragraph. Figures are matplotlib (Agg) PNGs embedded as base64; CSS
is inline. Every value that comes from data is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from .errors import ModelFileError
from .fileio import atomic_write_text
from .modelfile import MODEL_NAMES, load_model
from .report_trust import add_anchors, trust_sections

COHORTS = (("train", "Training cohort"), ("validation", "Validation cohort"))
COLOURS = {"clinical": "#1f77b4", "RM_GTV": "#9467bd", "DM_GTV": "#8c564b", "DM_50Gy": "#ff7f0e",
           "RDM": "#d62728", "combined": "#2ca02c"}
CSS = """
body{font-family:Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
code,.eq{font-family:Menlo,Consolas,monospace;font-size:.85em}.eq{background:#f7f7f7;padding:.5em;
display:block;white-space:pre-wrap;word-break:break-all}.note{color:#8a5a00}
figure{margin:1em 0}figcaption{font-size:.85em;color:#555}img{max-width:100%}
"""


def e(value) -> str:
    """HTML-escaped text of any value (None shows as an en dash)."""
    return "–" if value is None else html.escape(str(value), quote=True)


def num(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return e(value)


def pval(p) -> str:
    if p is None:
        return "–"
    p = float(p)
    return "&lt;0.001" if p < 0.001 else f"{p:.3f}"


def table(headers, rows, numeric=()) -> str:
    """An HTML table; ``rows`` hold already-escaped cell HTML."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _png(fig) -> str:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return ('<img alt="figure" src="data:image/png;base64,'
            + base64.b64encode(buf.getvalue()).decode("ascii") + '">')


def _figure_setup():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


# --------------------------------------------------------------------------------------------
# Figures


def roc_figure(model: dict, cohorts=COHORTS) -> str:
    plt = _figure_setup()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, (key, title) in zip(axes, cohorts):
        for name in MODEL_NAMES:
            ev = model["evaluation"].get(key, {}).get(name) or {}
            if ev.get("roc"):
                ax.plot(ev["roc"]["fpr"], ev["roc"]["tpr"], color=COLOURS[name], drawstyle="steps-post",
                        label=f"{name} (AUC {ev['auc']:.3f})")
        ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
        ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def decision_figure(model: dict, cohorts=COHORTS) -> str:
    plt = _figure_setup()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, (key, title) in zip(axes, cohorts):
        dc = None
        lo, hi = 0.0, 0.0
        for name in MODEL_NAMES:
            dc = (model["evaluation"].get(key, {}).get(name) or {}).get("decision_curve")
            if dc:
                ax.plot(dc["thresholds"], dc["model"], color=COLOURS[name], label=name)
                hi = max(hi, max(v for v in dc["model"] if v is not None))
        if dc:
            ax.plot(dc["thresholds"], dc["treat_all"], color="grey", ls="--", label="treat all")
            ax.plot(dc["thresholds"], dc["treat_none"], color="black", lw=1, label="treat none")
            lo = -0.05
        ax.set(xlabel="threshold probability", ylabel="net benefit", title=title,
               ylim=(lo, max(hi, 0.05) * 1.1), xlim=(0, 1))
        ax.legend(fontsize=8)
    return _png(fig)


def calibration_figure(model: dict, cohorts=COHORTS) -> str:
    plt = _figure_setup()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, (key, title) in zip(axes, cohorts):
        for name in MODEL_NAMES:
            cc = (model["evaluation"].get(key, {}).get(name) or {}).get("calibration_curve")
            if cc:
                ax.plot(cc["mean_predicted"], cc["observed"], marker="o", ms=3, color=COLOURS[name], label=name)
        ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
        ax.set(xlabel="predicted probability", ylabel="observed proportion", title=title, xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=8)
    return _png(fig)


def km_figure(model: dict, endpoint: str, cohorts=COHORTS) -> str:
    plt = _figure_setup()
    data = model["survival"]["endpoints"][endpoint]
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.2), gridspec_kw={"height_ratios": [4, 1]})
    for col, (key, title) in enumerate(cohorts):
        ax, tab = axes[0, col], axes[1, col]
        s = data.get(key)
        tab.axis("off")
        if not s:
            ax.set_title(f"{title}: no data")
            continue
        for label, colour in (("high", "#d62728"), ("low", "#1f77b4")):
            g = s["groups"].get(label)
            if g:
                km = g["km"]
                ax.step(km["time"], km["survival"], where="post", color=colour,
                        label=f"{label} risk (n={g['n']}, events {g['events']})")
                ax.fill_between(km["time"], km["ci_low"], km["ci_high"], step="post", color=colour, alpha=0.12)
        text = []
        if s.get("logrank"):
            text.append(f"log-rank p = {s['logrank']['p']:.3g}")
        if s.get("cox"):
            c = s["cox"]
            text.append(f"HR {c['hr']:.2f} ({c['ci_low']:.2f}-{c['ci_high']:.2f})")
        ax.set(xlabel="months", ylabel=f"{endpoint.upper()} probability", ylim=(0, 1.02),
               title=f"{title}: " + ", ".join(text))
        ax.legend(fontsize=8, loc="upper right")
        at = s["at_times"]
        ax.set_xlim(0, max(at) if at else None)
        tab.set_xlim(ax.get_xlim())
        tab.set_ylim(0, 3)
        tab.text(ax.get_xlim()[0], 2.6, "numbers at risk", fontsize=8, ha="left")
        for row, label in ((1.6, "high"), (0.6, "low")):
            g = s["groups"].get(label)
            if g:
                for t, n in zip(at, g["at_risk"]):
                    tab.text(t, row, str(n), fontsize=8, ha="center")
                tab.text(ax.get_xlim()[0] - 0.06 * (ax.get_xlim()[1] - ax.get_xlim()[0]), row, label,
                         fontsize=8, ha="right")
    fig.tight_layout()
    return _png(fig)


# --------------------------------------------------------------------------------------------
# Sections


def _methods(model: dict) -> str:
    c, st = model["cohort"], model["settings"]
    coding = model["clinical_coding"]
    imputed = model.get("clinical_analysis", {}).get("imputed", {}) or {}
    n_imp = sum(v for v in imputed.values() if v)
    rois = ", ".join(f"{e(roi)} ({e(name)})" for name, roi in st["roi_models"].items())
    tr, va = c["train"], c["validation"]
    return f"""
<p><b>Source of data and participants.</b> {e(c['n'])} patients of the cohort manifest with an outcome
and extracted features ({e(c['events'])} resistant). <b>Outcome.</b> {e(c['outcome'])}, as defined by the
manifest (RECIST 1.1 in Zhang et al. 2025). <b>Predictors.</b> 2D radiomics of the planning CT and 2D
dosiomics of the RT dose on the largest GTV cross-section, in the ROIs {rois}:
{e(c['n_features_extracted'])} features extracted, {e(c['n_features_usable'])} usable
({e(c['dropped_features']['missing_values'])} with missing values and {e(c['dropped_features']['constant'])}
constant in training dropped); clinical variables {e(', '.join(coding)) or 'none'} (encodings in the
coding table below). <b>Sample size.</b> Training {e(tr['n'])} patients ({e(tr['events'])} events), validation
{e(va['n'])} ({e(va['events'])} events). <b>Missing data.</b> Patients without an outcome or a feature row were
excluded; missing clinical values were imputed with the training median (continuous/ordinal) or the
training mode (categorical): {n_imp} value(s) imputed. <b>Model building.</b> {e(st['normalisation'])};
per ROI a univariate filter ({e(st['univariate_test'])}, p &lt; {e(st['alpha_univariate'])}), then LASSO
logistic regression with {e(st['cv_folds'])}-fold cross-validation (lambda rule {e(st['lasso_rule'])}), then
unpenalised logistic regression on the selected features (RM_GTV, DM_GTV, DM_50Gy); RDM on the union
of the selected features; clinical model by {e(st['clinical_selection'])}; combined model on the RDM
score (its linear predictor) and the independent clinical predictors. All fitting used the training
cohort only. <b>Validation.</b> Internal validation by a random split ({e(c['split'])}); discrimination
(AUC with DeLong 95% CI, paired DeLong tests), classification at the Youden cut-off chosen in training,
calibration (curve, Brier score, Hosmer-Lemeshow test, calibration slope) and decision curves in both
cohorts. Risk groups: the combined model's probability &ge; {num(model['risk']['cutoff'])} (Youden cut-off
in training) is high risk; Kaplan-Meier, log-rank test and Cox hazard ratio for PFS and OS.</p>"""


def _stability(model: dict) -> str:
    """Which features the stability screen left out (or, with --keep-unstable, kept), each with its reason."""
    sc = (model.get("cohort") or {}).get("stability_screen")
    if not sc:
        return "<p>This model file predates the stability screen.</p>"
    if not sc.get("source"):
        return f"<p>{e(sc.get('note'))}.</p>"
    rows = sc.get("excluded") or sc.get("kept_unstable") or []
    verb = "excluded before selection" if sc.get("applied") else "kept (--keep-unstable: the paper's feature set)"
    head = (f"<p>Rule: {e(sc.get('rule'))}; {e(sc.get('training_patients_screened'))} training patients screened "
            f"(<code>{e(sc.get('source'))}</code>). {len(rows)} feature(s) {verb}.</p>")
    if not rows:
        return head
    body = table(["Feature", "Unstable in", "Share", "Reason"],
                 [[e(r["feature"]), f"{e(r['unstable_in'])} / {e(r['screened'])}", num(r["share"]), e(r["reason"])]
                  for r in rows], numeric=(1, 2))
    return head + "<details><summary>the features</summary>" + body + "</details>"


def _cohort_table(model: dict) -> str:
    c = model["cohort"]
    rows = [[e(r["variable"]), e(r["category"]), e(r["train"]), e(r["validation"]), pval(r.get("p")),
             e(r.get("test") or "")] for r in model.get("cohort_table", [])]
    heads = ["Variable", "Category", f"Training (n={e(c['train']['n'])})", f"Validation (n={e(c['validation']['n'])})",
             "P value", "Test"]
    return table(heads, rows, numeric=(4,)) + (
        "<p>Continuous variables: mean ± SD when Shapiro-Wilk accepts normality in both cohorts, else "
        "median (IQR). Categorical: n (%).</p>")


def _coding_table(model: dict) -> str:
    rows = []
    for variable, spec in model["clinical_coding"].items():
        if spec["kind"] == "categorical":
            labels = spec.get("level_labels") or {}
            how = f"dummies vs the most frequent level {e(labels.get(spec['reference'], spec['reference']))}: " + \
                ", ".join(f"<code>{e(n)}</code> = {e(labels.get(lev, lev))}"
                          for n, lev in zip(spec["encoded"], spec["dummy_levels"]))
        elif spec["kind"] == "binary":
            how = f"<code>{e(spec['encoded'])}</code> = 1 for {e(spec['levels'][1])}, 0 for {e(spec['levels'][0])}"
        elif spec["kind"] == "ordinal":
            how = f"<code>{e(spec['encoded'])}</code> = " + ", ".join(
                f"{i + 1} for {e(lev)}" for i, lev in enumerate(spec["levels"]))
        else:
            how = f"<code>{e(spec['encoded'])}</code> in raw units"
        rows.append([e(variable), e(spec["kind"]), how, num(spec.get("impute")) if spec["kind"] != "categorical"
                     else e(spec.get("impute"))])
    return table(["Variable", "Kind", "Model input", "Imputed with"], rows)


def _feature_tables(model: dict) -> str:
    out = []
    for name in ("RM_GTV", "DM_GTV", "DM_50Gy"):
        m, sel = model["models"][name], model["selection"].get(name, {})
        pvals = {r["feature"]: r for r in sel.get("univariate_selected", [])}
        rows = [["[0]", "(Intercept)", num(m["intercept"], 4), "", ""]]
        for i, (f, c) in enumerate(zip(m["features"], m["coefficients"]), 1):
            u = pvals.get(f, {})
            rows.append([f"[{i}]", f"<code>{e(f)}</code>", num(c, 4), e(u.get("test")), pval(u.get("p"))])
        lasso = sel.get("lasso") or {}
        info = (f"{e(sel.get('n_features'))} features, {e(sel.get('n_after_filter'))} after the univariate "
                f"filter, {len(m['features'])} selected by LASSO")
        if lasso:
            info += (f" (lambda_min {num(lasso.get('lambda_min'), 5)}, lambda_1se {num(lasso.get('lambda_1se'), 5)}, "
                     f"rule {e(lasso.get('rule'))}, used {e(lasso.get('rule_used', lasso.get('rule')))}, "
                     f"lambda {num(lasso.get('lambda_chosen'), 5)})")
        out.append(f"<h3>{e(name)}: selected {e(m.get('roi'))} features and their coefficients</h3>"
                   f"<p>{info}.</p>"
                   + table(["", "Feature", "Coefficient", "Univariate test", "P"], rows, numeric=(2, 4))
                   + "".join(f'<p class="note">{e(n)}</p>' for n in m.get("notes", [])))
    for name in ("RDM", "clinical", "combined"):
        m = model["models"][name]
        rows = [["[0]", "(Intercept)", num(m["intercept"], 4)]] + [
            [f"[{i}]", f"<code>{e(f)}</code>", num(c, 4)] for i, (f, c) in enumerate(zip(m["features"], m["coefficients"]), 1)]
        out.append(f"<h3>{e(name)}</h3><p>{e(m.get('description'))}</p>" + table(["", "Input", "Coefficient"], rows, numeric=(2,))
                   + "".join(f'<p class="note">{e(n)}</p>' for n in m.get("notes", [])))
    ca = model.get("clinical_analysis", {})
    for key, title in (("univariate", "Univariate logistic regression of clinical variables (training)"),
                       ("multivariate", "Multivariate logistic regression of the candidates (p < 0.1)")):
        recs = ca.get(key) or []
        if recs:
            rows = [[f"<code>{e(r['variable'])}</code>", num(r.get("odds_ratio")),
                     f"{num(r.get('ci_low'))}–{num(r.get('ci_high'))}", pval(r.get("p")), e(r.get("note") or "")]
                    for r in recs]
            out.append(f"<h3>{e(title)}</h3>" + table(["Variable", "OR", "95% CI", "P", "Note"], rows, numeric=(1, 3)))
    return "".join(out)


def _robustness(model: dict) -> str:
    """The ICC screen (train --robustness/--min-icc): what it removed, the ICC of every selected feature."""
    r = model.get("robustness")
    if not r:
        return ""
    form = e(r.get("icc_form"))
    if r.get("min_icc") is not None:
        by_roi = ", ".join(f"{e(k)} {e(v)}" for k, v in sorted((r.get("removed_by_roi") or {}).items()))
        head = (f"<p>Features with {form} below {num(r['min_icc'], 2)} (or undefined) were removed before the "
                f"univariate filter: {e(r.get('n_removed'))} of {e(r.get('n_features'))}"
                + (f" ({by_roi})" if by_roi else "") + f"; robustness file <code>{e(r.get('file'))}</code>, "
                f"settings {e(r.get('settings_hash'))}.</p>")
    else:
        head = (f"<p>No robustness screen (no --min-icc); the {form} of the selected features from "
                f"<code>{e(r.get('file'))}</code>.</p>")
    rows = [[e(name), f"<code>{e(f)}</code>", num(v)] for name, feats in (r.get("selected") or {}).items()
            for f, v in feats.items()]
    return ("<h3>Robustness of the selected features (ICC under perturbations)</h3>" + head
            + (table(["Model", "Feature", form], rows, numeric=(2,)) if rows else "<p>No feature selected.</p>"))


def _equations(model: dict) -> str:
    out = []
    for name in MODEL_NAMES:
        m = model["models"][name]
        terms = [f"{m['intercept']:+.4f}"]
        for f, s, c, lo, hi in zip(m["features"], m["sources"], m["coefficients"], m["min"], m["max"]):
            if s == "feature":
                terms.append(f"{c:+.4f} × ({f} − {lo:.6g}) / ({hi:.6g} − {lo:.6g})")
            elif s == "model:RDM":
                terms.append(f"{c:+.4f} × RDM_score")
            else:
                terms.append(f"{c:+.4f} × {f}")
        out.append(f'<span class="eq">logit P({e(name)}) = ' + e(" ".join(terms)) + "</span>")
    return ("<p>P = 1 / (1 + exp(−logit)); RDM_score is the RDM's logit. Features are min-max normalised "
            "with the training minimum and maximum shown.</p>" + "".join(out))


def _auc_table(model: dict) -> str:
    rows = []
    for name in MODEL_NAMES:
        for key, title in COHORTS:
            ev = model["evaluation"].get(key, {}).get(name)
            if not ev or ev.get("auc") is None:
                continue
            c = ev.get("classification") or {}
            hl = ev.get("hosmer_lemeshow") or {}
            slope = ev.get("calibration_slope") or {}
            rows.append([e(name), e(title), num(ev["auc"]), f"{num(ev['ci_low'])}–{num(ev['ci_high'])}",
                         num(ev.get("cutoff")), num(c.get("accuracy")), num(c.get("sensitivity")),
                         num(c.get("specificity")), num(ev.get("brier")), pval(hl.get("p")), num(slope.get("slope"), 2)])
    return table(["Model", "Cohort", "AUC", "95% CI (DeLong)", "Cut-off", "Accuracy", "Sensitivity", "Specificity",
                  "Brier", "HL p", "Cal. slope"], rows, numeric=tuple(range(2, 11)))


def _comparisons(model: dict) -> str:
    rows = [[e(dict(COHORTS).get(c["cohort"], c["cohort"])), f"{e(c['model_a'])} vs {e(c['model_b'])}",
             num(c.get("auc_a")), num(c.get("auc_b")), num(c.get("diff")), num(c.get("z"), 2), pval(c.get("p"))]
            for c in model.get("comparisons", [])]
    return table(["Cohort", "Comparison", "AUC a", "AUC b", "Difference", "z", "P (DeLong)"], rows,
                 numeric=(2, 3, 4, 5, 6))


def _survival(model: dict) -> str:
    sv = model.get("survival", {})
    out = [f"<p>Risk groups by the combined model's probability at the training Youden cut-off "
           f"{num(model['risk']['cutoff'])}.</p>"]
    rows = []
    for endpoint, data in sv.get("endpoints", {}).items():
        out.append(f"<h3>{e(endpoint.upper())}</h3><figure>{km_figure(model, endpoint)}<figcaption>Kaplan-Meier "
                   f"{e(endpoint.upper())} by risk group with 95% CI and numbers at risk.</figcaption></figure>")
        for key, title in COHORTS:
            s = data.get(key)
            if not s:
                continue
            cox = s.get("cox") or {}
            g = s["groups"]
            rows.append([e(endpoint.upper()), e(title), e((g.get("high") or {}).get("n", 0)),
                         e((g.get("low") or {}).get("n", 0)), pval((s.get("logrank") or {}).get("p")),
                         num(cox.get("hr"), 2), f"{num(cox.get('ci_low'), 2)}–{num(cox.get('ci_high'), 2)}"])
    if rows:
        out.append(table(["Endpoint", "Cohort", "High risk n", "Low risk n", "Log-rank p", "HR (high vs low)",
                          "95% CI"], rows, numeric=(2, 3, 4, 5)))
    out += [f'<p class="note">{e(n)}</p>' for n in sv.get("notes", [])]
    return "".join(out)




def render_report(model: dict) -> str:
    """The report's HTML text for a loaded model dict."""
    versions = model.get("library_versions", {})
    gt = model.get("ground_truth")
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>DoseRadiomics model report</title><style>" + CSS + "</style></head><body>",
        "<h1>DoseRadiomics model report: prediction of radiochemotherapy resistance</h1>",
        f"<p>Model file written {e(model.get('created'))}; schema {e(model.get('schema'))} version "
        f"{e(model.get('schema_version'))}; checksum <code>{e(model.get('checksum'))}</code>. Method of Zhang et al., "
        "Transl Cancer Res 2025;14(3):1516.</p>",
        "<h2>Methods (TRIPOD)</h2>", _methods(model),
        "<h2>Cohort</h2>", _cohort_table(model),
        "<h3>Encoding of the clinical variables</h3>", _coding_table(model),
        "<h2>Numerical-stability screen</h2>", _stability(model),
        "<h2>Selected features and models</h2>", _feature_tables(model), _robustness(model),
        "<h2>Model equations</h2>", _equations(model),
        "<h2>Discrimination, classification and calibration</h2>", _auc_table(model),
        "<p>Cut-offs are each model's Youden cut-off in the training cohort, applied unchanged to the "
        "validation cohort.</p>",
        f"<figure>{roc_figure(model)}<figcaption>ROC curves.</figcaption></figure>",
        "<h3>DeLong comparisons</h3>", _comparisons(model),
        "<h2>Decision curves</h2>",
        f"<figure>{decision_figure(model)}<figcaption>Net benefit against threshold probability, with "
        "treat-all and treat-none.</figcaption></figure>",
        "<h2>Calibration</h2>",
        f"<figure>{calibration_figure(model)}<figcaption>Observed proportion against mean predicted "
        "probability in deciles of predicted risk.</figcaption></figure>",
        "<h2>Risk stratification</h2>", _survival(model),
    ]
    if gt:
        parts += ["<h2>Ground truth (synthetic cohort)</h2>",
                  f"<p>Validation cohort (n={e(gt['n'])}): combined model AUC {num(gt['combined_auc'])}, oracle AUC of "
                  f"the true probabilities {num(gt['oracle_auc'])} ({num(gt['oracle_ci_low'])}–"
                  f"{num(gt['oracle_ci_high'])}); ratio {num(gt['ratio'])}.</p>"]
        rep = gt.get("repeated_splits") or {}
        if rep.get("summary"):
            # One 66-patient validation cohort says little (AUC SE ~0.06): the spread over splits does.
            q = rep["summary"]
            sizes = rep.get("n_validation")
            sizes = "/".join(str(v) for v in sorted(set(sizes))) if isinstance(sizes, list) else sizes
            parts.append(
                f"<p>Over {e(len(rep.get('seeds', [])))} further random 7:3 splits (validation n="
                f"{e(sizes)}): combined model AUC median {num(q['combined_auc']['median'])} "
                f"(IQR {num(q['combined_auc']['q1'])}–{num(q['combined_auc']['q3'])}), oracle AUC median "
                f"{num(q['oracle_auc']['median'])} (IQR {num(q['oracle_auc']['q1'])}–{num(q['oracle_auc']['q3'])}); "
                f"oracle minus combined median {num(q['difference']['median'])}, below 0.1 in "
                f"{num(100 * rep['within_0_1'], 0)} % of splits. Each split: {e(rep.get('method', '').removeprefix('per seed: '))}.</p>")
    parts += trust_sections(model)  # EPV, separation, optimism, TRIPOD+AI (report_trust.py)
    ext = model.get("extraction", {})
    parts += ["<h2>Reproducibility</h2>",
              f"<p>Extraction settings hash <code>{e(ext.get('settings_hash'))}</code>; options "
              f"<code>{e(ext.get('options'))}</code>; seed {e(model['settings'].get('seed'))}.</p>",
              table(["Library", "Version"], [[e(k), e(v)] for k, v in versions.items()])]
    notes = model.get("notes") or []
    if notes:
        parts += ["<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>"]
    parts.append("</body></html>")
    return add_anchors("\n".join(parts))


def write_report(model_path, out_path) -> Path:
    """Load and validate a model file, write its HTML report; returns the report's path."""
    from .fileio import check_output_file
    check_output_file(out_path)
    model = load_model(model_path)
    try:
        text = render_report(model)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # load_model checks what prediction needs; the report also reads the descriptive sections
        # (cohort, evaluation, selection, survival, settings), which a hand-made file may lack
        what = f"'{exc.args[0]}' is missing" if isinstance(exc, KeyError) and exc.args else str(exc)
        raise ModelFileError(f"the model file cannot be reported: {what}", path=model_path,
                             hint="write the model with doseradiomics train; a hand-made or "
                                  "truncated file lacks the report's sections") from None
    # atomically: a kill or a full disk leaves the previous report whole
    return atomic_write_text(out_path, text)


def run(args) -> int:
    """``doseradiomics report``."""
    out = write_report(args.model, args.out)
    print(f"report written to {out}")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="write the HTML report of a model file",
        description="One self-contained HTML page: cohort table, selected features, AUCs with CIs, ROC, "
                    "decision and calibration curves, Kaplan-Meier risk groups, model equations and methods.")
    p.add_argument("--model", required=True, help="model.json from doseradiomics train")
    p.add_argument("--out", required=True, help="HTML file to write, e.g. report.html")
    p.set_defaults(func=run)
