"""What a section costs: ``--section largest`` (the paper), ``largest:K`` and ``volume``, per patient.

One process, one thread, CPU time (``time.process_time``) of ``extract_patient`` (read, align,
ROIs, 3 x 1,595 features, record), warm (each section's extractors built before timing). Patients:
OpenKBP (PTV70 as the GTV, 128^3 at about 4 x 4 x 2.5 mm: a real head-and-neck target of ~100-300 cm3)
and the synthetic cohort (96 x 96 x 20 at 1.5 x 1.5 x 3 mm). Ratios are to ``largest`` measured in the
same run on the same patients. Also the ROI voxel counts: the 3D cost follows them.

    .venv/bin/python benchmarks/bench_sections.py [--patients 4] [--synth 4] [--sections largest largest:2 volume]

Writes results/sections.json and the table between the ``sections`` markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import OrderedDict

from _common import SHARED_DATA, load_note, publish, stamp, synth_cohort
from DoseRadiomicsLib.manifest import read_manifest
from DoseRadiomicsLib.pipeline import ExtractionOptions, PatientInputs, extract_patient, extractors

DATA = SHARED_DATA / "openkbp_hn"


def openkbp_inputs(n: int) -> list:
    ids = sorted((p.name for p in DATA.glob("pt_*") if (p / "mask_PTV70.nrrd").is_file()),
                 key=lambda s: int(s.split("_")[1]))[:n]
    return [PatientInputs(i, str(DATA / i / "ct.nrrd"), str(DATA / i / "dose.nrrd"), str(DATA / i / "mask_PTV70.nrrd"),
                          dose_unit="Gy") for i in ids]


def synth_inputs(n: int) -> list:
    m = read_manifest(synth_cohort(max(n, 1)))
    return [PatientInputs(pid, r["ct"], r["dose"], r["gtv"], gtv_label=1, dose_unit="Gy")
            for pid, r in list(m.df.iterrows())[:n]]


def measure(inputs: list, sections: list) -> dict:
    out = OrderedDict()
    for s in sections:
        options = ExtractionOptions(section=s)
        extractors(options)
        cpu, voxels = [], []
        for p in inputs:
            c = time.process_time()
            r = extract_patient(p, options)
            cpu.append(time.process_time() - c)
            voxels.append(sum(r.record["roi_pixels"].values()))
        out[s] = {"cpu_s": cpu, "median_cpu_s": statistics.median(cpu), "median_roi_voxels": statistics.median(voxels)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=4)
    ap.add_argument("--synth", type=int, default=4)
    ap.add_argument("--sections", nargs="+", default=["largest", "largest:2", "volume"])
    args = ap.parse_args()
    sets = OrderedDict()
    if args.patients and DATA.is_dir():
        sets[f"OpenKBP PTV70 (n={args.patients})"] = measure(openkbp_inputs(args.patients), args.sections)
    if args.synth:
        sets[f"synthetic (n={args.synth})"] = measure(synth_inputs(args.synth), args.sections)
    lines = ["| section | " + " | ".join(sets) + " |", "|---|" + "---:|" * len(sets)]
    for s in args.sections:
        cells = []
        for res in sets.values():
            base = res[args.sections[0]]["median_cpu_s"]
            r = res[s]
            cells.append(f"{r['median_cpu_s']:.2f} s ({r['median_cpu_s'] / base:.1f}x), "
                         f"{r['median_roi_voxels']:.0f} ROI voxels")
        lines.append(f"| `{s}` | " + " | ".join(cells) + " |")
    note = (f"Median CPU seconds per patient of `extract_patient` (3 ROIs x 1,595 features), ratio to "
            f"`{args.sections[0]}` in the same run, and the median voxel count of the three ROIs. "
            f"`python benchmarks/bench_sections.py --patients {args.patients} --synth {args.synth}`, "
            f"{stamp()}, {load_note()}.")
    publish("sections", sets, "\n".join(lines), note)


if __name__ == "__main__":
    main()
