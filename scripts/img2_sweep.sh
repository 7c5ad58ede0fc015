#!/usr/bin/env bash
# The img2 architecture sweep: every recipe in configs/img2-sweep trains its VQ-VAE from scratch
# for the same wall-clock minutes on one CPU thread, two at a time (one per core), each in its
# own cache; the whole-photo evaluations land in CACHE/vqvae_eval.jsonl.
#   bash scripts/img2_sweep.sh [MINUTES]   (20 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-20}
root=${VQCODEC_SWEEP:-$HOME/.cache/vqcodec/img2-sweep}
mkdir -p "$root"
recipes=(configs/img2-sweep/*.toml)
for ((i = 0; i < ${#recipes[@]}; i += 2)); do
  for recipe in "${recipes[@]:i:2}"; do
    name=$(basename "$recipe" .toml)
    vqcodec train image ../shared/data/images/train -o "$root/$name" --config "$recipe" --cache "$root/$name" \
      --vqvae-minutes "$minutes" --prior-minutes 0 --save-every 5 --threads 1 --fresh >"$root/$name.out" 2>&1 &
  done
  wait
done
