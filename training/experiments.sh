#!/usr/bin/env bash
# The label-set and architecture comparison behind the shipped model (issue: training).
# Each run checkpoints every epoch and resumes with --resume, so re-running this script
# continues where a stopped session left off. RUNS defaults to ../runs beside the project.
# Two lanes share the 2 cores: the shipped hsno run, and the comparison runs after each other.
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/fer2013.zip}
RUNS=${RUNS:-../runs}
mkdir -p "$RUNS"
run() {
  local out=$1; shift
  echo "=== $(date -u +%FT%TZ) start $out $*"
  .venv/bin/moodcam-train fit --data "$DATA" --out "$RUNS/$out" --resume "$@"
  echo "=== $(date -u +%FT%TZ) end $out exit $?"
}
(
  run hsno-64 --labels hsno --size 64 --epochs 50 --version 2026.11.24-hsno64-e50
) > "$RUNS/lane-main.log" 2>&1 &
(
  run hs-64 --labels hs --size 64 --epochs 30 --version 2026.11.24-hs64
  run hsn-64 --labels hsn --size 64 --epochs 20 --version 2026.11.24-hsn64
  # The 2021 report's baseline: MobileNetV2 alpha 0.35, 96x96, Dense(10), dropout 0.2.
  run mnv2-hs-96 --labels hs --arch mobilenetv2 --size 96 --epochs 12 --lr 1e-3 \
    --version 2026.11.24-mnv2hs96
) > "$RUNS/lane-compare.log" 2>&1 &
wait
