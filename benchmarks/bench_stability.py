"""Cost of the numerical-stability screen per patient, against the extraction it screens.

For each of the first N OpenKBP patients (CT, dose, PTV70 as the GTV, the paper's configuration):
the CPU seconds of the whole extraction without the screen (read, align, slice, ROIs, 4,785
features, record: ``extract_patient`` with the screen off), of its feature stage alone
(``extract_rois``, keeping the filtered images as ``extract_patient`` does for the screen), and of the
screen (``stability.screen_rois`` on those images), all in this one run and process (threads pinned
to one, as in a cohort worker), each the median of ``--repeats`` runs. CPU time
(``time.process_time``) because the machine may be shared; the ratio is what the issue's target
(< 30 %) is about.

With ``--compare``, the screen is also run with one combined perturbation ("relative+storage", one
filter pass instead of two: cheaper, but not the same screen, see DoseRadiomicsLib/stability.py) and
its flags compared with the screen's, per feature and per filtered image (ROI x image type with at
least one flagged feature).

    .venv/bin/python benchmarks/bench_stability.py [--patients 6] [--repeats 3] [--compare]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

# before numpy: _common pins BLAS to one thread, which OpenBLAS reads when numpy loads it (unpinned, its
# spinning threads multiplied the CPU time of MCC's eigenvalues, the extraction's, up to tenfold under load)
from _common import SHARED_DATA, load_note, publish, stamp

import numpy as np  # noqa: E402


def _cpu(fn, *args, **kwargs):
    t0 = time.process_time()
    out = fn(*args, **kwargs)
    return out, time.process_time() - t0


def _median_cpu(repeats, fn, *args, **kwargs):
    runs = [_cpu(fn, *args, **kwargs) for _ in range(repeats)]
    return runs[0][0], float(np.median([t for _, t in runs]))


def _images(columns) -> set:
    """(ROI, image type) of feature columns ``ROI__imagetype_class_feature``."""
    return {(c.split("__", 1)[0], c.split("__", 1)[1].split("_", 1)[0]) for c in columns}


def main() -> None:
    from DoseRadiomicsLib import pipeline, stability

    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compare", action="store_true", help="also run the one-pass combined perturbation and compare")
    args = ap.parse_args()
    options = replace(pipeline.ExtractionOptions(), stability_screen=False)
    pipeline.extractors(options)
    folders = sorted((SHARED_DATA / "openkbp_hn").glob("pt_*"), key=lambda p: int(p.name[3:]))[: args.patients]

    def inputs(d):
        return pipeline.PatientInputs(d.name, str(d / "ct.nrrd"), str(d / "dose.nrrd"), str(d / "mask_PTV70.nrrd"),
                                      dose_unit="Gy")
    # one untimed patient first: pyradiomics' first call imports and builds caches
    pipeline.extract_patient(inputs(folders[0]), options)
    screened = stability.PERTURBATIONS
    rows, results = [], []
    for d in folders:
        result, extraction = _median_cpu(args.repeats, pipeline.extract_patient, inputs(d), options)
        kept: dict = {}
        features, stage = _median_cpu(args.repeats, lambda: pipeline.extract_rois(result.rois, options, keep=kept))
        screen, cost = _median_cpu(args.repeats, stability.screen_rois, result.rois, options, features, filtered=kept)
        row = {"patient": d.name, "extraction_cpu_s": extraction, "features_cpu_s": stage, "screen_cpu_s": cost,
               "ratio_extraction": cost / extraction, "ratio_features": cost / stage,
               "n_unstable": screen["n_unstable"], "roi_pixels": result.record["roi_pixels"],
               "texture_recomputed": sum(len(v) for r in screen["texture_recomputed"].values() for v in r.values())}
        cells = (f"| {d.name} | {'/'.join(str(v) for v in row['roi_pixels'].values())} | {extraction:.3f} | "
                 f"{stage:.3f} | {cost:.3f} | {cost / extraction:.0%} | {screen['n_unstable']:,} |")
        if args.compare:
            stability.PERTURBATIONS = ("relative+storage",)
            try:
                one, one_cost = _median_cpu(args.repeats, stability.screen_rois, result.rois, options, features,
                                            filtered=kept)
            finally:
                stability.PERTURBATIONS = screened
            a, b = set(screen["unstable"]), set(one["unstable"])
            row.update(combined_screen_cpu_s=one_cost, combined_n_unstable=len(b), both=len(a & b),
                       only_screen=len(a - b), only_combined=len(b - a), images_screen=len(_images(a)),
                       images_combined=len(_images(b)), images_both=len(_images(a) & _images(b)))
            cells += (f" {one_cost:.3f} ({one_cost / extraction:.0%}) | {len(b):,} | {len(a & b):,} / "
                      f"{len(a - b)} / {len(b - a)} | {row['images_both']} / {row['images_screen']} / "
                      f"{row['images_combined']} |")
        results.append(row)
        rows.append(cells)
        print(cells, flush=True)
    med = {k: float(np.median([r[k] for r in results])) for k in ("extraction_cpu_s", "features_cpu_s",
                                                                    "screen_cpu_s", "ratio_extraction")}
    head = ("| patient | ROI pixels (GTV/GTV-heat/50Gy-heat) | extraction CPU s | feature stage CPU s | "
            "screen CPU s | screen / extraction | unstable features |")
    rule = "|---|---|---|---|---|---|---|"
    total = (f"| **median of {len(results)}** | | {med['extraction_cpu_s']:.3f} | {med['features_cpu_s']:.3f} | "
             f"{med['screen_cpu_s']:.3f} | **{med['ratio_extraction']:.0%}** | "
             f"{int(np.median([r['n_unstable'] for r in results])):,} |")
    if args.compare:
        head += (" combined one-pass screen CPU s (/ extraction) | its unstable features | features both / only "
                 "screen / only combined | images both / screen / combined |")
        rule += "---|---|---|---|"
        med_one = float(np.median([r["combined_screen_cpu_s"] / r["extraction_cpu_s"] for r in results]))
        total += f" ({med_one:.0%}) | | | |"
    md = "\n".join([head, rule] + rows + [total])
    publish("stability", {"patients": results, "medians": med, "perturbations": list(screened)}, md,
            f"`python benchmarks/bench_stability.py --patients {args.patients} --repeats {args.repeats}"
            f"{' --compare' if args.compare else ''}`, {stamp()}, {load_note()}; one process, threads pinned to one; "
            f"each figure the median of {args.repeats} runs.")


if __name__ == "__main__":
    main()
