#!/usr/bin/env bash
# Run the scaling and metrics benchmarks and draw their charts into
# bench/charts/ (PNG, shown in bench/README.md). matplotlib is installed
# into a venv under target/ when missing.
#   bench/charts.sh
# Environment: what bench/scale.sh and bench/metrics_run.sh take.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/bench-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import matplotlib' 2>/dev/null || "$venv/bin/pip" install --quiet matplotlib==3.9.2
results=target/bench-results
mkdir -p "$results" bench/charts
rm -f "$results/scale.csv"
CSV="$results/scale.csv" bash bench/scale.sh
PREBUILT=1 bash bench/metrics_run.sh "$results/metrics.csv"
"$venv/bin/python" bench/plot.py scale "$results/scale.csv" bench/charts
"$venv/bin/python" bench/plot.py metrics "$results/metrics.csv" bench/charts
ls -l bench/charts
