from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import vqcodec
from vqcodec import container
from vqcodec.bench.image import psnr_rgb
from vqcodec.codec import image as image_codec
from vqcodec.entropy import decode_grid, encode_stages
from vqcodec.errors import BadInputError, CorruptFileError, MissingModelError, UsageError
from vqcodec.registry import load_image_model

from .conftest import TINY_NET, build_tiny_model


def test_roundtrip_keeps_size_and_is_deterministic(photo):
    data = vqcodec.compress(photo, quality=2, model="tiny")
    header = image_codec.read_header(data)
    assert (header.width, header.height, header.quality, header.model_name) == (72, 48, 2, "tiny")
    out = vqcodec.decompress(data)
    assert out.size == (72, 48) and out.mode == "RGB"
    assert np.array_equal(np.asarray(out), np.asarray(vqcodec.decompress(data)))


def test_more_quality_costs_more_bits(photo):
    sizes = [len(vqcodec.compress(photo, quality=q, model="tiny")) for q in (1, 2, 3)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_entropy_coding_roundtrip_of_odd_grid():
    prior = load_image_model("tiny").prior
    indices = torch.stack([torch.randint(0, k, (13, 5)) for k in TINY_NET.codebook_sizes])
    payloads = encode_stages(indices, prior)
    assert len(payloads) == 3
    assert torch.equal(decode_grid(payloads, prior, 3, 13, 5), indices)
    # The first stages' payloads decode alone, and are those of coding these stages alone.
    assert torch.equal(decode_grid(payloads[:2], prior, 2, 13, 5), indices[:2])
    assert encode_stages(indices[:1], prior) == payloads[:1]


@pytest.mark.parametrize("model", ["tiny", "tinycoarse"])  # latents at 1/8 and at 1/16
@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (29, 1), (9, 17)])
def test_any_size_pads_and_crops_back(shape, model):
    img = np.random.default_rng(0).integers(0, 256, shape + (3,), dtype=np.uint8)
    assert vqcodec.decompress(vqcodec.compress(img, quality=1, model=model)).size == (shape[1], shape[0])


def test_a_coarse_model_codes_one_index_per_16x16_pixels(photo):
    data = vqcodec.compress(photo, quality=3, model="tinycoarse")
    header, model, indices = image_codec.decode_indices(data)
    assert indices.shape == (3, 3, 5)  # 48 x 72 pixels
    assert np.asarray(vqcodec.decompress(data)).shape == (48, 72, 3)


# both network families, 1/16, and a decoder told the stages
@pytest.mark.parametrize("name", ["tiny", "tinygdn", "tinycoarse", "tinytold"])
def test_large_image_is_split_into_chunks_without_seams(name):
    y, x = np.mgrid[0:20, 0:1100]
    img = np.stack([x % 256, y * 10, (x // 4) % 256], -1).astype(np.uint8)
    data = vqcodec.compress(img, quality=2, model=name)  # 2 of 3 stages
    header, chunks = container.unpack(data)
    assert [c.label for c in chunks] == ["tile 1", "tile 2"]
    tiled = np.asarray(vqcodec.decompress(data)).astype(int)
    # Reference: the whole image through the networks in one piece.
    model = load_image_model(name)
    _, _, indices = image_codec.decode_indices(data)
    with torch.no_grad():
        whole = model.vqvae.reconstruct(indices[None])[0]
        as_if_all = model.vqvae.decode(model.vqvae.quantizer.decode(indices[None]))[0]
    whole, as_if_all = (image_codec.to_pixels(x)[:20, :1100].astype(int) for x in (whole, as_if_all))
    assert np.abs(tiled - whole).max() <= 1
    # told how many stages coded the latents, the decoder reads them as coarse codes
    assert (np.abs(tiled - as_if_all).max() > 1) == (name == "tinytold")


def test_grayscale_and_alpha(photo):
    gray = Image.fromarray(photo[:, :, 0], "L")
    assert vqcodec.decompress(vqcodec.compress(gray, quality=1, model="tiny")).mode == "L"
    rgba = Image.fromarray(np.dstack([photo, np.full(photo.shape[:2], 128, np.uint8)]), "RGBA")
    with pytest.warns(UserWarning, match="alpha"):
        data = vqcodec.compress(rgba, quality=1, model="tiny")
    assert image_codec.read_header(data).flags & container.FLAG_ALPHA_DROPPED


def test_quality_out_of_range_names_the_valid_range(photo):
    with pytest.raises(UsageError, match=r"1\.\.3"):
        vqcodec.compress(photo, quality=4, model="tiny")
    with pytest.raises(UsageError):
        vqcodec.compress(photo, quality=0, model="tiny")


def test_unknown_model_and_changed_weights(photo, models_dir):
    with pytest.raises(MissingModelError, match="nosuch"):
        vqcodec.compress(photo, model="nosuch")
    other = build_tiny_model(models_dir / "tiny2.safetensors", name="tiny2", seed=1)
    data = vqcodec.compress(photo, quality=1, model=str(other))
    other.unlink()
    with pytest.raises(MissingModelError, match="tiny2"):
        vqcodec.decompress(data)
    build_tiny_model(other, name="tiny2", seed=2)  # same name, other weights
    from vqcodec.registry import _load

    _load.cache_clear()
    with pytest.raises(MissingModelError, match="different version"):
        vqcodec.decompress(data)


def test_damaged_payload_is_an_error_not_garbage(photo):
    data = bytearray(vqcodec.compress(photo, quality=3, model="tiny"))
    data[40] ^= 0x10
    with pytest.raises(CorruptFileError):
        vqcodec.decompress(bytes(data))


def test_bad_media_input(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(BadInputError):
        vqcodec.compress(empty, model="tiny")
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    with pytest.raises(BadInputError):
        vqcodec.compress(text, model="tiny")
    with pytest.raises(BadInputError):
        vqcodec.compress(np.zeros((4, 4, 2), np.uint8), model="tiny")


def test_coded_size_matches_the_priors_information_content():
    """The range coder must code with the prior's probabilities: size within 1 % + 2 words."""
    from vqcodec.prior import pass_map

    prior = load_image_model("tiny").prior
    indices = torch.stack([torch.randint(0, k, (24, 20)) for k in TINY_NET.codebook_sizes])
    grid = indices[None].clone()
    ideal = 0.0
    for stage in range(3):
        for pass_ in range(4):
            probs = prior.pmf(grid, stage, pass_)
            symbols = indices[stage][pass_map(24, 20) == pass_].numpy()
            ideal -= np.log2(probs[np.arange(len(symbols)), symbols]).sum()
    coded_bits = sum(map(len, encode_stages(indices, prior))) * 8
    assert ideal <= coded_bits <= ideal * 1.01 + 3 * 64  # up to two words of flush per stage


def test_a_size_target_gives_the_most_stages_that_fit(photo):
    sizes = [len(vqcodec.compress(photo, quality=q, model="tiny")) for q in (1, 2, 3)]
    for target in (sizes[0], sizes[1] + 1, sizes[2] - 1, sizes[2] + 100):
        data, quality, psnr = image_codec.compress_to_target(photo, max_bytes=target, model="tiny")
        assert len(data) <= target and psnr is None
        assert quality == 3 or sizes[quality] > target  # one more stage would not fit
        assert vqcodec.read_header(data).quality == quality
    with pytest.raises(UsageError, match=f"the smallest is {sizes[0]:,} \\(quality 1\\)"):
        image_codec.compress_to_target(photo, max_bytes=sizes[0] - 1, model="tiny")
    with pytest.raises(UsageError, match="one target"):
        image_codec.compress_to_target(photo, model="tiny")


def test_a_size_target_gives_some_tiles_one_stage_more():
    """Between two levels' sizes, a two-tile image gets the higher level in one tile: finer
    than whole levels."""
    y, x = np.mgrid[0:20, 0:1100]
    img = np.stack([x % 256, y * 10, (x // 4) % 256], -1).astype(np.uint8)
    sizes = [len(vqcodec.compress(img, quality=q, model="tiny")) for q in (2, 3)]
    data, quality, _ = image_codec.compress_to_target(img, max_bytes=(sizes[0] + sizes[1]) // 2, model="tiny")
    assert quality == 2 and sizes[0] < len(data) <= (sizes[0] + sizes[1]) // 2
    _, chunks = container.unpack(data)
    assert sorted(c.stages for c in chunks) == [2, 3]
    assert np.asarray(vqcodec.decompress(data)).shape == (20, 1100, 3)


def test_a_familys_levels_pick_its_model_and_stages(photo):
    from .conftest import FAMILY_LEVELS

    for quality, (name, stages) in enumerate(FAMILY_LEVELS, 1):
        data = vqcodec.compress(photo, quality=quality, model="tinyfam")
        header = image_codec.read_header(data)
        assert (header.model_name, header.quality) == (name, stages)
        assert vqcodec.decompress(data).size == (72, 48)
    with pytest.raises(UsageError, match="quality must be 1..5 for model tinyfam"):
        vqcodec.compress(photo, quality=6, model="tinyfam")
    # A member used alone counts its own stages.
    assert image_codec.read_header(vqcodec.compress(photo, quality=3, model="tinyfam16")).quality == 3


def test_without_a_level_a_model_codes_its_default_one(photo, tmp_path):
    """A family's own default level (API and command line alike); DEFAULT_QUALITY, or the top
    stage of a model with fewer, for a model that names none."""
    from cli.main import main

    from .conftest import FAMILY_DEFAULT, FAMILY_LEVELS

    header = image_codec.read_header(vqcodec.compress(photo, model="tinyfam"))
    assert (header.model_name, header.quality) == FAMILY_LEVELS[FAMILY_DEFAULT - 1]
    Image.fromarray(photo).save(tmp_path / "photo.png")
    result = CliRunner().invoke(main, ["compress", str(tmp_path / "photo.png"), "-m", "tinyfam"])
    assert result.exit_code == 0 and f"quality {FAMILY_DEFAULT}," in result.output, result.output
    assert image_codec.read_header(vqcodec.compress(photo, model="tiny")).quality == 3  # tiny has 3 stages


def test_a_familys_size_and_psnr_targets_search_its_levels(photo):
    from .conftest import FAMILY_LEVELS

    files = [vqcodec.compress(photo, quality=q, model="tinyfam") for q in range(1, 6)]
    sizes = [len(f) for f in files]
    for q in (1, 2, 4):  # a budget between two levels' sizes gives the lower one (whole levels: one tile)
        data, level, _ = image_codec.compress_to_target(photo, max_bytes=sizes[q - 1], model="tinyfam")
        assert level >= q and len(data) <= sizes[q - 1]
        assert image_codec.read_header(data).model_name == FAMILY_LEVELS[level - 1][0]
    target = psnr_rgb(photo, np.asarray(vqcodec.decompress(files[0]))) - 0.01
    data, level, reached = image_codec.compress_to_target(photo, min_psnr=target, model="tinyfam")
    assert reached >= target and image_codec.read_header(data).model_name == FAMILY_LEVELS[level - 1][0]
    assert abs(psnr_rgb(photo, np.asarray(vqcodec.decompress(data))) - reached) < 1e-6


def test_a_family_whose_levels_skip_stages_is_refused(models_dir, tmp_path):
    import shutil

    from vqcodec import catalog
    from vqcodec.registry import set_levels

    shutil.copy(models_dir / "tinygdn.safetensors", tmp_path / "tinygdn.safetensors")
    set_levels(tmp_path / "tinygdn.safetensors", [("tinygdn", 1), ("tinygdn", 3)])
    with pytest.raises(MissingModelError, match="not consecutive stages"):
        catalog.check_quality(catalog.model_meta(tmp_path / "tinygdn.safetensors"), 1)
