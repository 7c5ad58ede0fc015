#!/usr/bin/env bash
# Train VQ-VAEs on a lent GPU, each continuing its committed checkpoint, all at once on the one GPU.
#
#   bash scripts/gpu_train.sh MINUTES NAME...    (on the device machine, .gpu/ carried)
#
# Each NAME is a recipe, configs/NAME.toml, and a checkpoint, models/training/NAME.safetensors,
# whose metadata says image or audio (its data: .gpu/photos or .gpu/audio, scripts/gpu_pack.py).
# Each trains in its own process session (setsid), so it goes on between calls while the machine
# stays; this command waits MINUTES, then leaves in $OUT for each NAME the latest checkpoint
# (NAME.safetensors, with the committed evaluation log NAME.eval.jsonl unchanged), the device's
# own evaluations (NAME.device.eval.jsonl: on the pack's downscaled photos and Opus-coded clips,
# so not the committed curve's held-out files) and the training log (NAME.out). Copy NAME.* over
# models/training/ and commit; the next CPU run evaluates the new weights on the real files.
# Batch: BATCH (32 by default). Smoke test on the CPU:
#   DEVICE=cpu OUT=/tmp/gpu-out bash scripts/gpu_train.sh 1 img2 aud2-vocos
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=$1
shift
out=${OUT:?set OUT to the folder for the results}
python=${PYTHON:-python3}
if [ -d .gpu/wheels ] && ! $python -c "import constriction, soundfile, soxr, pytorch_msssim" 2>/dev/null; then
  $python -m pip install -q --no-index --no-deps --target /tmp/site .gpu/wheels/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
mkdir -p "$out"
kind_of() {
  $python -c "import sys; from vqcodec.weights import read_meta; print(read_meta(sys.argv[1])['kind'])" "$1"
}
for name in "$@"; do
  cache=/tmp/vqcodec-gpu/$name kind=$(kind_of "models/training/$name.safetensors")
  data=$([ "$kind" = image ] && echo .gpu/photos || echo .gpu/audio)
  mkdir -p "$cache"
  if ! { [ -f "$cache/train.pid" ] && kill -0 "$(cat "$cache/train.pid")" 2>/dev/null; }; then
    setsid nohup $python -m cli.main train "$kind" "$data" -o "models/training/$name" \
      --config "configs/$name.toml" --cache "$cache" --device "${DEVICE:-cuda}" --batch "${BATCH:-32}" \
      --vqvae-minutes 600 --prior-minutes 0 --save-every 1 >"$cache/train.out" 2>&1 </dev/null &
    echo $! >"$cache/train.pid"
  fi
done
sleep "$((minutes * 60))"
for name in "$@"; do
  cache=/tmp/vqcodec-gpu/$name
  for _ in $(seq 60); do [ -f "$cache/vqvae_state.safetensors" ] && break; sleep 5; done # the first save
  cp "$cache/train.out" "$out/$name.out"
  $python scripts/checkpoint.py "$cache" "$out/$name.safetensors"
  cp "$cache/vqvae_eval.jsonl" "$out/$name.device.eval.jsonl" 2>/dev/null || true
  rm "$out/$name.eval.jsonl" # the committed curve goes back as it was, without the device's evaluations
  [ ! -f "models/training/$name.eval.jsonl" ] || cp "models/training/$name.eval.jsonl" "$out/"
done
