"""Cost of the numerical-stability screen per patient, against the extraction it screens.

For each of the first N OpenKBP patients (CT, dose, PTV70 as the GTV, the paper's configuration):
the CPU seconds of the whole extraction without the screen (read, align, slice, ROIs, 4,785
features, record: ``load_patient`` + ``measure_patient``), of its feature stage alone
(``extract_rois``), and of the screen (``stability.screen_rois``) on the same ROIs, all in this one
run and process (threads pinned to one, as in a cohort worker). CPU time (``time.process_time``)
because the machine may be shared; the ratio is what the issue's target (< 30 %) is about.

    .venv/bin/python benchmarks/bench_stability.py [--patients 6]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from _common import SHARED_DATA, load_note, publish, stamp


def main() -> None:
    from DoseRadiomicsLib import pipeline, stability

    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=6)
    args = ap.parse_args()
    options = replace(pipeline.ExtractionOptions(), stability_screen=False)
    pipeline.extractors(options)
    folders = sorted((SHARED_DATA / "openkbp_hn").glob("pt_*"), key=lambda p: int(p.name[3:]))[: args.patients]
    # one untimed patient first: pyradiomics' first call imports and builds caches
    warm = folders[0]
    pipeline.extract_patient(pipeline.PatientInputs(warm.name, str(warm / "ct.nrrd"), str(warm / "dose.nrrd"),
                                                    str(warm / "mask_PTV70.nrrd"), dose_unit="Gy"), options)
    rows, results = [], []
    for d in folders:
        inputs = pipeline.PatientInputs(d.name, str(d / "ct.nrrd"), str(d / "dose.nrrd"), str(d / "mask_PTV70.nrrd"),
                                        dose_unit="Gy")
        t0 = time.process_time()
        result = pipeline.extract_patient(inputs, options)
        extraction = time.process_time() - t0
        t0 = time.process_time()
        pipeline.extract_rois(result.rois, options)
        features = time.process_time() - t0
        t0 = time.process_time()
        screen = stability.screen_rois(result.rois, options, {k: v for k, v in result.features.items()
                                                              if not k.startswith(pipeline.DIAGNOSTIC_PREFIX)})
        cost = time.process_time() - t0
        recomputed = sum(len(v) for r in screen["texture_recomputed"].values() for v in r.values())
        pixels = result.record["roi_pixels"]
        results.append({"patient": d.name, "extraction_cpu_s": extraction, "features_cpu_s": features,
                        "screen_cpu_s": cost, "ratio_extraction": cost / extraction, "ratio_features": cost / features,
                        "n_unstable": screen["n_unstable"], "texture_recomputed": recomputed, "roi_pixels": pixels})
        rows.append(f"| {d.name} | {'/'.join(str(pixels[k]) for k in pixels)} | {extraction:.2f} | {features:.2f} | "
                    f"{cost:.2f} | {cost / extraction:.0%} | {cost / features:.0%} | {screen['n_unstable']:,} | "
                    f"{recomputed} of {2 * 17 * len(pixels)} |")
    tot = {k: float(sum(r[k] for r in results)) for k in ("extraction_cpu_s", "features_cpu_s", "screen_cpu_s")}
    md = ("| patient | ROI pixels (GTV/GTV-heat/50Gy-heat) | extraction CPU s | feature stage CPU s | screen CPU s | "
          "screen / extraction | screen / feature stage | unstable features | images whose texture was recomputed |\n"
          "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) +
          f"\n| **all {len(results)}** | | {tot['extraction_cpu_s']:.2f} | {tot['features_cpu_s']:.2f} | "
          f"{tot['screen_cpu_s']:.2f} | **{tot['screen_cpu_s'] / tot['extraction_cpu_s']:.0%}** | "
          f"{tot['screen_cpu_s'] / tot['features_cpu_s']:.0%} | median "
          f"{int(np.median([r['n_unstable'] for r in results])):,} | |")
    publish("stability", {"patients": results, "totals": tot}, md,
            f"`python benchmarks/bench_stability.py --patients {args.patients}`, {stamp()}, {load_note()}; "
            "one process, threads pinned to one.")


if __name__ == "__main__":
    main()
