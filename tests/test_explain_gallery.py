"""The explanation gallery (crowdskin.explain.candidates, crowdskin.explain.gallery) on hand-made
tables, maps and tiny generated images: which models and lesions it shows, where each map comes
from and lands, the A, B, C under it, and the PNG's width. Each test names the break of the code
that makes it fail."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from crowdskin.explain.candidates import Candidate, gallery_candidates
from crowdskin.explain.gallery import (
    GAP,
    MARGIN,
    MAX_WIDTH,
    NO_VALUE,
    Settings,
    abc_lines,
    backbone_explanations,
    choose_models,
    draw_lesions,
    image_box,
    lesion_map,
    lesion_pool,
    save_explanations,
)
from crowdskin.train.tasks import Task
from test_evaluate_gallery import summary  # the scores' summary rows, as the lesion gallery's tests build them

NAN = math.nan




# --- the models --------------------------------------------------------------------------------------


def test_candidates_are_the_baseline_and_the_models_with_heads_never_the_randomized_control():
    """Break: leaving out `not kind.randomized_control`, or taking every explained model."""
    tasks = [Task("baseline", "baseline"), Task("multitask-crowd-color", "multitask", "crowd", "color"),
             Task("multihead-crowd", "multihead", "crowd", features=("asymmetry", "border", "color")),
             Task("random", "random", "random", "uniform"), Task("crowdsim-retrain", "crowdsim-retrain")]
    explained = [(task.name, backbone) for task in tasks for backbone in ("smallcnn", "vgg16")]
    candidates = gallery_candidates(tasks, explained)
    assert [(c.model, c.backbone) for c in candidates] == [
        ("baseline", "smallcnn"), ("baseline", "vgg16"), ("multitask-crowd-color", "smallcnn"),
        ("multitask-crowd-color", "vgg16"), ("multihead-crowd", "smallcnn"), ("multihead-crowd", "vgg16")]
    assert candidates[0].heads == ()
    assert candidates[2].heads == ("color",)
    assert candidates[4].heads == ("asymmetry", "border", "color")
    # what the rule's params carry comes back as it went
    assert [Candidate.from_dict(c.to_dict()) for c in candidates] == candidates


def test_models_are_the_baseline_then_the_highest_pooled_auc_capped_never_the_control():
    """Break: ranking by the fold mean where a pooled AUC exists, the cap left out, the baseline
    ranked among the others, or another backbone's AUC used."""
    candidates = [Candidate("baseline", "vgg16"), Candidate("random", "vgg16", ("uniform",)),
                  Candidate("low", "vgg16", ("color",)), Candidate("best-mean", "vgg16", ("color",)),
                  Candidate("best-pooled", "vgg16", ("border",)), Candidate("no-pooled", "vgg16", ("border",)),
                  Candidate("unscored", "vgg16", ("border",))]
    table = summary([
        ("baseline", "baseline", "vgg16", 0.99, 0.99),
        ("random", "random", "vgg16", 0.98, 0.98),  # a control even if it came as a candidate
        ("low", "multitask", "vgg16", 0.70, 0.70),
        ("best-mean", "multitask", "vgg16", 0.80, 0.95),
        ("best-pooled", "multitask", "vgg16", 0.90, 0.85),
        ("no-pooled", "multitask", "vgg16", NAN, 0.85),  # repeated hold-out: the fold mean ranks it
        ("low", "multitask", "resnet50", 0.99, 0.99),
        ("ensemble-crowd", "ensemble", "vgg16", 0.97, 0.97),  # not explained: never a candidate
    ])
    assert [c.model for c in choose_models(candidates, table, 3)] == ["baseline", "best-pooled", "no-pooled",
                                                                      "best-mean"]
    assert [c.model for c in choose_models(candidates, table, 1)] == ["baseline", "best-pooled"]
    assert [c.model for c in choose_models(candidates, table, 10)] == ["baseline", "best-pooled", "no-pooled",
                                                                       "best-mean", "low"]
    assert [c.model for c in choose_models(candidates[2:], table, 2)] == ["best-pooled", "no-pooled"]
    with pytest.raises(ValueError, match="one backbone"):
        choose_models([*candidates, Candidate("baseline", "resnet50")], table, 3)


# --- the lesions -------------------------------------------------------------------------------------


def relevance_table(model: str, n: int = 40, abnormal_every: int = 4, unmasked: tuple[int, ...] = (),
                    seed: int = 0) -> pd.DataFrame:
    ids = [f"L{i:02d}" for i in range(n)]
    frame = pd.DataFrame({"model": model, "backbone": "tiny", "fold": [i % 2 for i in range(n)], "image_id": ids,
                          "label": [int(i % abnormal_every == 0) for i in range(n)],
                          "score": np.linspace(0.05, 0.95, n), "has_mask": [i not in unmasked for i in range(n)],
                          "lesion_area": 0.3, "relevance_lesion": 0.5})
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True)


def test_lesions_are_drawn_at_random_half_abnormal_with_a_mask_and_the_seed_decides():
    """Break: drawing from every lesion (masks ignored, or one model's lesions only), no strata, a
    generator without the seed, or a draw that depends on the tables' row order."""
    unmasked = tuple(range(0, 40, 3))
    relevance = {"baseline": relevance_table("baseline", unmasked=unmasked),
                 "other": relevance_table("other", unmasked=unmasked, seed=1).query("image_id != 'L04'")}
    pool = lesion_pool(relevance)
    assert set(pool["image_id"]) == {f"L{i:02d}" for i in range(40) if i not in unmasked} - {"L04"}
    drawn = draw_lesions(pool, 6, seed=7)
    assert list(drawn["label"]) == [1, 1, 1, 0, 0, 0]
    assert set(drawn["image_id"]) <= set(pool["image_id"])
    # the same seed draws the same lesions, whatever the order of the rows; other seeds draw others
    shuffled = lesion_pool({name: table.sample(frac=1, random_state=5) for name, table in relevance.items()})
    assert draw_lesions(shuffled.iloc[::-1], 6, seed=7).equals(drawn)
    samples = {tuple(draw_lesions(pool, 6, seed=seed)["image_id"]) for seed in range(10)}
    assert len(samples) > 5
    # an odd count gives the odd one to the abnormal; a group too small is filled from the other
    assert list(draw_lesions(pool, 5, seed=7)["label"]) == [1, 1, 1, 0, 0]
    one_abnormal = pool[(pool["label"] == 0) | (pool["image_id"] == "L08")]
    assert list(draw_lesions(one_abnormal, 6, seed=7)["label"]) == [1, 0, 0, 0, 0, 0]
    assert len(draw_lesions(pool.head(3), 6, seed=7)) == 3
    assert draw_lesions(lesion_pool({}), 6, seed=7).empty


def test_a_map_is_found_by_its_lesion_in_its_fold():
    """Break: taking the map at the lesion's row in the relevance table, or from another fold."""
    maps = {"fold0_ids": np.array(["B", "A"]), "fold0_maps": np.stack([np.full((2, 2), 1.0), np.full((2, 2), 2.0)]),
            "fold1_ids": np.array(["A", "C"]), "fold1_maps": np.stack([np.full((2, 2), 3.0), np.full((2, 2), 4.0)])}
    assert lesion_map(maps, 0, "A")[0, 0] == 2.0
    assert lesion_map(maps, 1, "A")[0, 0] == 3.0
    with pytest.raises(KeyError, match="C in fold 0"):
        lesion_map(maps, 0, "C")


# --- what is written under a map ---------------------------------------------------------------------


def test_abc_lines_give_predicted_and_annotated_with_a_dash_where_there_is_none():
    """Break: showing the target where `available` is False (0, which stands for no annotation),
    a spread head taken for a feature, or a -0.0 shown with its sign."""
    row = {"prediction_asymmetry": 0.414, "target_asymmetry": 1.25, "available_asymmetry": True,
           "prediction_asymmetry_std": 0.9, "target_asymmetry_std": 0.3, "available_asymmetry_std": True,
           "prediction_color": -0.04, "target_color": 0.0, "available_color": False}
    assert abc_lines(row, ("asymmetry", "asymmetry_std", "color")) == [
        "A +0.4  annotated +1.2", f"C +0.0  annotated {NO_VALUE}"]
    assert abc_lines(row, ("asymmetry_std",)) == []
    assert abc_lines(None, ("border",)) == [f"B {NO_VALUE}  annotated {NO_VALUE}"]
    assert abc_lines(row, ()) == []


# --- the figure, from tiny generated files -----------------------------------------------------------

FOLDS = 2
MAP = 4  # the maps' side, as a Grad-CAM layer's resolution


def write_lesion(folder: Path, name: str, size: tuple[int, int]) -> tuple[Path, Path]:
    """A tiny generated lesion: a dark ellipse on skin colour, and its 0/255 mask."""
    width, height = size
    rows, cols = np.mgrid[0:height, 0:width]
    inside = ((cols - width / 2) / (width / 3)) ** 2 + ((rows - height / 2) / (height / 3)) ** 2 <= 1
    rgb = np.full((height, width, 3), (225, 180, 150), dtype=np.uint8)
    rgb[inside] = (90, 50, 30)
    image, mask = folder / f"{name}.png", folder / f"{name}_segmentation.png"
    Image.fromarray(rgb).save(image)
    Image.fromarray(inside.astype(np.uint8) * 255).save(mask)
    return image, mask


def tiny_run(folder: Path, models: list[Candidate], n: int = 12) -> dict[str, object]:
    """n lesions (200 x 100 px) tested by k-fold over FOLDS folds, the last without a mask, and L02
    tested a second time in fold 1 (as repeated hold-out would) with a decoy map and score. Every
    map is bright in its top-right cell only, the decoy in its bottom-left one (where a transposed
    map would be bright); maps.npz lists each fold's lesions in reverse of the relevance table's
    order."""
    ids = [f"L{i:02d}" for i in range(n)]
    paths = [write_lesion(folder, image_id, (200, 100)) for image_id in ids]
    images = pd.DataFrame({"image_id": ids, "image_path": [str(p[0]) for p in paths],
                           "mask_path": [str(p[1]) for p in paths[:-1]] + [None]})
    tested = [(i % FOLDS, i) for i in range(n)] + [(1, 2)]
    relevance, predictions, maps = {}, {}, {}
    for candidate in models:
        rows = [{"model": candidate.model, "backbone": "tiny", "fold": fold, "image_id": ids[i],
                 "label": int(i % 3 == 0), "score": 0.9 if (fold, i) == (1, 2) else fold / 10 + i / 100,
                 "has_mask": i < n - 1, "lesion_area": 0.25, "relevance_lesion": 0.6} for fold, i in tested]
        relevance[candidate.model] = pd.DataFrame(rows)
        prediction = pd.DataFrame(rows)[["image_id", "fold", "label", "score"]].assign(split="test")
        for head in candidate.heads:
            prediction[f"prediction_{head}"], prediction[f"target_{head}"] = 0.5, 1.0
            prediction[f"available_{head}"] = True
        predictions[candidate.model] = prediction
        npz = {}
        for fold in range(FOLDS):
            fold_ids = [ids[i] for f, i in tested if f == fold][::-1]
            fold_maps = np.zeros((len(fold_ids), MAP, MAP), dtype=np.float16)
            for k, image_id in enumerate(fold_ids):
                decoy = (fold, image_id) == (1, "L02")
                fold_maps[k, -1 if decoy else 0, 0 if decoy else -1] = 2.0
            npz[f"fold{fold}_ids"], npz[f"fold{fold}_maps"] = np.array(fold_ids), fold_maps
        maps[candidate.model] = npz
    return {"relevance": relevance, "predictions": predictions, "maps": maps, "images": images}


def luminance(patch: np.ndarray) -> float:
    return float(patch.astype(float).mean())


def test_each_lesion_shows_the_map_and_prediction_of_its_test_fold_on_the_image(tmp_path):
    """Break: the decoy fold's map or score (keep="last" in `lesion_pool`), a map laid over the whole
    letterboxed square or transposed, or a lesion without a mask drawn."""
    models = [Candidate("baseline", "tiny"), Candidate("multihead", "tiny", ("asymmetry", "border", "color"))]
    run = tiny_run(tmp_path, models)
    auc = summary([("baseline", "baseline", "tiny", 0.7, 0.7), ("multihead", "multihead", "tiny", 0.8, 0.8)])
    gallery = backbone_explanations("tiny", models, auc, run["relevance"], run["predictions"], run["maps"],
                                    run["images"], Settings(lesions=12, models=3, seed=0))
    assert gallery.models == ("baseline", "multihead")
    shown = {row[0].lines[0]: row for row in gallery.rows}
    assert set(shown) == {f"L{i:02d}" for i in range(11)}  # L11 has no mask
    left, top, width, height = image_box(200, 100, gallery.tile)
    assert (left, width) == (0, gallery.tile) and height == gallery.tile // 2
    for image_id, row in shown.items():
        i = int(image_id[1:])
        fold = i % FOLDS
        assert row[0].lines[2] == f"tested in fold {fold}"
        for tile in row[2:]:
            assert tile.lines[0] == f"p {fold / 10 + i / 100:.2f}"
            picture = tile.picture
            corner = height // 4
            bright = luminance(picture[top:top + corner, width - corner:])
            dark = luminance(picture[top + height - corner:top + height, :corner])
            assert bright > dark + 60, (image_id, bright, dark)
            # the letterbox keeps its grey: the map covers the image only
            assert (picture[:top] == row[0].picture[:top]).all()
        assert row[3].lines[2:] == ("A +0.5  annotated +1.0", "B +0.5  annotated +1.0", "C +0.5  annotated +1.0")
        # the outline lies on the image's box: no lesion on the letterbox
        assert row[1].outline is not None and row[1].outline[:top].max() == 0 and row[1].outline.max() > 0.5


def test_the_figure_is_at_most_1000_px_wide(tmp_path):
    """Break: tiles sized without the column count (eight tiles of TILE_MAX do not fit)."""
    heads = ("asymmetry", "border", "color")
    models = [Candidate("baseline", "tiny")] + [Candidate(f"multitask-automated-asymmetry-{k}", "tiny", heads)
                                                for k in range(5)]
    run = tiny_run(tmp_path, models, n=30)
    auc = summary([(c.model, "multitask", "tiny", 0.8, 0.8) for c in models])
    out = tmp_path / "explanations.png"
    for settings in (Settings(lesions=24, models=5, seed=1), Settings(lesions=2, models=1, seed=1)):
        gallery = backbone_explanations("tiny", models, auc, run["relevance"], run["predictions"], run["maps"],
                                        run["images"], settings)
        assert len(gallery.models) == settings.models + 1 and len(gallery.rows) == settings.lesions
        columns = len(gallery.columns)
        assert 2 * MARGIN + columns * gallery.tile + (columns - 1) * GAP <= MAX_WIDTH
        save_explanations(gallery, out)
        with Image.open(out) as png:
            assert png.width <= MAX_WIDTH
            assert png.height > settings.lesions * gallery.tile
    # nothing to show: the figure says so
    empty = backbone_explanations("other", models, auc, {}, {}, {}, run["images"], Settings(6, 3, 1))
    assert empty.rows == () and "No baseline" in empty.empty
    save_explanations(empty, out)
    with Image.open(out) as png:
        assert png.width <= MAX_WIDTH
