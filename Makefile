# Regenerate the README's results (Kodak, all 24 images) with the shipped model (img2's family).
KODAK ?= ../shared/data/images/kodak

AUDIO ?= ../shared/data/audio/test
AUDIO_TRAIN ?= ../shared/data/audio/train

.PHONY: results results-audio test img2-family img2 aud2
results:
	vqcodec bench image $(KODAK) -o results/kodak
	vqcodec bench large $(KODAK)/kodim01.png -o results/kodak/large.json
	python scripts/model_card.py models/img2.safetensors results/kodak

test:
	python -m pytest -q

# The README's audio results: the test clips against Opus, then long stereo files (a test clip
# looped) for speed and memory in fresh processes.
results-audio:
	vqcodec bench audio $(AUDIO) -o results/audio
	vqcodec bench long $(AUDIO)/music_Kevin_MacLeod_-_Vibe_Ace.ogg -o results/audio/long.json --minutes 1 --minutes 60
	python scripts/audio_model_card.py models/aud2.safetensors results/audio

# img2's family from its training runs (issue 24): the installed versions retired (the files they
# made still decode: models/retired), a prior for each VQ-VAE (the training cache's, or the
# committed checkpoint's when the cache is gone), warm-started from the shipped prior, then the
# family's levels on held-out training photos; `make results` then measures it on Kodak.
# 60 minutes: img2's prior from scratch had 3,172 steps after 30, its files 2.4-5.4 % larger than after 65.
PRIOR_MINUTES ?= 60
img2-family:
	python -c 'from vqcodec.registry import retire_model; retire_model("img2"); retire_model("img2-16")'
	for name in img2 img2-16; do \
	  vqcodec train image -o models/$$name --config configs/$$name.toml --vqvae-minutes 0 \
	    --vqvae-from models/training/$$name.safetensors \
	    --prior-minutes $(PRIOR_MINUTES) --threads 1 & \
	done; wait
	python scripts/family_levels.py models/img2.safetensors models/img2-16.safetensors

# img2 alone from its training checkpoint, when only its decoder trained (the encoder and the
# codebooks frozen, so its codes and the shipped prior stay valid): the installed version
# retired, the prior warm-started from the shipped one for PRIOR_MINUTES on the codes' grids (in
# their own cache, for the reason given for aud2), the family's levels chosen again.
IMG2_CACHE ?= $(HOME)/.cache/vqcodec/img2-prior
img2:
	python -c 'from vqcodec.registry import retire_model; retire_model("img2")'
	vqcodec train image -o models/img2 --config configs/img2.toml --cache $(IMG2_CACHE) \
	  --vqvae-minutes 0 --vqvae-from models/training/img2.safetensors --prior-minutes $(PRIOR_MINUTES) --threads 1
	python scripts/family_levels.py models/img2.safetensors models/img2-16.safetensors

# aud2 from its training checkpoint (issue 25): the installed version retired (its files still
# decode), the prior warm-started from the shipped one. Its cache holds the prior's grids only
# (keyed on the codes, which are frozen): with a VQ-VAE state in it, training would resume that
# instead of the checkpoint. `make results-audio` then measures it.
AUD2_CACHE ?= $(HOME)/.cache/vqcodec/aud2-prior
aud2:
	python -c 'from vqcodec.registry import retire_model; retire_model("aud2")'
	vqcodec train audio $(AUDIO_TRAIN) -o models/aud2 --config configs/aud2-vocos.toml --cache $(AUD2_CACHE) \
	  --vqvae-minutes 0 --vqvae-from models/training/aud2-vocos.safetensors --prior-minutes $(PRIOR_MINUTES) --threads 1
