"""Opening lesion images the one way every reader shares: decoded in full before they are trusted,
EXIF orientation applied, more than 8 bits scaled down rather than clipped, and masks kept on
their image.

Images come from strangers (URL lists, archives, a study's own folder), so the decoder is asked
only for the formats lesion images come in and any failure of it (header, pixels, size) is a
refusal naming the file, never a partial picture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# The formats lesion images and masks come in; JPEG covers a phone's MPO too (Pillow opens it as
# JPEG and returns an MPO image). Others (EPS runs Ghostscript, for one) are never tried.
DECODABLE_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "GIF", "WEBP")
ORIENTATION_TAG = 0x0112
# Pillow's modes with more than 8 bits per sample: "I" holds the 16-bit PNGs and TIFFs older
# Pillows opened, so it is read as 16 bits too.
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class ImageRefusedError(ValueError):
    """An image that cannot be decoded in full, or is too large to; the message names the file."""


def pixel_cap(max_pixels: int | None) -> int:
    """The effective cap: the caller's, and never above Pillow's own decompression-bomb limit,
    which Pillow only warns about below twice its value."""
    limit = Image.MAX_IMAGE_PIXELS or 2**62
    return min(max_pixels, limit) if max_pixels else limit


def open_image(path: str | Path, max_pixels: int | None = None) -> Image.Image:
    """The image opened (header read, pixels not yet) or ImageRefusedError: empty, not an image of
    DECODABLE_FORMATS, or over the pixel cap."""
    path = Path(path)
    try:
        empty = path.stat().st_size == 0
    except OSError as error:
        raise ImageRefusedError(f"{path}: cannot read ({error.strerror or error})") from None
    try:
        if empty:
            raise ImageRefusedError(f"{path}: empty file (0 bytes)")
        image = Image.open(path, formats=DECODABLE_FORMATS)
    except ImageRefusedError:
        raise
    except Exception as error:  # noqa: BLE001 - any decoder failure refuses the file (fail closed)
        raise ImageRefusedError(f"{path}: not a decodable image ({type(error).__name__}: {error})") from None
    width, height = image.size
    cap = pixel_cap(max_pixels)
    if width * height > cap:
        image.close()
        raise ImageRefusedError(f"{path}: {width}x{height} = {width * height} pixels, over the cap of {cap}")
    return image


def decode_check(path: str | Path, max_pixels: int | None = None) -> tuple[int, int]:
    """Decode the whole file once (header and every pixel); returns (width, height) or raises
    ImageRefusedError. A JPEG is decoded at 1/8 scale: every byte of its stream is still read (a
    truncated or corrupt one fails), at a fraction of the cost of the full-size pixels."""
    with open_image(path, max_pixels) as image:
        size = image.size
        try:
            image.draft(image.mode, (1, 1))
            image.load()
        except Exception as error:  # noqa: BLE001 - fail closed on whatever the decoder raises
            raise ImageRefusedError(f"{path}: cannot decode its pixels ({type(error).__name__}: {error})") from None
    return size


def to_uint8(image: Image.Image) -> Image.Image:
    """An 8-bit image: 16-bit samples are divided by 257 (65535 -> 255), not clipped at 255."""
    if image.mode in _SIXTEEN_BIT_MODES:
        wide = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        return Image.fromarray(((wide + 128) // 257).astype(np.uint8), mode="L")
    if image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        top = 1.0 if values.size and float(values.max()) <= 1.0 else 255.0
        return Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), mode="L")
    return image


def read_rgb8(path: str | Path, *, draft_size: tuple[int, int] | None = None,
              max_pixels: int | None = None) -> np.ndarray:
    """The image as an RGB uint8 array, upright (EXIF orientation applied) and 16 bits scaled.

    With `draft_size`, a JPEG is decoded at the smallest DCT scale that is still at least that
    size (a 4000 px photograph at a fraction of the cost); other formats decode at full size.
    """
    with open_image(path, max_pixels) as image:
        if draft_size is not None:
            image.draft("RGB", draft_size)
        try:
            upright = ImageOps.exif_transpose(image)
            rgb = np.asarray(to_uint8(upright).convert("RGB"))
        except Exception as error:  # noqa: BLE001 - fail closed on whatever the decoder raises
            raise ImageRefusedError(f"{path}: cannot decode its pixels ({type(error).__name__}: {error})") from None
    return rgb


def exif_orientation(path: str | Path) -> tuple[int, tuple[int, int]]:
    """(EXIF orientation 1-8, stored (width, height)) from the file's header; 1 when it has none."""
    with open_image(path) as image:
        try:
            orientation = int(image.getexif().get(ORIENTATION_TAG, 1))
        except Exception:  # noqa: BLE001 - a damaged EXIF block: the pixels are taken as stored
            orientation = 1
        return (orientation if 1 <= orientation <= 8 else 1), image.size


def orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """`array` (rows, cols[, channels]) turned as ImageOps.exif_transpose turns an image with this
    EXIF orientation."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(array, -1)
    if orientation == 7:
        return np.rot90(array, 2).swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(array, 1)
    return array


def mask_follows_image(mask: np.ndarray, image_path: str | Path) -> np.ndarray:
    """The mask turned with its image: a mask of the image's stored (un-rotated) width x height was
    drawn on the stored pixels, so it gets the image's EXIF orientation; a mask of any other size
    (drawn on the upright image, or smaller) is left as it is."""
    orientation, (width, height) = exif_orientation(image_path)
    if orientation == 1 or mask.shape[:2] != (height, width):
        return mask
    return np.ascontiguousarray(orient(mask, orientation))
