"""Image inputs of every common kind load as 8-bit RGB, or fail with BadInputError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from vqcodec.errors import BadInputError
from vqcodec.media.image import load_image


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


ADOBE_RGB = Path(__file__).parent / "data" / "compatibleWithAdobeRGB1998.icc"


def _saturated(w=64, h=48):
    """Patches of strong colours, inside the sRGB gamut (so inside Adobe RGB's too)."""
    colours = np.array([[230, 40, 40], [40, 200, 60], [40, 60, 230], [240, 200, 30], [30, 200, 220], [128, 128, 128]])
    y, x = np.mgrid[0:h, 0:w]
    return colours[(x // 16 + 4 * (y // 24)) % len(colours)].astype(np.uint8)


def _in_adobe_rgb(srgb: np.ndarray) -> Image.Image:
    """The same colours as pixels of an Adobe RGB image, with its profile attached."""
    adobe = ImageCms.ImageCmsProfile(str(ADOBE_RGB))
    im = ImageCms.profileToProfile(
        Image.fromarray(srgb), ImageCms.createProfile("sRGB"), adobe, ImageCms.Intent.RELATIVE_COLORIMETRIC, "RGB"
    )
    im.info["icc_profile"] = adobe.tobytes()
    return im


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_a_profiled_image_is_converted_to_srgb(tmp_path, suffix):
    srgb = _saturated()
    im = _in_adobe_rgb(srgb)
    path = tmp_path / f"adobe{suffix}"
    im.save(path, icc_profile=im.info["icc_profile"], **({"quality": 98, "subsampling": 0} if suffix == ".jpg" else {}))
    with pytest.warns(UserWarning, match="converted to sRGB from the ICC profile 'Compatible with Adobe RGB"):
        image = load_image(path)
    assert image.converted_from == "Compatible with Adobe RGB (1998)"
    error = np.abs(image.pixels.astype(int) - srgb)
    assert error.mean() < 1 and (suffix == ".jpg" or error.max() <= 2)  # JPEG rings at the patches' edges
    # Read as sRGB, the same file's colours are far off: the conversion is what brings them back.
    assert np.abs(np.asarray(Image.open(path).convert("RGB")).astype(int) - srgb).max() > 20


def test_srgb_and_unreadable_profiles_are_left_alone(tmp_path):
    srgb = _saturated()
    im = Image.fromarray(srgb)
    im.save(tmp_path / "srgb.png", icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    image = load_image(tmp_path / "srgb.png")
    assert image.converted_from is None and np.array_equal(image.pixels, srgb)
    im.save(tmp_path / "junk.png", icc_profile=b"not a profile at all")
    with pytest.warns(UserWarning, match="unreadable ICC profile"):
        image = load_image(tmp_path / "junk.png")
    assert image.converted_from is None and np.array_equal(image.pixels, srgb)


def test_a_profiled_image_with_alpha_keeps_its_alpha_handling(tmp_path):
    im = _in_adobe_rgb(_saturated()).convert("RGBA")
    im.putalpha(128)
    im.save(tmp_path / "adobe_alpha.png", icc_profile=ADOBE_RGB.read_bytes())
    with pytest.warns(UserWarning):
        image = load_image(tmp_path / "adobe_alpha.png")
    assert image.alpha_dropped and image.converted_from and image.pixels.shape == (48, 64, 3)


def test_any_failure_of_the_image_library_is_bad_input(tmp_path, monkeypatch):
    """Pillow raises NotImplementedError for some DDS pixel formats (3 of its own test images),
    other exception types elsewhere: each is a one-line BadInputError (exit status 3)."""
    from PIL import ImageFile

    Image.fromarray(_saturated()).save(tmp_path / "a.png")

    def unsupported(self):
        raise NotImplementedError("Unimplemented pixel format")

    monkeypatch.setattr(ImageFile.ImageFile, "load", unsupported)
    with pytest.raises(BadInputError, match="a.png: not a readable image \\(Unimplemented pixel format\\)"):
        load_image(tmp_path / "a.png")
