#!/usr/bin/env bash
# Whole-process wall times of the command line (issue 28), median of 5 runs (min - max), on a
# Kodak photo at the default quality. Run it on an idle machine (pause a training run with
# kill -STOP PID, and kill -CONT PID after).
#   bash scripts/startup_times.sh [PHOTO]
set -euo pipefail
cd "$(dirname "$0")/.."
photo=${1:-../shared/data/images/kodak/kodim05.png}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
vqcodec compress "$photo" -o "$work/a.vqc" >/dev/null 2>&1
median() { sort -n | awk '{v[NR] = $1} END {printf "%.2f s (%.2f - %.2f)\n", v[int((NR + 1) / 2)], v[1], v[NR]}'; }
timed() { local start end; start=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; end=$(date +%s.%N); echo "$end - $start" | bc; }
declare -A commands=(
  [help]="vqcodec --help"
  [info]="vqcodec info $work/a.vqc"
  [usage_error]="vqcodec compress $photo -q 99 -o $work/x.vqc"
  [compress]="vqcodec compress $photo -o $work/a.vqc --force"
  [decompress]="vqcodec decompress $work/a.vqc -o $work/a.png --force"
  [inspect]="vqcodec inspect $work/a.vqc -o $work/i.png --force"
)
for name in help info usage_error compress decompress inspect; do
  printf "%-12s " "$name"
  for _ in 1 2 3 4 5; do timed ${commands[$name]}; done | median
done
