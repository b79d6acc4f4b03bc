"""The lesion gallery (crowdskin.evaluate.gallery): the best model and the lesions it shows are the ones
the rules say (hand-made tables built so that another choice fails), thumbnails have the asked size, and
the PNG drawn from tiny generated images stays within the report's width."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from crowdskin.evaluate.gallery import (
    MAX_WIDTH,
    RIGHT,
    WRONG,
    Settings,
    annotation_lines,
    backbone_gallery,
    best_models,
    choose_lesions,
    load_thumbnail,
    out_of_fold,
    save_gallery,
    try_thumbnail,
)

NAN = math.nan


def summary(rows: list[tuple[str, str, str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["model", "kind", "backbone", "pooled_auc", "mean_auc"])


def lesions(scores: list[float], labels: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"image_id": [f"L{i:02d}" for i in range(len(scores))], "score": scores, "label": labels})


# --- the best model ----------------------------------------------------------------------------------


def test_best_model_is_the_highest_pooled_auc_never_the_baseline_or_the_random_control():
    table = summary([
        ("baseline", "baseline", "vgg16", 0.99, 0.99),
        ("random", "random", "vgg16", 0.98, 0.98),
        ("multitask-crowd-color", "multitask", "vgg16", 0.80, 0.90),  # best fold mean, lower pooled AUC
        ("ensemble-crowd", "ensemble", "vgg16", 0.85, 0.70),
        ("multihead-student", "multihead", "resnet50", 0.75, 0.75),
        ("baseline", "baseline", "resnet50", 0.90, 0.90),
    ])
    assert best_models(table) == {"vgg16": "ensemble-crowd", "resnet50": "multihead-student"}


def test_best_model_ties_go_to_the_fold_mean_then_the_name():
    table = summary([
        ("b-model", "multitask", "vgg16", 0.8, 0.7),
        ("a-model", "multitask", "vgg16", 0.8, 0.7),
        ("c-model", "multitask", "vgg16", 0.8, 0.75),
        ("z-model", "multitask", "resnet50", 0.8, 0.7),
        ("y-model", "multitask", "resnet50", 0.8, 0.7),
    ])
    assert best_models(table) == {"vgg16": "c-model", "resnet50": "y-model"}


def test_without_a_pooled_auc_the_fold_mean_ranks_and_a_backbone_without_candidates_is_absent():
    table = summary([
        ("m1", "multitask", "vgg16", NAN, 0.6),
        ("m2", "multitask", "vgg16", NAN, 0.7),
        ("m3", "multitask", "vgg16", NAN, NAN),
        ("baseline", "baseline", "resnet50", 0.9, 0.9),
    ])
    assert best_models(table) == {"vgg16": "m2"}
    assert best_models(table.iloc[0:0]) == {}


# --- the lesions -----------------------------------------------------------------------------------


def test_chosen_lesions_are_the_most_confidently_wrong_and_right():
    # L00-L05 errors with |score - label| 0.95, 0.6, 0.9, 0.55, 0.8, 0.7; L06-L11 correct with 0.05 ... 0.45
    frame = lesions(
        [0.95, 0.4, 0.1, 0.55, 0.8, 0.3, 0.95, 0.2, 0.75, 0.1, 0.6, 0.45],
        [0, 1, 1, 0, 0, 1, 1, 0, 1, 0, 1, 0],
    )
    chosen = choose_lesions(frame, 3)
    wrong = chosen[chosen["group"] == WRONG]
    right = chosen[chosen["group"] == RIGHT]
    assert wrong["image_id"].tolist() == ["L00", "L02", "L04"]
    assert right["image_id"].tolist() == ["L06", "L09", "L07"]
    assert chosen["group"].tolist() == [WRONG] * 3 + [RIGHT] * 3
    assert np.allclose(wrong["confidence"], [0.95, 0.9, 0.8])


def test_the_threshold_decides_what_is_an_error():
    frame = lesions([0.5, 0.5, 0.7], [1, 0, 0])  # at 0.5 exactly: predicted abnormal
    chosen = choose_lesions(frame, 5, threshold=0.5)
    assert chosen.loc[chosen["group"] == WRONG, "image_id"].tolist() == ["L02", "L01"]
    assert chosen.loc[chosen["group"] == RIGHT, "image_id"].tolist() == ["L00"]
    at_08 = choose_lesions(frame, 5, threshold=0.8)
    assert at_08.loc[at_08["group"] == WRONG, "image_id"].tolist() == ["L00"]


def test_ties_go_to_the_smaller_image_id_whatever_the_row_order():
    frame = lesions([0.9, 0.9, 0.9, 0.1, 0.1], [0, 0, 0, 0, 0]).iloc[::-1]
    chosen = choose_lesions(frame, 2)
    assert chosen.loc[chosen["group"] == WRONG, "image_id"].tolist() == ["L00", "L01"]
    assert chosen.loc[chosen["group"] == RIGHT, "image_id"].tolist() == ["L03", "L04"]


def test_groups_without_lesions_and_empty_predictions():
    all_right = choose_lesions(lesions([0.1, 0.9], [0, 1]), 4)
    assert set(all_right["group"]) == {RIGHT}
    assert len(all_right) == 2
    empty = choose_lesions(lesions([], []), 4)
    assert empty.empty
    assert list(empty.columns) == ["image_id", "score", "label", "group", "confidence"]
    with pytest.raises(ValueError, match="n must be"):
        choose_lesions(lesions([0.1], [0]), -1)


def test_out_of_fold_keeps_test_rows_one_per_lesion():
    predictions = pd.DataFrame({
        "image_id": ["a", "b", "a", "c", "c"],
        "fold": [0, 0, 1, 1, 2],
        "split": ["test", "train", "train", "test", "test"],
        "score": [0.2, 0.99, 0.99, 0.4, 0.6],
        "label": [0, 1, 0, 1, 1],
    })
    pooled = out_of_fold(predictions).set_index("image_id")
    assert sorted(pooled.index) == ["a", "c"]  # b was only trained on
    assert pooled.loc["a", "score"] == pytest.approx(0.2)
    assert pooled.loc["c", "score"] == pytest.approx(0.5)  # tested twice (overlapping test sets): averaged
    assert out_of_fold(predictions[predictions["split"] == "train"]).empty
    clash = predictions.assign(label=[0, 1, 0, 0, 1])
    with pytest.raises(ValueError, match="different labels"):
        out_of_fold(clash)


def test_annotation_lines_per_source_with_missing_sources():
    targets = pd.DataFrame({
        "image_id": ["a"] * 4 + ["b"],
        "source": ["crowd", "crowd", "automated", "student", "crowd"],
        "feature": ["asymmetry", "color", "border", "asymmetry", "asymmetry"],
        "target": [0.04, -1.26, 0.8, 9.9, 0.3],
        "available": [True, True, True, False, True],
        "n_annotators": [3, 3, 1, 0, 2],
    })
    lines = annotation_lines(targets, ["a", "b", "missing"])
    assert lines["a"] == ["student: none", "crowd: A +0.0 B – C -1.3 (n 3)", "automated: A – B +0.8 C –"]
    assert lines["b"] == ["student: none", "crowd: A +0.3 B – C – (n 2)", "automated: none"]
    assert lines["missing"] == ["student: none", "crowd: none", "automated: none"]


# --- thumbnails and the figure ---------------------------------------------------------------------


def write_lesion(folder: Path, name: str, size: tuple[int, int]) -> tuple[Path, Path]:
    """A tiny generated lesion: a dark ellipse on skin colour, and its 0/255 mask."""
    width, height = size
    rows, cols = np.mgrid[0:height, 0:width]
    inside = ((cols - width / 2) / (width / 3)) ** 2 + ((rows - height / 2) / (height / 3)) ** 2 <= 1
    rgb = np.full((height, width, 3), (225, 180, 150), dtype=np.uint8)
    rgb[inside] = (90, 50, 30)
    image, mask = folder / f"{name}.jpg", folder / f"{name}_segmentation.png"
    Image.fromarray(rgb).save(image)
    Image.fromarray(inside.astype(np.uint8) * 255).save(mask)
    return image, mask


@pytest.mark.parametrize("size", [96, 128])
def test_thumbnails_have_the_asked_size(tmp_path, size):
    image, mask = write_lesion(tmp_path, "wide", (300, 120))
    picture = load_thumbnail(image, size)
    lesion = load_thumbnail(mask, size, mask=True)
    assert picture.shape == lesion.shape == (size, size, 3)
    assert picture.dtype == lesion.dtype == np.uint8
    # the lesion is white in the middle; a wide image is letterboxed above and below
    assert (lesion[size // 2, size // 2] == 255).all()
    assert (lesion[0, size // 2] == picture[0, size // 2]).all()
    small, _ = write_lesion(tmp_path, "small", (20, 20))
    assert load_thumbnail(small, size).shape == (size, size, 3)


def test_a_missing_or_unreadable_file_gives_a_reason_not_an_error(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    assert try_thumbnail(None, 64) == (None, "no image")
    assert try_thumbnail(NAN, 64, mask=True) == (None, "no mask")
    assert try_thumbnail(pd.NA, 64) == (None, "no image")
    for path in (broken, tmp_path / "absent.png"):
        thumb, reason = try_thumbnail(str(path), 64)
        assert thumb is None
        assert reason.startswith("image unreadable")


def test_gallery_png_from_generated_images_fits_the_report_width(tmp_path):
    ids = [f"L{i:02d}" for i in range(6)]
    paths = [write_lesion(tmp_path, image_id, (80 + 10 * i, 60)) for i, image_id in enumerate(ids)]
    images = pd.DataFrame({"image_id": ids, "image_path": [str(p[0]) for p in paths],
                           "mask_path": [str(p[1]) for p in paths[:-1]] + [None]})
    targets = pd.DataFrame({"image_id": ids, "source": "crowd", "feature": "asymmetry", "target": 0.5,
                            "available": True, "n_annotators": 3})

    def predictions(scores: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"image_id": ids, "fold": [0, 0, 0, 1, 1, 1], "split": "test", "score": scores,
                             "label": [0, 1, 0, 1, 0, 1]})

    auc = summary([("baseline", "baseline", "tiny", 0.6, 0.6), ("model", "multitask", "tiny", 0.7, 0.7)])
    settings = Settings(lesions=4, thumbnail=112, threshold=0.5)
    models = {"model": predictions([0.9, 0.2, 0.1, 0.8, 0.6, 0.3]), "baseline": predictions([0.1] * 6)}
    gallery = backbone_gallery("tiny", "model", models, auc, images, targets, settings)
    # the model errs on L00, L01, L04, L05; the baseline (0.1 everywhere) on the three abnormal ones
    assert [len(row.panels) for row in gallery.rows] == [4, 2, 3, 3]
    assert gallery.rows[0].title.startswith("Best model: model")
    out = tmp_path / "gallery.png"
    save_gallery(gallery, settings.thumbnail, out)
    with Image.open(out) as png:
        assert 600 <= png.width <= MAX_WIDTH
        assert png.height > 4 * settings.thumbnail
    # more lesions than fit on a line, and the largest thumbnails the config allows: still within the width
    wide = Settings(lesions=12, thumbnail=200)
    save_gallery(backbone_gallery("tiny", "model", models, auc, images, targets, wide), wide.thumbnail, out)
    with Image.open(out) as png:
        assert png.width <= MAX_WIDTH
    # no model besides the baseline, and no predictions at all: the rows say so
    empty = backbone_gallery("tiny", None, {}, auc, images, targets, settings)
    assert [row.panels for row in empty.rows] == [(), ()]
    assert all(row.empty for row in empty.rows)
    save_gallery(empty, settings.thumbnail, out)
    with Image.open(out) as png:
        assert png.width <= MAX_WIDTH


def test_thumbnails_of_real_images_through_the_mirror(shared_data):
    # The real sample's images.parquet names resources/raw/<dest>/...; with `mirror:` the same files lie
    # under the mirror: archive photographs with full-size masks, and CROWDSIM thumbnails whose ISIC 2017
    # masks are full size.
    pairs = [(shared_data / "isic_archive_sample/images/ISIC_0001769.jpg",
              shared_data / "isic_archive_sample/masks/ISIC_0001769_segmentation.png"),
             (shared_data / "crowdsim/thumbnails/ISIC_0000003.jpg",
              shared_data / "isic2017/masks/ISIC_0000003_segmentation.png")]
    for image, mask in pairs:
        if not (image.is_file() and mask.is_file()):
            pytest.skip(f"{image.name} or its mask is not in {shared_data}")
        picture, lesion = load_thumbnail(image, 112), load_thumbnail(mask, 112, mask=True)
        assert picture.shape == lesion.shape == (112, 112, 3)
        assert picture.std() > 5  # a photograph, not a blank
        assert (lesion == 255).all(axis=2).any()
        assert (lesion < 255).all(axis=2).any()
