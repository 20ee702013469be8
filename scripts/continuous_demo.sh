#!/usr/bin/env bash
# Continuous training, shown on three data drops of the sample generator: the pipeline runs
# after each drop (README "Data that keeps arriving"). Extra arguments go to every run,
# e.g. scripts/continuous_demo.sh --accept_anomaly=class_drift
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=${OUT:-runs/continuous-demo}
DROPS="$OUT/drops"
for span in 1 2 3; do
  if [ ! -d "$DROPS/span-$span" ]; then
    $PY -m data.sample_data --output_dir "$DROPS/span-$span" --num_train 200 --num_val 50 \
      --seed "$span"
  fi
  $PY run_pipeline.py --runner=local --output_dir="$OUT/run" --dataset=spans \
    --span_pattern="$DROPS/span-{SPAN}" --window=2 --continue_steps=300 "$@"
done
echo "Lineage of the last pushed model: $PY -m pipeline.lineage --metadata $OUT/run/metadata.sqlite"
