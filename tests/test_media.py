"""Image inputs of every common kind load as 8-bit RGB, or fail with BadInputError."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vqcodec.errors import BadInputError
from vqcodec.media import load_image


def _gradient(w=40, h=24):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 6, y * 10, (x + y) * 3], -1).astype(np.uint8)


def test_16_bit_grayscale_png(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray((np.arange(40 * 24).reshape(24, 40) * 60).astype(np.uint16)).save(path)
    image = load_image(path)
    assert image.gray and image.pixels.dtype == np.uint8 and image.pixels.shape == (24, 40, 3)


def test_palette_and_cmyk(tmp_path):
    rgb = Image.fromarray(_gradient())
    rgb.convert("P", palette=Image.ADAPTIVE).save(tmp_path / "pal.png")
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg")
    for name in ("pal.png", "cmyk.jpg"):
        image = load_image(tmp_path / name)
        assert image.pixels.shape == (24, 40, 3) and not image.gray
        assert np.abs(image.pixels.astype(int) - _gradient()).mean() < 20


def test_exif_rotation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    Image.fromarray(_gradient(40, 24)).save(path, exif=exif)
    assert load_image(path).pixels.shape == (40, 24, 3)


def test_animated_gif_codes_first_frame_with_warning(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.fromarray(_gradient()), Image.fromarray(255 - _gradient())]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="first frame"):
        image = load_image(path)
    assert image.pixels.shape == (24, 40, 3)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (3000, 3000)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    with pytest.raises(BadInputError, match="larger than"):
        load_image(path)


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 9, 3), (9, 1, 3), (5, 5)])
def test_tiny_arrays(shape):
    image = load_image(np.zeros(shape, np.uint8))
    assert image.pixels.shape[:2] == shape[:2]


def test_float_arrays_and_bad_dtypes():
    image = load_image(np.full((4, 4, 3), 0.5, np.float32))
    assert image.pixels[0, 0, 0] == 128
    with pytest.raises(BadInputError):
        load_image(np.zeros((4, 4, 3), np.int32))
