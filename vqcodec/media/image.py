"""Reading and writing images: anything Pillow opens becomes an 8-bit RGB array.

- grayscale (L, I;16, ...) is coded as RGB and decoded back to one channel;
- an alpha channel is dropped (composited onto white, as most viewers show it) with a
  warning: the codec codes colour only;
- palette, CMYK and 16-bit images are converted to 8-bit RGB; EXIF orientation is applied;
- an image with an ICC profile other than sRGB (Display P3, Adobe RGB, a CMYK press
  profile, ...) is converted to sRGB by LittleCMS (Pillow's ImageCms, relative colorimetric),
  with a warning: the codec codes sRGB pixels, as viewers show an image without a profile;
- animated images: the first frame is coded, with a warning;
- metadata (EXIF, XMP, the ICC profile) is dropped, unless it is asked to be kept: then an RGB
  or gray ICC profile is kept with the pixels as they are, instead of converting them.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, PngImagePlugin

from vqcodec.catalog import IMAGE_SUFFIXES
from vqcodec.errors import BadInputError, VqcodecError

# Pillow's decompression-bomb guard, raised to what the codec itself accepts by default.
Image.MAX_IMAGE_PIXELS = 400_000_000


def list_images(root: Path) -> list[Path]:
    """Image files under `root` (recursively), sorted."""
    return sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass
class RGBImage:
    pixels: np.ndarray  # [H, W, 3] uint8, sRGB
    gray: bool = False
    alpha_dropped: bool = False
    converted_from: str | None = None  # the ICC profile the pixels were converted to sRGB from
    metadata: tuple[tuple[str, bytes], ...] = ()  # ("exif" | "icc" | "xmp", bytes) to keep


ImageLike = str | Path | Image.Image | np.ndarray | RGBImage


def _source_profile(im: Image.Image) -> tuple[ImageCms.ImageCmsProfile, str] | None:
    """The image's ICC profile and its description when its pixels need converting to sRGB
    (None: no profile, an sRGB one, or one LittleCMS cannot read, which is ignored with a
    warning)."""
    icc = im.info.get("icc_profile")
    if not icc:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        name = ImageCms.getProfileDescription(profile).strip()
    except (OSError, ImageCms.PyCMSError):
        warnings.warn("unreadable ICC profile ignored: the pixels are taken as sRGB", stacklevel=4)
        return None
    return None if "srgb" in name.lower() else (profile, name or "unnamed profile")


def _to_srgb(im: Image.Image, source: ImageCms.ImageCmsProfile, name: str) -> tuple[Image.Image, str | None]:
    """(`im` converted from its ICC profile to sRGB (RGB or RGBA), `name`), or (`im`, None)
    with a warning where LittleCMS cannot convert it."""
    mode = "RGBA" if "A" in im.mode or "transparency" in im.info else "RGB"
    if im.mode not in ("RGB", "RGBA", "CMYK", "L"):
        im = im.convert(mode)
    try:
        converted = ImageCms.profileToProfile(
            im, source, ImageCms.createProfile("sRGB"), ImageCms.Intent.RELATIVE_COLORIMETRIC, mode
        )
    except (OSError, ValueError, ImageCms.PyCMSError) as e:
        warnings.warn(f"ICC profile '{name}' could not be applied ({e}): the pixels are taken as sRGB", stacklevel=4)
        return im, None
    warnings.warn(f"colours converted to sRGB from the ICC profile '{name}'", stacklevel=4)
    return converted, name


def _profile_fits(im: Image.Image) -> bool:
    """Whether the image's ICC profile describes the pixels the codec gives back (an RGB
    profile for colour, a gray one for grayscale), so that keeping it keeps the colours."""
    try:
        space = ImageCms.ImageCmsProfile(io.BytesIO(im.info["icc_profile"])).profile.xcolor_space.strip()
    except (OSError, ImageCms.PyCMSError):
        return False
    return space == ("GRAY" if im.mode in ("1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L") else "RGB")


def _metadata(im: Image.Image) -> tuple[tuple[str, bytes], ...]:
    """The EXIF (its orientation already applied to the pixels), ICC profile (where it fits the
    pixels) and XMP of an image, as bytes (EXIF as JPEG stores it, starting with "Exif\\0\\0")."""
    records = []
    exif = im.info.get("exif")
    if exif:
        records.append(("exif", exif if exif.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + exif))
    if im.info.get("icc_profile") and _profile_fits(im):
        records.append(("icc", im.info["icc_profile"]))
    xmp = im.info.get("xmp")
    if xmp:
        records.append(("xmp", xmp.encode() if isinstance(xmp, str) else bytes(xmp)))
    return tuple(records)


def _from_pil(im: Image.Image, keep_metadata: bool = False) -> RGBImage:
    if getattr(im, "n_frames", 1) > 1:
        warnings.warn("animated image: only the first frame is coded", stacklevel=3)
    im = ImageOps.exif_transpose(im)
    metadata = _metadata(im) if keep_metadata else ()
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: keep the 8 most significant bits.
        arr = np.asarray(im).astype(np.uint32)
        im = Image.fromarray((arr >> 8).astype(np.uint8) if arr.max() > 255 else arr.astype(np.uint8), "L")
    gray = im.mode in ("1", "L", "LA", "I", "F")
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    found = None if any(name == "icc" for name, _ in metadata) else _source_profile(im)
    profile = None
    if found:
        im, profile = _to_srgb(im, *found)
    if has_alpha:
        warnings.warn("alpha channel dropped: transparent areas are composited onto white", stacklevel=3)
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return RGBImage(np.ascontiguousarray(rgb), gray, has_alpha, profile, metadata)


def _from_array(arr: np.ndarray) -> RGBImage:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise BadInputError(f"an image array must be HxW, HxWx1, HxWx3 or HxWx4, not {arr.shape}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(np.nan_to_num(arr) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            raise BadInputError(f"image arrays must be uint8 or float in [0, 1], not {arr.dtype}")
    channels = arr.shape[2]
    if channels == 4:
        return _from_pil(Image.fromarray(arr, "RGBA"))
    if channels == 1:
        return RGBImage(np.ascontiguousarray(np.repeat(arr, 3, axis=2)), gray=True)
    return RGBImage(np.ascontiguousarray(arr))


def load_image(source: ImageLike, keep_metadata: bool = False) -> RGBImage:
    """Read a path, PIL image or numpy array; raises BadInputError with a one-line reason.
    With `keep_metadata`, the image's EXIF, XMP and ICC profile come with it (`RGBImage.metadata`)."""
    if isinstance(source, RGBImage):
        return source
    if isinstance(source, np.ndarray):
        image = _from_array(source)
    elif isinstance(source, Image.Image):
        image = _from_pil(source, keep_metadata)
    else:
        path = Path(source)
        try:
            with Image.open(path) as im:
                im.load()
                image = _from_pil(im, keep_metadata)
        except FileNotFoundError:
            raise BadInputError(f"{path}: no such file") from None
        except Image.DecompressionBombError:
            raise BadInputError(f"{path}: image is larger than {Image.MAX_IMAGE_PIXELS} pixels") from None
        except VqcodecError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever a decoder raises on a file it cannot read is bad input
            # (OSError and ValueError mostly; NotImplementedError for DDS pixel formats Pillow lacks)
            raise BadInputError(f"{path}: not a readable image ({e or type(e).__name__})") from None
    h, w = image.pixels.shape[:2]
    if h == 0 or w == 0:
        raise BadInputError("image has no pixels")
    return image


def to_pil(pixels: np.ndarray, gray: bool) -> Image.Image:
    im = Image.fromarray(pixels, "RGB")
    return im.convert("L") if gray else im


def image_file_bytes(image: Image.Image, fmt: str) -> bytes:
    """`image` as a file of Pillow format `fmt` (PNG, WEBP, ...; lossless), with the EXIF, ICC
    profile and XMP in its `info` written where the format holds them (all three in PNG and WebP)."""
    # PNG at zlib level 3: 2.5x faster to write than Pillow's default 6, 3 % larger (Kodak).
    options: dict = {"WEBP": {"lossless": True}, "PNG": {"compress_level": 3}}.get(fmt, {}).copy()
    info = image.info
    if info.get("icc_profile") and fmt in ("PNG", "WEBP", "TIFF"):
        options["icc_profile"] = info["icc_profile"]
    if info.get("exif") and fmt in ("PNG", "WEBP"):
        options["exif"] = info["exif"]
    if info.get("xmp") and fmt == "WEBP":
        options["xmp"] = info["xmp"]
    if info.get("xmp") and fmt == "PNG":
        options["pnginfo"] = PngImagePlugin.PngInfo()
        options["pnginfo"].add_itxt("XML:com.adobe.xmp", info["xmp"].decode("utf-8", "replace"))
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()
