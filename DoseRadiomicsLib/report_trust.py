"""The report's sections a reviewer checks first: events per variable, separation, optimism-corrected
figures, and the TRIPOD+AI checklist (Collins et al., BMJ 2024;385:e078378).

Everything is read from the model file, tolerantly: keys written by newer training code (separation,
events per variable, bootstrap optimism, leave-one-centre-out; see docs/tripod_ai.md for the names)
are shown when present and reported as "not done" when absent, never guessed.
"""

from __future__ import annotations

import re

from .modelfile import MODEL_NAMES

EPV_WARN = 10  # the classic rule of thumb (Peduzzi 1996); Riley et al. 2020 give a cohort-specific size
# a coefficient this large on a [0, 1]-normalised input (an odds ratio above e^15 over the training range)
# is what quasi-complete separation leaves behind
SEPARATION_COEF = 15.0


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def add_anchors(text: str) -> str:
    """Give every ``<h2>`` an ``id`` (its slug) so that the checklist can link to it."""
    return re.sub(r"<h2>(.*?)</h2>", lambda m: f'<h2 id="{slug(re.sub(r"<[^>]+>", "", m.group(1)))}">'
                  f"{m.group(1)}</h2>", text)


def _link(title: str) -> str:
    from .report import e
    return f'<a href="#{slug(title)}">{e(title)}</a>'


# --------------------------------------------------------------------------------------------
# Events per variable and separation


def events_per_variable(model: dict) -> list:
    """One row per model: fit, inputs, the smaller outcome class in training, EPV (recorded by
    ``train`` in ``models.<name>.events_per_variable``, else computed here from the cohort)."""
    train = model["cohort"]["train"]
    smaller = min(train["events"], train["n"] - train["events"])
    rows = []
    for name in MODEL_NAMES:
        m = model["models"][name]
        recorded = m.get("events_per_variable")
        if isinstance(recorded, dict):
            rows.append({"model": name, "fit": m.get("fit_method"), "inputs": recorded.get("inputs"),
                         "smaller_class": recorded.get("minority_class_n"), "epv": recorded.get("epv"),
                         "source": "model file", "candidates": recorded.get("candidates"),
                         "epv_candidates": recorded.get("epv_candidates")})
            continue
        k = len(m["features"])
        candidates = (model.get("selection", {}).get(name) or {}).get("n_after_filter")
        rows.append({"model": name, "fit": m.get("fit_method"), "inputs": k, "smaller_class": smaller,
                     "epv": smaller / k if k else None, "source": "computed by the report",
                     "candidates": candidates, "epv_candidates": smaller / candidates if candidates else None})
    return rows


def separation_flags(model: dict) -> list:
    """(model, message) for every model whose maximum-likelihood fit shows separation: the check
    ``train`` recorded (``models.<name>.separation``), or, in files without it, what the coefficients
    show."""
    out = []
    for name in MODEL_NAMES:
        m = model["models"][name]
        sep = m.get("separation")
        if isinstance(sep, dict):
            if sep.get("separation"):
                out.append((name, "; ".join(sep.get("reasons") or []) or "separation detected in training"))
            continue
        if "separation" in m:  # recorded as None: intercept only, nothing to separate
            continue
        train_auc = ((model.get("evaluation", {}).get("train") or {}).get(name) or {}).get("auc")
        big = [f for f, c, s in zip(m["features"], m["coefficients"], m["sources"])
               if s == "feature" and abs(c) > SEPARATION_COEF]
        if train_auc == 1.0:
            out.append((name, "training AUC 1.000: the outcome is perfectly separated in training "
                              "(maximum-likelihood coefficients diverge)"))
        elif big:
            out.append((name, f"{len(big)} coefficient(s) above {SEPARATION_COEF:g} on [0, 1]-normalised "
                              "inputs, the signature of quasi-complete separation (checked by the report "
                              "from the coefficients; this model file records no separation check)"))
    return out


def _epv_section(model: dict) -> str:
    from .report import e, num, table
    rows = []
    for r in events_per_variable(model):
        flag = r["epv"] is not None and r["epv"] < EPV_WARN
        rows.append([e(r["model"]), e(r["fit"]), e(r["inputs"]), e(r["smaller_class"]),
                     (f'<span class="note">{num(r["epv"], 1)}</span>' if flag else num(r["epv"], 1)),
                     e(r["source"]), e(r["candidates"]) if r["candidates"] is not None else "–",
                     num(r["epv_candidates"], 2)])
    method = (model.get("settings", {}).get("penalised_description") or model.get("settings", {}).get("penalised")
              or "maximum likelihood (unpenalised)")
    out = []
    warnings = model.get("warnings") or []
    if warnings:
        out.append('<p class="note"><b>Warnings from training.</b></p><ul>'
                   + "".join(f'<li class="note">{e(w)}</li>' for w in warnings) + "</ul>")
    out += ["<p>Events per variable (EPV): the smaller outcome class in the training cohort divided by the "
            "model's inputs, and by the candidate features LASSO chose from (what the selection had to "
            f"support). Below {EPV_WARN} (highlighted) the coefficients are unstable and overfitting is "
            f"likely. Multivariable fits: {e(method)}.</p>",
            table(["Model", "Fit", "Inputs", "Smaller class (training)", "EPV", "EPV from",
                   "Candidates after filter", "EPV on candidates"], rows, numeric=(2, 3, 4, 6, 7))]
    flags = separation_flags(model)
    if flags:
        out.append('<p class="note"><b>Separation warnings.</b></p><ul>' + "".join(
            f'<li class="note"><b>{e(n)}</b>: {e(msg)}</li>' for n, msg in flags) + "</ul>")
    else:
        out.append("<p>No separation recorded or visible in the coefficients.</p>")
    return "".join(out)


def _optimism_section(model: dict) -> str:
    """Harrell's bootstrap optimism correction beside the split-sample figures, and leave-one-centre-out
    validation, as ``train`` records them in ``internal_validation``."""
    from .report import e, num, table
    iv = model.get("internal_validation") or {}
    order = [n for n in MODEL_NAMES if n in model.get("models", {})]
    out = []
    boot = iv.get("bootstrap")
    if boot:
        val = model.get("evaluation", {}).get("validation", {})
        rows = []
        for name in order:
            sm = boot["summary"].get(name)
            if not sm:
                continue
            rows.append([e(name)] + [num(sm["auc"][k]) for k in ("apparent", "optimism", "corrected")]
                        + [num(sm["auc"].get("estimate_632plus"))]  # absent in model files before round 3
                        + [num(val.get(name, {}).get("auc"))]
                        + [num(sm["calibration_slope"][k]) for k in ("corrected", "test_mean")]
                        + [num(sm["brier"][k]) for k in ("apparent", "corrected")]
                        + [num(val.get(name, {}).get("brier"))])
        out += ["<h3>Bootstrap optimism correction (Harrell)</h3>",
                f"<p>{e(boot['completed'])} of {e(boot['replicates'])} replicates (seed {e(boot['seed'])}, "
                f"{e(boot['replicate_seeds'])}), training cohort n={e(boot['n'])}. {e(boot['method'])}</p>",
                table(["Model", "AUC apparent", "optimism", "AUC corrected", "AUC .632+ (out of bag)",
                       "AUC validation (split)", "Calibration slope corrected",
                       "Calibration slope of the refits on the training cohort (mean)",
                       "Brier apparent", "Brier corrected", "Brier validation (split)"],
                      rows, numeric=tuple(range(1, 11)))]
    else:
        out.append("<p>Bootstrap optimism correction: not done for this model file (<code>train --bootstrap "
                   "N</code>).</p>")
    loco = iv.get("leave_one_centre_out")
    if loco:
        rows = []
        for r in loco["centres"]:
            if "error" in r:
                rows.append([e(r["centre"]), e(r["n"]), "–", e(f"not assessed: {r['error']}"), "–", "–"])
                continue
            c = r["models"].get("combined", {})
            rows.append([e(r["centre"]), e(r["n"]), e(r["events"]),
                         f"{num(c.get('auc'))} ({num(c.get('ci_low'))}–{num(c.get('ci_high'))})",
                         num(c.get("calibration_slope")), num(c.get("brier"))])
        out += ["<h3>Leave-one-centre-out validation (combined model)</h3>", f"<p>{e(loco['method'])}.</p>",
                table(["Centre left out", "n", "Events", "AUC (95% CI)", "Calibration slope", "Brier"], rows,
                      numeric=(1, 2, 4, 5))]
    return "".join(out)


# --------------------------------------------------------------------------------------------
# TRIPOD+AI


def tripod_ai_items(model: dict) -> list:
    """(item, topic, status, where-or-why) for every TRIPOD+AI item; status in reported / partly /
    not applicable / not done / manuscript."""
    iv = model.get("internal_validation") or {}
    boot, loco = iv.get("bootstrap"), iv.get("leave_one_centre_out")
    h = model.get("harmonisation")
    gt = model.get("ground_truth")
    M = "manuscript"
    methods, cohort, feats = _link("Methods (TRIPOD)"), _link("Cohort"), _link("Selected features and models")
    eq, perf = _link("Model equations"), _link("Discrimination, classification and calibration")
    epv, iv_link = _link("Events per variable and separation"), _link("Internal validation")
    calib, dca, risk = _link("Calibration"), _link("Decision curves"), _link("Risk stratification")
    repro = _link("Reproducibility")
    return [
        ("1", "Title", M, "the title of the paper is the authors' (this page is the model's report)"),
        ("2", "Abstract", M, "TRIPOD+AI for Abstracts: the authors'"),
        ("3a-c", "Background: healthcare context, rationale, existing models", M, "not knowable from a model file"),
        ("4", "Objectives: development and/or evaluation", "reported",
         f"{methods}: development with internal validation by a random split"),
        ("5a", "Sources of data", "reported", f"{methods} (cohort manifest); {cohort}"),
        ("5b", "Dates of data collection", "not done", "the manifest has no dates: add them in the manuscript"),
        ("6a", "Setting, locations, centres", "partly",
         ("centres " + ", ".join(h["centres"]) + " (ComBat harmonisation)") if h else
         "centres are not recorded in the model file unless ComBat harmonisation was used"),
        ("6b", "Eligibility criteria", "partly", f"{methods}: patients with an outcome and features; clinical "
                                                  "criteria are the authors'"),
        ("6c", "Treatments received", "partly", f"{cohort}: treatment mode and RT technique where in the manifest"),
        ("7", "Data preparation and quality checks", "reported",
         f"{methods}: features with missing values or constant in training dropped; {repro}: extraction settings hash"),
        ("8a-c", "Outcome: definition, timing, blinding", "partly",
         f"{methods}: RECIST 1.1 (manifest); timing and blinded assessment are the authors'"),
        ("9a-c", "Predictors: choice, definition, blinding", "reported",
         f"{methods}; {feats}; {cohort} (clinical encodings)"),
        ("10", "Sample size", "reported", f"{methods} (numbers of patients and events); {epv}"),
        ("11", "Missing data", "reported", f"{methods}: exclusions counted, training median/mode imputation"),
        ("12a", "Use of the data (development/evaluation split)", "reported", f"{methods}: {e_split(model)}"),
        ("12b", "Predictor handling (transformations, harmonisation)", "reported",
         f"{methods}: min-max normalisation fitted on training"
         + (f"; {_link('Harmonisation')}: ComBat by centre" if h else "")),
        ("12c", "Model type, building, selection, internal validation", "reported",
         f"{methods}; {feats}; {iv_link}"),
        ("12d", "Heterogeneity between centres", "reported" if (loco or h) else "not done",
         "; ".join(x for x in ("leave-one-centre-out in " + iv_link if loco else "",
                               _link("Harmonisation") + ": ComBat" if h else "") if x)
         or "the manifest's centres were not used (no harmonisation, no leave-one-centre-out)"),
        ("12e", "Performance measures and their rationale", "reported",
         f"{perf}: AUC with DeLong CI, accuracy/sensitivity/specificity at the Youden cut-off; {calib}; {dca}"),
        ("12f", "Model updating (recalibration)", "not applicable",
         "development report; external recalibration is reported by doseradiomics validate --recalibrate"),
        ("12g", "Fairness: performance across groups", "not done", "no subgroup analysis by sex, age or centre"),
        ("13", "Class imbalance", "reported",
         f"{cohort}: event rate {model['cohort']['events']}/{model['cohort']['n']}; no resampling or class weights"),
        ("14", "Fairness approaches", "not done", "no fairness constraint; see 12g"),
        ("15", "Model output and cut-off", "reported", f"{eq}: probability of resistance; {risk}: the cut-off"),
        ("16", "Differences between development and evaluation data", "reported",
         f"{cohort}: training vs validation with p-values"),
        ("17", "Ethical approval", M, "the study's, not the software's"),
        ("18a-f", "Open science: funding, conflicts, protocol, registration, data and code", "partly",
         f"code: DoseRadiomics (open source); {repro}: versions and settings; the rest are the authors'"),
        ("19", "Patient and public involvement", M, "the authors'"),
        ("20a", "Participant flow", "partly", f"{methods}: inclusions and exclusions counted (no flow diagram)"),
        ("20b", "Participant characteristics", "reported", f"{cohort} (Table 1 style)"),
        ("20c", "Development vs evaluation characteristics", "reported", f"{cohort}: P values between cohorts"),
        ("21", "Participants and outcome events in each analysis", "reported", f"{methods}; {epv}"),
        ("22", "Full model specification", "reported", f"{eq}; {feats} (coefficients, normalisation ranges)"),
        ("23a", "Performance with CIs", "reported",
         f"{perf}; {calib}; {dca}" + (f"; {iv_link}: optimism-corrected" if boot else "")),
        ("23b", "Heterogeneity of performance across centres", "reported" if loco else "not done",
         f"{iv_link}" if loco else "no leave-one-centre-out in this model file"),
        ("24", "Model updating results", "not applicable", "nothing updated in development"),
        ("25", "Interpretation", M, "the authors'" + ("; " + _link("Ground truth (synthetic cohort)")
                                                      + " for a synthetic cohort" if gt else "")),
        ("26", "Limitations", "partly", f"{epv}: EPV and separation; {_link('Notes')}" if model.get("notes") else
         f"{epv}: EPV and separation"),
        ("27a-c", "Usability: input data quality, user interaction, applicability", "partly",
         f"{repro}: the extraction settings a new patient must be extracted with (predict refuses others)"),
    ]


def e_split(model: dict) -> str:
    from .report import e
    return e(model["cohort"].get("split"))


STATUS_STYLE = {"reported": "#2ca02c", "partly": "#b8860b", "not done": "#d62728", "not applicable": "#777",
                "manuscript": "#1f77b4"}


def _tripod_section(model: dict) -> str:
    from .report import e, table
    rows = [[e(item), e(topic), f'<b style="color:{STATUS_STYLE[status]}">{e(status)}</b>', where]
            for item, topic, status, where in tripod_ai_items(model)]
    counts = {}
    for _, _, status, _ in tripod_ai_items(model):
        counts[status] = counts.get(status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    return ("<p>TRIPOD+AI (Collins et al., BMJ 2024;385:e078378): where this report answers each item, or why "
            f"not. <i>manuscript</i>: the authors' to report. {e(summary)}.</p>"
            + table(["Item", "Topic", "Status", "Where in this report, or why not"], rows))


def _harmonisation_section(model: dict) -> str:
    from .report import e, table
    h = model["harmonisation"]
    rows = [[e(c), e(h.get("n_train", {}).get(c)), e(h.get("iterations", {}).get(c))] for c in h["centres"]]
    return (f"<p>ComBat ({e(h.get('reference'))}) fitted on the training cohort before normalisation, protecting "
            f"{e(', '.join(h.get('covariates', [])))}; applied to every patient as <code>{e(h.get('applied_as'))}"
            f"</code>. Stored for the {len(h['features'])} features the models use. A patient of another "
            f"centre: {e(h['unknown_centre'])}.</p>"
            + table(["Centre", "Training patients", "EB iterations"], rows, numeric=(1, 2)))


def trust_sections(model: dict) -> list:
    """The report's parts (HTML strings) of this module, in order."""
    harmonised = ["<h2>Harmonisation</h2>", _harmonisation_section(model)] if model.get("harmonisation") else []
    return [*harmonised, "<h2>Events per variable and separation</h2>", _epv_section(model),
            "<h2>Internal validation</h2>", _optimism_section(model),
            '<h2>TRIPOD+AI checklist</h2>', _tripod_section(model)]
