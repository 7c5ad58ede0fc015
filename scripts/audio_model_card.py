"""Write models/NAME.md (the audio model card) from the training report and the audio benchmark,
and the README's audio tables. A card written by hand (aud2's: a history no report holds) keeps
its text, and only the tables between its `audio-results` markers are measured again.

python scripts/audio_model_card.py models/aud2.safetensors results/audio
"""

from __future__ import annotations

import json
import math
import sys
from fractions import Fraction
from pathlib import Path

from model_card import README, SEARCH_NOTE, publish, replace_between  # this folder is on sys.path when run as a script

from vqcodec.train.audio import DEBIAN_AUDIO_PACKAGES
from vqcodec.train.loop import OFFERED_SHARE


def _file_counts(files: dict[str, int]) -> str:
    """'2256 speech and 71 music files' from the trainer's per-group counts."""
    return " and ".join(f"{count} {group}" for group, count in files.items()) + " files"


def _row(values: list, i: int, fmt: str) -> str:
    return format(values[i], fmt) if values and i < len(values) else "–"


def tables(results: Path) -> str:
    summary = json.loads((results / "summary.json").read_text())
    lines = []
    for group in ("speech", "music"):
        header = "| codec | asked | kbps (whole files) | mel distance |"
        header += " PESQ-WB | STOI |" if group == "speech" else ""
        lines += [f"**{group.capitalize()}**", "", header, "|" + "---|" * (header.count("|") - 1)]
        for name, groups in summary["codecs"].items():
            r = groups.get(group)
            if not r:
                continue
            for i, asked in enumerate(r["target_kbps"]):
                line = f"| {name.split(' (')[0]} | {asked:g} | {r['kbps'][i]:.2f} | {r['mel'][i]:.3f} |"
                if group == "speech":
                    line += f" {_row(r.get('pesq'), i, '.2f')} | {_row(r.get('stoi'), i, '.3f')} |"
                lines.append(line)
        lines.append("")
    ours = summary["codecs"]["vqcodec"]
    lines += ["| vqcodec at | prior's saving, speech | music | encode | decode |", "|---|---|---|---|---|"]
    speech, music = ours["speech"], ours["music"]
    for i, asked in enumerate(speech["target_kbps"]):
        lines.append(
            f"| {asked:g} kbps | {speech['prior_saving'][i] * 100:.1f} % | {music['prior_saving'][i] * 100:.1f} % | "
            f"{min(speech['encode_rtf'][i], music['encode_rtf'][i]):.1f}x real time | "
            f"{min(speech['decode_rtf'][i], music['decode_rtf'][i]):.1f}x real time |"
        )
    long = results / "long.json"
    if long.exists():
        lines += ["", "| 44.1 kHz stereo file | encode | decode | peak memory (encode / decode) |", "|---|---|---|---|"]
        for r in json.loads(long.read_text()):
            lines.append(
                f"| {r['minutes']:g} min at {r['bitrate']:g} kbps | {r['encode_realtime_x']:.1f}x real time | "
                f"{r['decode_realtime_x']:.1f}x real time | "
                f"{r['encode_peak_rss_mb']:.0f} / {r['decode_peak_rss_mb']:.0f} MB |"
            )
    env = summary["environment"]
    lines += [
        "",
        f"Measured on {env['cpu_count']} CPU cores ({env['processor']}), {env['threads']} torch threads, "
        f"torch {env['torch']}; {summary['clips']} clips of `{summary['folder']}`. Speeds are the slowest of the two "
        "groups' means, in-process with the model loaded.",
    ]
    return "\n".join(lines)


def recipe_notes(model: Path) -> str:
    """The comment lines of the model's recipe (they tell the training phases), quoted."""
    recipe = Path(__file__).parent.parent / "configs" / f"{model.stem}.toml"
    notes = [line[1:].strip() for line in recipe.read_text().splitlines() if line.startswith("#")]
    return "\n".join(f"  > {line}" for line in notes)


def dropout(settings: dict) -> str:
    """How the last training phase drew the number of stages per sample."""
    offered = settings.get("offered_stages")
    if not offered:
        return "half the samples use all stages, the others a uniform number"
    return (
        f"{Fraction(OFFERED_SHARE)} of the samples use one of {offered} stages (the command line's rates), "
        "the others a uniform number (earlier phases: half all stages, half uniform; see the recipe)"
    )


def _packages(group: str) -> str:
    """The Debian packages of one training group, as the card names them."""
    names = [f"`{name}`" for name, of in DEBIAN_AUDIO_PACKAGES.items() if of == group]
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]


def band_limit(settings: dict) -> str:
    """The share of band-limited segments, if any."""
    share = settings.get("band_limit_share")
    return f"; {share:.0%} of the segments band-limited to 8 or 16 kHz (resampled down and back)" if share else ""


def main(model: Path, results: Path) -> None:
    written = model.with_suffix(".md")
    if written.exists() and "<!-- audio-results:start -->" in written.read_text():
        table = tables(results)
        for path in (written, README):
            replace_between(path, "audio-results", table)
        print(table)
        return
    card = json.loads(model.with_suffix(".json").read_text())
    net, prior, report = card["net"], card["prior"], card["prior_report"]
    settings = card.get("training_settings", {})
    flt, exact = report["float_bits_per_index"], report["integer_bits_per_index"]
    cost = (sum(exact) - sum(flt)) / sum(flt) * 100
    hop = math.prod(net["strides"])
    saving = (1 - sum(exact) / (10 * len(exact))) * 100
    text = f"""# Model card: {model.stem}

Audio codec model of vqcodec: a 1-D VQ-VAE at {net["sample_rate"]} Hz with a residual quantizer
and an integer-exact prior.

## Architecture
- Encoder / decoder: 1-D convolutions, strides {net["strides"]} (hop {hop},
  {net["sample_rate"] / hop:g} frames per second), base width {net["base_width"]}
  doubling at each downsampling, residual units with dilations 1 and 3, latent dimension {net["latent_dim"]}.
- Residual VQ: {len(net["codebook_sizes"])} stages of {net["codebook_sizes"][0]} codes (0.75 kbps each before
  the prior), quantizer dropout: {dropout(settings)}.
- Prior: integer network, {prior["layers"]} convolutions {prior["kernel"][1]} frames wide of width
  {prior["hidden"]}, embeddings of {prior["embed_dim"]} per stage, one output head per
  stage; 4 decoding passes per stage (frames t mod 4 = 0, 2, 1, 3); int8 weights, 7-bit
  activations, exp lookup table.

## Training
- Data: {_file_counts(card["training_files"])}: the speech of `../shared/data/audio/train` (one reader, 37 min),
  Debian's {_packages("speech")} (short words, letters and syllables by many voices in
  many languages) and the {_packages("music")} soundtracks (about 6 hours).
  Speech and music are drawn in fixed shares (see the recipe); 1-second segments, random gain
  -20..0 dB after peak normalisation{band_limit(settings)}.
  The test clips were never used.
- VQ-VAE: {card["vqvae_steps"]} steps of batch 8, Adam; loss 0.1 L1(waveform) + multi-resolution STFT
  (log magnitude L1 + spectral convergence, 256-2048) + 2 log-mel distance + 0.25 commitment.
- Prior: {card["prior_steps"]} steps of batch 32 grids of 4 s, float then fake-quantized (last 30 %).
- Hardware: {card["hardware"]}; the curve is in `{model.stem}.json` (`vqvae_curve`).
- Recipe: `configs/{model.stem}.toml`, which says:
{recipe_notes(model)}
- Rebuild: `vqcodec train audio -o models/{model.stem} --config configs/{model.stem}.toml`; running it
  again continues from the cached state (or from the shipped weights).

## Cost of exactness and the prior's saving
Bits per index on held-out training audio (4-second segments of every 20th file, speech and
music drawn equally, at random gains of -20..0 dB, the short words padded with silence: quiet
and silent frames cost little, so this flatters the prior against whole recordings, see the
test set's table below), per stage (of log2(1024) = 10): float prior before quantization-aware
training {[round(x, 2) for x in flt]}, shipped integer prior {[round(x, 2) for x in exact]}:
{cost:+.2f} % in total for exactness; {saving:.1f} % saved against 10 bits per index.

## Audio test set (`vqcodec bench audio`)
{SEARCH_NOTE}

{tables(results)}
"""
    publish(model, text, tables(results), "audio-results")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
