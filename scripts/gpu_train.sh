#!/usr/bin/env bash
# Train an image model's VQ-VAE on a lent GPU, continuing the committed checkpoint.
#
#   bash scripts/gpu_train.sh NAME MINUTES [BATCH]    (on the device machine, .gpu/ carried)
#
# NAME is a recipe, configs/NAME.toml, and a checkpoint, models/training/NAME.safetensors
# (fp16 weights and the evaluation log: scripts/checkpoint.py). The training runs in its own
# process session (setsid), so it goes on between calls while the machine stays; this command
# waits MINUTES, then leaves the latest checkpoint and evaluations in $OUT, and the training
# log in $OUT/NAME.out. Copy them back over models/training/ and commit.
# Smoke test on the CPU: DEVICE=cpu OUT=/tmp/gpu-out bash scripts/gpu_train.sh NAME 1
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 minutes=$2 batch=${3:-32}
out=${OUT:?set OUT to the folder for the results}
cache=/tmp/vqcodec-gpu/$name
python=${PYTHON:-python3}
if [ -d .gpu/wheels ] && ! $python -c "import pytorch_msssim" 2>/dev/null; then
  $python -m pip install -q --no-index --no-deps --target /tmp/site .gpu/wheels/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
mkdir -p "$cache" "$out"
if ! { [ -f "$cache/train.pid" ] && kill -0 "$(cat "$cache/train.pid")" 2>/dev/null; }; then
  setsid nohup $python -m cli.main train image .gpu/photos -o "models/training/$name" \
    --config "configs/$name.toml" --cache "$cache" --device "${DEVICE:-cuda}" --batch "$batch" \
    --vqvae-minutes 600 --prior-minutes 0 --save-every 1 >"$cache/train.out" 2>&1 </dev/null &
  echo $! >"$cache/train.pid"
fi
sleep "$((minutes * 60))"
for _ in $(seq 60); do [ -f "$cache/vqvae_state.safetensors" ] && break; sleep 5; done  # the first save
cp "models/training/$name.eval.jsonl" "$out/" 2>/dev/null || true
$python scripts/checkpoint.py "$cache" "$out/$name.safetensors"
cp "$cache/train.out" "$out/$name.out"
