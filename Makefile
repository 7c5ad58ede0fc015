# Regenerate the README's results (Kodak, all 24 images) with the shipped model.
KODAK ?= ../shared/data/images/kodak

AUDIO ?= ../shared/data/audio/test

.PHONY: results results-audio test
results:
	vqcodec bench image $(KODAK) -o results/kodak
	vqcodec bench large $(KODAK)/kodim01.png -o results/kodak/large.json -q 6
	python scripts/model_card.py models/img1.safetensors results/kodak

test:
	python -m pytest -q

# The README's audio results: the test clips against Opus, then long stereo files (a test clip
# looped) for speed and memory in fresh processes.
results-audio:
	vqcodec bench audio $(AUDIO) -o results/audio
	vqcodec bench long $(AUDIO)/music_Kevin_MacLeod_-_Vibe_Ace.ogg -o results/audio/long.json --minutes 1 --minutes 60
	python scripts/audio_model_card.py models/aud1.safetensors results/audio
