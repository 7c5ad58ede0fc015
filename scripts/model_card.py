"""Write the Kodak tables of an image benchmark (`vqcodec bench image`) into the README and into
the model's card, between their `<!-- results:start -->` and `<!-- results:end -->` markers (the
card's other sections are written by hand: the sweep, the training curve across sessions).

python scripts/model_card.py models/img2.safetensors results/kodak
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vqcodec.quantizer import SEARCH_BEAM, SEARCHED_STAGES

README = Path(__file__).resolve().parent.parent / "README.md"


def fmt_bd(v):
    return "no overlap" if v is None else f"{v:+.1f} %"


def tables(results: Path) -> str:
    summary = json.loads((results / "summary.json").read_text())
    ours = json.loads((results / "vqcodec.json").read_text())["results"]
    lines = [
        "| quality | model, stages | bpp | PSNR-RGB (dB) | MS-SSIM | prior saves | encode (s) | decode (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, (q, saving) in enumerate(zip(ours["quality"], summary["prior_saving"], strict=True)):
        lines.append(
            f"| {q} | {saving['model']}, {saving['stages']} | {ours['bpp'][i]:.3f} | {ours['psnr-rgb'][i]:.2f} | "
            f"{ours['ms-ssim-rgb'][i]:.4f} | {saving['saving'] * 100:.1f} % | "
            f"{ours['encoding_time'][i]:.2f} | {ours['decoding_time'][i]:.2f} |"
        )
    lines += [
        "",
        "The prior's saving: whole files (headers and checks included) against log2(K) bits for every index.",
        "",
        "| BD-rate of vqcodec against | in PSNR | in MS-SSIM |",
        "|---|---|---|",
    ]
    for row in summary["bd_rate_vs_baselines"]:
        lines.append(
            f"| {row['baseline']} | {fmt_bd(row['bd_rate_psnr_percent'])} | {fmt_bd(row['bd_rate_ms_ssim_percent'])} |"
        )
    lines += ["", "| model | stage | codes | used on Kodak | entropy (bits) |", "|---|---|---|---|---|"]
    for row in summary["codebook_usage"]:
        lines.append(
            f"| {row['model']} | {row['stage']} | {row['codes']} | {row['used_fraction'] * 100:.1f} % | "
            f"{row['entropy_bits']:.2f} of {row['raw_bits']:.0f} |"
        )
    large = results / "large.json"
    if large.exists():
        lines += ["", "| image | encode (s) | decode (s) | peak memory (MB) |", "|---|---|---|---|"]
        for r in json.loads(large.read_text()):
            lines.append(
                f"| {r['width']}x{r['height']} ({r['megapixels']:.0f} MP) | {r['encode_s']:.1f} | "
                f"{r['decode_s']:.1f} | {r['peak_rss_mb']:.0f} |"
            )
    env = json.loads((results / "vqcodec.json").read_text())["environment"]  # where our timings come from
    lines += [
        "",
        f"vqcodec measured on {env['cpu_count']} CPU cores ({env['processor']}), {env['threads']} torch threads, "
        f"torch {env['torch']}, Python {env['python']}.",
    ]
    return "\n".join(lines)


# How the tables' files were coded (the audio card says it).
SEARCH_NOTE = f"""Encoded with the code search of `vqcodec.quantizer` (a beam of {SEARCH_BEAM} over the first
{SEARCHED_STAGES} stages), as `vqcodec compress` does."""


def publish(model: Path, card: str, table: str, marker: str) -> None:
    """Write the card beside the model, the table into the README between its markers, and show it."""
    model.with_suffix(".md").write_text(card)
    replace_between(README, marker, table)
    print(table)


def replace_between(path: Path, marker: str, text: str) -> None:
    """Replace what lies between the file's `<!-- marker:start -->` and `<!-- marker:end -->` (if both are there)."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    body = path.read_text()
    if start in body and end in body:
        head, rest = body.split(start, 1)
        path.write_text(head + start + "\n" + text + "\n" + end + rest.split(end, 1)[1])


if __name__ == "__main__":
    model, table = Path(sys.argv[1]), tables(Path(sys.argv[2]))
    for path in (model.with_suffix(".md"), README):  # the card's other sections are written by hand
        replace_between(path, "results", table)
    print(table)
