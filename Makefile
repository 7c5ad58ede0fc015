# Regenerate the README's results (Kodak, all 24 images) with the shipped model.
KODAK ?= ../shared/data/images/kodak

.PHONY: results test
results:
	vqcodec bench image $(KODAK) -o results/kodak
	vqcodec bench large $(KODAK)/kodim01.png -o results/kodak/large.json -q 6

test:
	python -m pytest -q
