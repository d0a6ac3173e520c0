"""The GTV ROI on a clinical-size CT: ours against pyradiomics used the naive way.

OpenKBP's 128^3 grids are small, so handing pyradiomics the whole volumes costs little there. A
planning CT is usually 512x512 in-plane: this times the GTV ROI of the pyradiomics test case lung1
(real chest CT, 512x512x48) both ways, CPU time of one warm process, one thread.

    .venv/bin/python benchmarks/bench_clinical_ct.py [--repeats 3]

Writes results/clinical_ct.json and the table between the ``clinical-ct`` markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time

# _common first: it pins BLAS/OpenMP threads before numpy loads
from _common import SHARED_DATA, load_note, publish, stamp
import numpy as np
import SimpleITK as sitk


from DoseRadiomicsLib.crosssection import extract_slice, largest_cross_section
from DoseRadiomicsLib.extraction import FeatureExtractor, parameter_file

def main(argv=None) -> int:
    import radiomics
    from radiomics import featureextractor

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    ct_path = SHARED_DATA / "pyradiomics_lung1" / "lung1_image.nrrd"
    label_path = SHARED_DATA / "pyradiomics_lung1" / "lung1_label.nrrd"
    radiomics.setVerbosity(logging.ERROR)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    ct = sitk.ReadImage(str(ct_path))
    gtv = sitk.Cast(sitk.ReadImage(str(label_path)) > 0, sitk.sitkUInt8)
    fx = FeatureExtractor(parameter_file("paper", "CT"))
    section = largest_cross_section(gtv)
    ct_slice, gtv_slice = extract_slice(ct, section), extract_slice(gtv, section)
    fx.extract(ct_slice, gtv_slice)                      # warm-up

    params = json.loads(json.dumps(fx.parameters))
    params["setting"]["preCrop"] = False                 # pyradiomics' default
    naive_extractor = featureextractor.RadiomicsFeatureExtractor(params)
    one_slice = np.zeros(sitk.GetArrayViewFromImage(gtv).shape, np.uint8)
    one_slice[section.index] = sitk.GetArrayFromImage(gtv)[section.index]
    mask = sitk.GetImageFromArray(one_slice)
    mask.CopyInformation(ct)

    ours, naive = [], []
    for _ in range(args.repeats):
        t = time.process_time()
        fx.extract(ct_slice, gtv_slice)
        ours.append(time.process_time() - t)
        t = time.process_time()
        out = naive_extractor.execute(ct, mask)
        naive.append(time.process_time() - t)
        assert sum(1 for k in out if not k.startswith("diagnostics")) == fx.expected_count
    result = {"ct_size": list(ct.GetSize()), "ours_cpu_s": statistics.median(ours),
              "naive_cpu_s": statistics.median(naive), "ratio": statistics.median(naive) / statistics.median(ours),
              "repeats": args.repeats}
    table = (
        "| lung1, GTV ROI, 1,595 features, CPU s (median) | value |\n|---|---:|\n"
        f"| CT size | {'x'.join(map(str, result['ct_size']))} |\n"
        f"| ours: the largest slice, pre-cropped filters | {result['ours_cpu_s']:.3f} |\n"
        f"| naive: pyradiomics on the full volume, one-slice mask | {result['naive_cpu_s']:.2f} |\n"
        f"| **naive / ours** (issue 2: >= 5x) | **{result['ratio']:.0f}x** |")
    note = f"_`benchmarks/bench_clinical_ct.py --repeats {args.repeats}`, {stamp()}, {load_note()}; one thread._"
    publish("clinical-ct", result, table, note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
