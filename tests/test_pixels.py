"""Every reader of lesion images sees the same pixels: upright (EXIF orientation applied), 16 bits
scaled rather than clipped, masks turned with their image, and damaged files refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from crowdskin.automated.preprocessing import read_mask, read_rgb, resize_mask
from crowdskin.evaluate.gallery import load_thumbnail
from crowdskin.train.cache import build_image_cache, load_resized

ROTATE_CLOCKWISE = 6  # EXIF orientation of a phone held upright: the stored pixels lie on their side


def _phone_photo(tmp_path: Path) -> tuple[Path, Path]:
    """A JPEG stored 64 wide x 32 high with orientation 6, bright in the stored top-left corner,
    and its mask drawn on the stored pixels (same corner, same 64 x 32)."""
    stored = np.full((32, 64, 3), 40, np.uint8)
    stored[:16, :16] = 230
    exif = Image.Exif()
    exif[0x0112] = ROTATE_CLOCKWISE
    image = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(image, format="JPEG", quality=95, exif=exif)
    mask = np.zeros((32, 64), np.uint8)
    mask[:16, :16] = 255
    Image.fromarray(mask).save(tmp_path / "phone_segmentation.png")
    return image, tmp_path / "phone_segmentation.png"


def _sixteen_bit_ramp(tmp_path: Path) -> tuple[Path, np.ndarray]:
    values = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    path = tmp_path / "ramp16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I"), "the fixture must be a 16-bit PNG"
    return path, values


def test_training_cache_scales_16_bit_images_instead_of_saturating(tmp_path):
    path, values = _sixteen_bit_ramp(tmp_path)
    out = load_resized(path, 64)
    assert out.shape == (64, 64, 3)
    assert np.mean(out[..., 0] == 255) < 0.01
    assert np.abs(out[..., 0].astype(int) - values / 257).max() <= 1


def test_gallery_thumbnail_scales_16_bit_images(tmp_path):
    path, values = _sixteen_bit_ramp(tmp_path)
    out = load_thumbnail(path, 64)
    assert np.mean(out == 255) < 0.05 and abs(float(out.mean()) - values.mean() / 257) < 3


def _bright_corner(rgb: np.ndarray) -> str:
    h, w = rgb.shape[:2]
    quarters = {"top-left": rgb[: h // 2, : w // 2], "top-right": rgb[: h // 2, w // 2:],
                "bottom-left": rgb[h // 2:, : w // 2], "bottom-right": rgb[h // 2:, w // 2:]}
    return max(quarters, key=lambda k: float(quarters[k].mean()))


def test_training_cache_applies_exif_orientation(tmp_path):
    image, _ = _phone_photo(tmp_path)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(image)).convert("RGB"))
    assert upright.shape == (64, 32, 3) and _bright_corner(upright) == "top-right"
    assert _bright_corner(load_resized(image, 32)) == "top-right"
    array, index = build_image_cache(
        __import__("pandas").DataFrame({"image_id": ["phone"], "image_path": [str(image)]}), 32)
    assert index.row.tolist() == [0] and _bright_corner(array[0]) == "top-right"


def test_gallery_thumbnail_applies_exif_orientation(tmp_path):
    image, mask = _phone_photo(tmp_path)
    thumbnail = load_thumbnail(image, 64)
    # upright 32 x 64, letterboxed in 64 x 64: the picture is the middle half of the columns
    picture = thumbnail[:, 16:48]
    assert _bright_corner(picture) == "top-right"


def test_abc_scores_read_the_image_upright_with_its_mask_on_it(tmp_path):
    image, mask_path = _phone_photo(tmp_path)
    from crowdskin.pixels import mask_follows_image

    notes: list[str] = []
    rgb = read_rgb(image, notes)
    assert rgb.shape == (64, 32, 3) and _bright_corner(rgb) == "top-right"
    mask = resize_mask(mask_follows_image(read_mask(mask_path, notes), image), rgb.shape[:2], notes)
    assert mask.shape == (64, 32)
    assert rgb[mask].mean() > 200 and rgb[~mask].mean() < 60, "the mask must lie on the lesion"
    assert not any("resized" in note for note in notes)


def test_explanations_measure_relevance_in_the_mask_turned_with_its_image(tmp_path):
    """The explanation job's lesion region lies where the cache's upright image has the lesion."""
    from crowdskin.explain.job import read_region
    from crowdskin.train.cache import load_resized

    image, mask_path = _phone_photo(tmp_path)
    upright = load_resized(image, 16)
    region = read_region(str(mask_path), 16, str(image))
    assert _bright_corner(upright) == "top-right"
    assert _bright_corner(np.repeat(region[..., None], 3, axis=-1)) == "top-right"
    assert _bright_corner(np.repeat(read_region(str(mask_path), 16)[..., None], 3, axis=-1)) == "top-left"


def test_mask_drawn_on_the_upright_image_is_left_alone(tmp_path):
    from crowdskin.pixels import mask_follows_image

    image, _ = _phone_photo(tmp_path)
    upright_mask = np.zeros((64, 32), bool)
    upright_mask[:16, 16:] = True
    assert np.array_equal(mask_follows_image(upright_mask, image), upright_mask)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_turns_arrays_as_pillow_turns_images(orientation):
    from crowdskin.pixels import orient

    stored = np.arange(3 * 5, dtype=np.uint8).reshape(3, 5)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(image))
    assert np.array_equal(orient(stored, orientation), expected)


def test_truncated_image_is_refused_by_name(tmp_path):
    from crowdskin.pixels import ImageRefusedError, decode_check

    rng = np.random.default_rng(1)
    whole = tmp_path / "whole.jpg"
    Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(whole, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert decode_check(whole) == (128, 128)
    with pytest.raises(ImageRefusedError, match=r"cut\.jpg: cannot decode its pixels"):
        decode_check(cut)
    _, index = build_image_cache(
        __import__("pandas").DataFrame({"image_id": ["cut"], "image_path": [str(cut)]}), 32)
    assert index.row.tolist() == [-1] and "cut.jpg" in index.reason[0]


def test_explain_gallery_outline_lies_on_the_upright_image(tmp_path):
    from crowdskin.explain.gallery import image_box, mask_outline, upright_size

    image, mask = _phone_photo(tmp_path)
    assert upright_size(image) == (32, 64)
    box = image_box(*upright_size(image), 64)
    outline = mask_outline(mask, box, 64, image_path=image)
    left, top, width, height = box
    lesion = outline[top:top + height, left:left + width] > 0.5
    # stored top-left 16 x 16 of 64 x 32 -> upright top quarter, right half
    assert lesion[: height // 4 - 1, width // 2 + 1:].mean() > 0.9
    assert lesion[:, : width // 2 - 1].mean() == 0 and lesion[height // 4 + 1:].mean() == 0
