#!/usr/bin/env bash
# An architecture sweep at equal wall-clock time: every recipe in configs/NAME-sweep trains its
# VQ-VAE from scratch for the same minutes on one CPU thread, two at a time (one per core), each
# in its own cache; the held-out evaluations land in CACHE/vqvae_eval.jsonl, and
# `python scripts/sweep_table.py ~/.cache/vqcodec/NAME-sweep` tabulates them.
#   bash scripts/sweep.sh image img2 [MINUTES]    (20 by default)
#   bash scripts/sweep.sh audio aud2 20 b-snake16 c-snake16-l128   (only those candidates)
#   bash scripts/sweep.sh audio aud2 [MINUTES]
# With VQCODEC_SWEEP_FROM=WEIGHTS (e.g. models/aud1.safetensors) every candidate starts from those
# weights instead of from scratch (the layers its network shares with them; the rest is new).
set -euo pipefail
cd "$(dirname "$0")/.."
kind=$1 name=$2 minutes=${3:-20}
shift $(($# < 3 ? $# : 3))
data=../shared/data/$([ "$kind" = image ] && echo images || echo audio)/train
root=${VQCODEC_SWEEP:-$HOME/.cache/vqcodec/$name-sweep}
parallel=${VQCODEC_SWEEP_PARALLEL:-2}
mkdir -p "$root"
recipes=(configs/"$name"-sweep/*.toml)
if (($#)); then recipes=("${@/#/configs/$name-sweep/}") && recipes=("${recipes[@]/%/.toml}"); fi
for ((i = 0; i < ${#recipes[@]}; i += parallel)); do
  for recipe in "${recipes[@]:i:parallel}"; do
    candidate=$(basename "$recipe" .toml) start=--fresh
    if [ -n "${VQCODEC_SWEEP_FROM:-}" ]; then
      rm -rf "${root:?}/$candidate" && cp "$VQCODEC_SWEEP_FROM" "$root/$candidate.safetensors" && start=
    fi
    vqcodec train "$kind" "$data" -o "$root/$candidate" --config "$recipe" --cache "$root/$candidate" \
      --vqvae-minutes "$minutes" --prior-minutes 0 --save-every 5 --threads 1 $start >"$root/$candidate.out" 2>&1 &
  done
  wait
done
