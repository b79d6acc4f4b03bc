"""Automated ABC annotation: phantoms with known answers, bad input, sharding."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from crowdskin.automated.annotate import (
    NO_SHARD,
    Settings,
    annotate_image,
    annotate_table,
    plan_shards,
    rows_without_work,
    to_annotations,
)
from crowdskin.automated.asymmetry import asymmetry
from crowdskin.automated.border import border
from crowdskin.automated.color import COLOR_NAMES, REFERENCE_COLORS, color, reference_distances
from crowdskin.automated.preprocessing import BadInputError, find_lesion
from crowdskin.config import section
from crowdskin.tables import AUTOMATED

SETTINGS = Settings.from_config(section("automated"))


def ellipse(shape=(400, 500), centre=(260, 210), axes=(120, 60), angle=0.0) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, centre, axes, angle, 0, 360, 1, -1)
    return mask.astype(bool)


def teardrop(angle: float, shape=(500, 500)) -> np.ndarray:
    """A big disc and a small disc joined: symmetric about the line through both centres only."""
    mask = np.zeros(shape, np.uint8)
    c = np.array([250.0, 250.0])
    direction = np.array([math.cos(math.radians(angle)), math.sin(math.radians(angle))])
    big, small = c - 50 * direction, c + 70 * direction
    cv2.circle(mask, tuple(int(round(v)) for v in big), 90, 1, -1)
    cv2.circle(mask, tuple(int(round(v)) for v in small), 45, 1, -1)
    cv2.line(mask, tuple(int(round(v)) for v in big), tuple(int(round(v)) for v in small), 1, 60)
    return mask.astype(bool)


def lobes(k: int, shape=(600, 600), radius=200.0, depth=0.25) -> np.ndarray:
    theta = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
    r = radius * (1 + depth * np.cos(k * theta))
    points = np.stack([300 + r * np.cos(theta), 300 + r * np.sin(theta)], axis=1).round().astype(np.int32)
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [points], 1)
    return mask.astype(bool)


@pytest.mark.parametrize("angle", [0, 17, 45, 90, 133])
def test_centred_ellipse_at_any_angle_is_symmetric(angle):
    score = asymmetry(find_lesion(ellipse(angle=angle), []), variant="paper")
    assert score.ratio_horizontal_axis > 0.97 and score.ratio_vertical_axis > 0.97
    assert score.score == 0


@pytest.mark.parametrize("angle", [0, 30, 75, 120])
def test_shape_with_one_symmetric_axis_scores_one(angle):
    score = asymmetry(find_lesion(teardrop(angle), []), variant="paper")
    assert score.ratio_horizontal_axis > 0.97  # the axis through both discs
    assert score.ratio_vertical_axis < 0.9
    assert score.score == 1


def test_irregular_shape_scores_two():
    mask = np.zeros((400, 400), bool)
    mask[100:300, 100:160] = True
    mask[100:160, 100:320] = True  # an L: no mirror axis along its principal axes
    assert asymmetry(find_lesion(mask, []), variant="paper").score == 2


@pytest.mark.parametrize("variant", ["paper", "study"])
def test_border_score_grows_with_lobes(variant):
    scores = [border(find_lesion(lobes(k), []), variant=variant).score for k in (0, 4, 8, 16)]
    assert scores == sorted(scores) and scores[-1] > scores[0], scores


def patches(colors: list[tuple[int, int, int]], size=120) -> tuple[np.ndarray, np.ndarray]:
    # green surround: far from every reference color, because the study variant counts the mean
    # color outside the mask as one more color
    image = np.full((size, size * len(colors) + 40, 3), (0, 255, 0), np.uint8)
    mask = np.zeros(image.shape[:2], bool)
    for k, rgb in enumerate(colors):
        image[20 : size - 20, 20 + k * size : 20 + (k + 1) * size] = rgb
        mask[20 : size - 20, 20 + k * size : 20 + (k + 1) * size] = True
    return image, mask


def test_color_patches_give_exactly_their_colors():
    image, mask = patches([REFERENCE_COLORS["white"], REFERENCE_COLORS["blue_gray"]])
    score = color(image, mask, variant="paper")
    assert {n for n, on in score.present.items() if on} == {"white", "blue_gray"}
    assert score.score == 2


@pytest.mark.parametrize("names", [["black"], ["light_brown", "white"], ["red", "blue_gray", "white"]])
def test_color_set_is_every_reference_within_threshold(names):
    # brown, red and black lie within 0.4 of each other, so a pure patch also links its neighbours:
    # the expected set follows from the reference table, not from the patch names alone
    rgb = [REFERENCE_COLORS[n] for n in names]
    expected = {COLOR_NAMES[j] for j in np.flatnonzero((reference_distances(np.array(rgb)) < 0.4).any(axis=0))}
    assert set(names) <= expected
    image, mask = patches(rgb)
    for variant in ("paper", "study"):
        present = color(image, mask, variant=variant).present
        assert {n for n, on in present.items() if on} == expected, variant


# --- bad input: every case gets a status and a reason ---------------------------------------

@pytest.fixture()
def files(tmp_path: Path):
    def write(name: str, array: np.ndarray) -> Path:
        path = tmp_path / name
        assert cv2.imwrite(str(path), array)
        return path

    return write


def rgb_image(shape=(200, 240)) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.full(shape + (3,), (150, 160, 190), np.uint8)
    image[60:140, 70:170] = (40, 60, 140)  # BGR of a brown lesion
    return (image + rng.integers(0, 10, image.shape, dtype=np.uint8)).astype(np.uint8)


def lesion_mask(shape=(200, 240)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, (120, 100), (50, 38), 20, 0, 360, 255, -1)
    return mask


def annotate(image: Path | None, mask: Path | None) -> dict:
    return annotate_image("X", "test", image, mask, SETTINGS)


def test_good_input_is_ok(files):
    row = annotate(files("i.png", rgb_image()), files("m.png", lesion_mask()))
    assert row["status"] == "ok" and row["reason"] is None
    assert row["asymmetry_class"] in (0, 1, 2) and row["border_score"] >= 0 and 0 <= row["color_score"] <= 6


def test_empty_mask(files):
    row = annotate(files("i.png", rgb_image()), files("m.png", np.zeros((200, 240), np.uint8)))
    assert row["status"] == "failed" and "empty mask" in row["reason"]


def test_full_frame_mask(files):
    row = annotate(files("i.png", rgb_image()), files("m.png", np.full((200, 240), 255, np.uint8)))
    assert row["status"] == "failed" and "whole frame" in row["reason"]


def test_lesion_touching_border_is_scored_with_a_note(files):
    mask = np.zeros((200, 240), np.uint8)
    cv2.circle(mask, (20, 100), 60, 255, -1)
    row = annotate(files("i.png", rgb_image()), files("m.png", mask))
    assert "touches the image border" in row["reason"]
    assert row["asymmetry_class"] is not None and row["color_score"] is not None


def test_several_components_keep_the_largest(files):
    mask = lesion_mask()
    cv2.circle(mask, (220, 20), 8, 255, -1)
    row = annotate(files("i.png", rgb_image()), files("m.png", mask))
    assert row["component_count"] == 2 and "kept the largest" in row["reason"]
    assert row["status"] == "warning" and row["border_score"] is not None


def test_mask_of_another_size_is_resized(files):
    mask = cv2.resize(lesion_mask(), (480, 400), interpolation=cv2.INTER_NEAREST)
    row = annotate(files("i.png", rgb_image()), files("m.png", mask))
    assert "resized (nearest)" in row["reason"] and row["color_score"] is not None


@pytest.mark.parametrize(
    "convert, note",
    [
        (lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY), "grayscale"),
        (lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2BGRA), "alpha channel dropped"),
        (lambda im: im.astype(np.uint16) * 257, "16-bit"),
    ],
)
def test_unusual_image_formats_are_converted(files, convert, note):
    row = annotate(files("i.png", convert(rgb_image())), files("m.png", lesion_mask()))
    assert note in row["reason"] and row["color_score"] is not None and row["status"] == "warning"


def test_truncated_and_corrupt_files(files, tmp_path):
    good_mask = files("m.png", lesion_mask())
    jpeg = files("i.jpg", rgb_image())
    truncated = tmp_path / "t.jpg"
    truncated.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    row = annotate(truncated, good_mask)
    assert row["status"] == "partial" and "truncated JPEG" in row["reason"] and row["color_score"] is None
    assert row["border_score"] is not None
    garbage = tmp_path / "g.png"
    garbage.write_bytes(b"not an image at all")
    row = annotate(jpeg, garbage)
    assert row["status"] == "failed" and "not a decodable image" in row["reason"]
    truncated_png = tmp_path / "tm.png"
    truncated_png.write_bytes(good_mask.read_bytes()[:-20])
    assert "truncated PNG" in annotate(jpeg, truncated_png)["reason"]
    assert "cannot read" in annotate(jpeg, tmp_path / "missing.png")["reason"]


def test_greyscale_png_fast_path_decodes_as_opencv_does(files, tmp_path):
    """8-bit greyscale PNGs go through libspng: the same array as OpenCV's; a damaged chunk (which
    libspng alone would decode) is still refused, and other PNGs are left to OpenCV."""
    from crowdskin.automated.preprocessing import _decode_grey8_png, read_array

    rng = np.random.default_rng(3)
    grey = (rng.random((123, 77)) * 255).astype(np.uint8)
    for compression in (0, 9):
        path = tmp_path / f"g{compression}.png"
        assert cv2.imwrite(str(path), grey, [cv2.IMWRITE_PNG_COMPRESSION, compression])
        fast = _decode_grey8_png(path.read_bytes())
        assert fast is not None and fast.dtype == np.uint8 and np.array_equal(fast, grey)
        assert np.array_equal(read_array(path), cv2.imread(str(path), cv2.IMREAD_UNCHANGED))
    stored = tmp_path / "stored.png"  # uncompressed: a flipped byte still inflates, to a wrong pixel
    assert cv2.imwrite(str(stored), lesion_mask(), [cv2.IMWRITE_PNG_COMPRESSION, 0])
    data = bytearray(stored.read_bytes())
    data[data.index(b"IDAT") + 5000] ^= 0x55  # inside the pixels: only the chunk's CRC tells
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes(bytes(data))
    assert _decode_grey8_png(bytes(data)) is None
    assert annotate(files("i.png", rgb_image()), damaged)["status"] == "failed"
    for other in (rgb_image(), lesion_mask().astype(np.uint16) * 257):
        assert _decode_grey8_png(files("other.png", other).read_bytes()) is None


@pytest.mark.parametrize("mask", [lesion_mask(), cv2.cvtColor(lesion_mask(), cv2.COLOR_GRAY2BGR)])
def test_oversized_masks_are_refused_whichever_decoder(files, monkeypatch, mask):
    """Greyscale masks (libspng) and colour ones (OpenCV) meet the same pixel limit."""
    from crowdskin.automated import preprocessing

    monkeypatch.setattr(preprocessing, "MAX_PIXELS", mask.shape[0] * mask.shape[1] - 1)
    row = annotate(files("i.png", rgb_image()), files("m.png", mask))
    assert row["status"] == "failed" and "exceeds" in row["reason"]


def test_count_peaks_is_find_peaks_with_height_zero():
    from scipy.signal import find_peaks

    from crowdskin.automated.border import count_peaks

    rng = np.random.default_rng(5)
    for _ in range(3000):
        values = rng.integers(-3, 4, size=int(rng.integers(0, 30)))
        signal = np.repeat(values, rng.integers(1, 4, size=values.size)).astype(np.int64)  # plateaus
        assert count_peaks(signal) == len(find_peaks(signal, height=0)[0]), signal


def test_tiny_lesion_fails_with_reason_not_exception(files):
    """A one-pixel lesion that border() rejects gets a partial row with the reason. Fails if
    annotate_image lets border's BadInputError escape."""
    mask = np.zeros((200, 240), np.uint8)
    mask[100, 120] = 255
    with pytest.raises(BadInputError):
        border(find_lesion(mask.astype(bool), []))
    row = annotate(files("i.png", rgb_image()), files("m.png", mask))
    assert row["status"] in ("partial", "failed") and row["border_score"] is None
    assert row["reason"] and row["reason"].startswith("border: ")


# --- shards and tables ------------------------------------------------------------------------

def test_plan_shards_only_lesions_with_a_mask_deterministically():
    """Fails if lesions without a mask get a shard job, or if shards are not sized by masks."""
    ids = [f"I{k:03d}" for k in range(60)]
    images = pd.DataFrame({"image_id": ids[::-1], "dataset": "d", "image_path": "img.png",
                           "mask_path": [None if k % 4 == 0 else f"m{k}.png" for k in range(60)][::-1]})
    plan = plan_shards(images, 20)
    assert plan["image_id"].tolist() == ids
    without_mask = plan["mask_path"].isna()
    assert (plan.loc[without_mask, "shard"] == NO_SHARD).all() and without_mask.sum() == 15
    assert plan.loc[~without_mask, "shard"].value_counts().sort_index().tolist() == [20, 20, 5]
    assert plan_shards(images.sample(frac=1, random_state=1), 20).equals(plan)


def test_rows_without_work_fail_with_the_reason():
    """Fails if a lesion without a mask is dropped or scored instead of failed with its reason."""
    plan = plan_shards(pd.DataFrame({"image_id": ["A", "B", "C"], "dataset": "d",
                                     "image_path": ["a.png", None, "c.png"],
                                     "mask_path": [None, None, "c_mask.png"]}), 10)
    rows = rows_without_work(plan, SETTINGS).set_index("image_id")
    assert list(rows.index) == ["A", "B"]
    assert (rows["status"] == "failed").all()
    assert rows.loc["A", "reason"] == "no mask: no asymmetry, border or color"
    assert rows.loc["B", "reason"] == "no mask: no asymmetry, border or color; no image: no color score"


def test_table_and_long_rows(files, tmp_path):
    rows = pd.DataFrame([
        {"image_id": "A", "dataset": "t", "image_path": str(files("a.png", rgb_image())),
         "mask_path": str(files("am.png", lesion_mask()))},
        {"image_id": "B", "dataset": "t", "image_path": None, "mask_path": str(files("bm.png", lesion_mask()))},
        {"image_id": "C", "dataset": "t", "image_path": None, "mask_path": None},
    ])
    serial = annotate_table(rows, SETTINGS, workers=1)
    parallel = annotate_table(rows, SETTINGS, workers=2)
    pd.testing.assert_frame_equal(serial, parallel)
    assert serial["status"].tolist() == ["ok", "partial", "failed"]
    AUTOMATED.validate(serial)
    long = to_annotations(serial, "results/annotations/automated.parquet")
    assert sorted(long["feature"].unique()) == ["asymmetry", "border", "color"]
    assert len(long) == 3 + 2  # A has three scores, B two, C none
    assert set(long["source"]) == {"automated"} and set(long["annotator"]) == {"automated"}
    a_asym = long[(long.image_id == "A") & (long.feature == "asymmetry")]["value"].item()
    assert a_asym == serial.loc[0, "asymmetry_class"]


def test_component_count_matches_labelling():
    # the contour-tree count stands in for connected-component labelling (speed); it must agree,
    # including components on the array's edge and islands inside holes
    from crowdskin.automated.preprocessing import largest_component

    rng = np.random.default_rng(1)
    for _ in range(300):
        image = (rng.random((rng.integers(1, 30), rng.integers(1, 30))) < rng.random()).astype(np.uint8)
        n_labels, labels = cv2.connectedComponents(image, connectivity=8)
        count, largest = largest_component(image)
        assert count == n_labels - 1
        if count > 1:
            assert int(largest.sum()) == int(np.bincount(labels.ravel())[1:].max())
    ring_with_island = np.zeros((9, 9), np.uint8)
    ring_with_island[1:8, 1:8] = 1
    ring_with_island[2:7, 2:7] = 0
    ring_with_island[4, 4] = 1
    assert largest_component(ring_with_island)[0] == 2


def test_shortcuts_match_their_plain_definitions():
    # background count, mirror overlaps, border search lines and largest box are computed by
    # shortcuts (contour tree, half images, contiguous lines); each must equal the plain computation
    from crowdskin.automated.asymmetry import _mirror_overlap, background_components
    from crowdskin.automated.border import _first_hits, _largest_bbox

    rng = np.random.default_rng(2)
    for _ in range(300):
        shape = (int(rng.integers(1, 25)), int(rng.integers(1, 25)))
        image = (rng.random(shape) < rng.random()).astype(np.uint8)
        for code in (0, 1):
            assert _mirror_overlap(image, code) == cv2.countNonZero(cv2.bitwise_and(image, cv2.flip(image, code)))
        plain = {"down": image, "up": image[::-1, :], "left": image[:, ::-1].T, "right_upwards": image[::-1, :].T}
        for direction, lines in plain.items():
            idx, has = _first_hits(image, direction)
            assert np.array_equal(idx, np.argmax(lines > 0, axis=0)) and np.array_equal(has, (lines > 0).any(axis=0))
        if not image.any():
            continue
        n_labels, labels = cv2.connectedComponents(image, connectivity=8)
        areas = np.bincount(labels.ravel())[1:]
        keep = int(np.flatnonzero(areas == areas.max())[-1]) + 1
        x, y, w, h = cv2.boundingRect((labels == keep).astype(np.uint8))
        assert _largest_bbox(image) == (n_labels - 1, (y, x, y + h, x + w))
        x, y, w, h = cv2.boundingRect(image)
        r0, c0 = int(rng.integers(0, 3)), int(rng.integers(0, 3))
        frame = (shape[0] + r0 + int(rng.integers(0, 3)), shape[1] + c0 + int(rng.integers(0, 3)))
        ring = np.ones(frame, np.uint8)
        ring[r0 : r0 + h, c0 : c0 + w] = 1 - image[y : y + h, x : x + w]
        expected = cv2.connectedComponents(ring, connectivity=8)[0] - 1
        assert background_components(image[y : y + h, x : x + w], (r0, c0), frame) == expected
