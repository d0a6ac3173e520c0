#!/usr/bin/env bash
# The main job on bundled data (make demo):
#  1. one real patient (OpenKBP pt_10: CT, planned dose, PTV70 as the target) through `extract`;
#  2. a synthetic cohort of 220 patients whose ground truth is known, through cohort extraction,
#     the paper's six models and the HTML report.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-demo-output}
BIN=.venv/bin
SAMPLE=Resources/SampleData/OpenKBP-pt_10
mkdir -p "$OUT"

echo "== 1/4 one patient: $SAMPLE -> $OUT/patient"
$BIN/doseradiomics extract --ct $SAMPLE/ct.nrrd --dose $SAMPLE/dose.nrrd --dose-unit Gy \
    --gtv $SAMPLE/mask_PTV70.nrrd --patient-id OpenKBP-pt_10 --out "$OUT/patient"

if ! $BIN/doseradiomics --help | grep -q cohort-extract; then
    echo "(cohort commands not available in this build: stopping after the single patient)"
    exit 0
fi

echo "== 2/4 synthetic cohort of 220 patients -> $OUT/cohort"
# --force: the demo folder is the demo's own; a rerun rewrites the same bytes
$BIN/doseradiomics synth --n 220 --seed 2025 --out "$OUT/cohort" --force

echo "== 3/4 cohort extraction (2 workers) -> $OUT/features"
$BIN/doseradiomics cohort-extract --manifest "$OUT/cohort/manifest.csv" --out "$OUT/features" --workers 2

echo "== 4/4 the six models and the report"
# 5 further random splits, not train's default 20: each refits the whole method (~30 CPU-s), and 5 still
# give the report its median and spread beside the split-sample, leave-one-centre-out and oracle figures
$BIN/doseradiomics train --features "$OUT/features/features.csv" --manifest "$OUT/cohort/manifest.csv" \
    --ground-truth "$OUT/cohort/ground_truth.csv" --seed 2025 --repeated-splits 5 --workers 2 --out "$OUT/model.json"
$BIN/doseradiomics report --model "$OUT/model.json" --out "$OUT/report.html"
echo "done: $OUT/patient/slice.png, $OUT/model.json, $OUT/report.html"
