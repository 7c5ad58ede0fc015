"""Compact resumable weights of a VQ-VAE training run, to commit once a session.

    python scripts/checkpoint.py CACHE OUT.safetensors

See `vqcodec.train.loop.save_checkpoint`: OUT holds the fp16 weights, step and training time;
OUT with suffix .eval.jsonl the whole-photo evaluations of every session so far.
"""

import sys
from pathlib import Path

from vqcodec.train.loop import save_checkpoint

if __name__ == "__main__":
    out = Path(sys.argv[2])
    step, seconds = save_checkpoint(Path(sys.argv[1]), out)
    print(f"{out}: step {step}, {seconds / 3600:.2f} training hours, {out.stat().st_size / 1e6:.1f} MB")
