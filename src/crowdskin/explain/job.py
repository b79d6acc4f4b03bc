"""The explanation stage's job: Grad-CAM maps of one (task, backbone)'s models, one per fold, on
that fold's test lesions, and the relevance mass of each map in the lesion's mask.

A request (JSON, as a training job's) holds: task, backbone, layer (the backbone's Grad-CAM
layer), size (its input size), backend, threads, log, out (relevance, maps) and inputs (models and
predictions, one per fold in fold order; images; cache_array, cache_index, cache_manifest; and, for the shortcut
trap of the synthetic data, shortcut: truth/shortcut.csv, whose folders beside it hold each test
image without the marker and with the marker's presence reversed). It runs in its own process or
in the training stage's warm worker (`crowdskin.train.worker`), which imported Keras already.

Relevance columns (share of the map's positive relevance, 0-1; NaN where the lesion has no mask
or the map has no positive relevance):
- `relevance_lesion`: in the lesion mask, on the image the model was tested on;
- with the shortcut trap, `relevance_marker` on the marker's region of that image, and on the
  clean (`_clean`) and the trap (`_trap`) renderings: `relevance_lesion_*`, `relevance_marker_*`,
  with the model's scores `score_clean`, `score_trap`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from crowdskin.explain.relevance import region_at, relevance_mass
from crowdskin.explain.shortcut import shortcut_folder
from crowdskin.pixels import mask_follows_image
from crowdskin.train.backend import select as select_backend
from crowdskin.train.cache import load_resized, read_cache
from crowdskin.train.runtime import configure

log = logging.getLogger(__name__)

RELEVANCE_COLUMNS = ["model", "backbone", "fold", "image_id", "label", "score", "has_mask", "lesion_area",
                     "relevance_lesion"]
SHORTCUT_COLUMNS = ["marker_train", "marker_trap", "marker_area", "relevance_marker", "score_clean",
                    "score_trap", "relevance_lesion_clean", "relevance_marker_clean", "relevance_lesion_trap",
                    "relevance_marker_trap"]
# The shortcut's renderings, in folders beside truth/shortcut.csv (crowdskin.synthetic).
RENDERINGS = ("clean", "trap")


def _missing(path: Any) -> bool:
    return path is None or (isinstance(path, float) and np.isnan(path)) or bool(pd.isna(path))


def read_region(path: Any, size: int, image_path: Any = None) -> np.ndarray | None:
    """A mask file as a size x size share-of-pixel region, or None where there is no mask. With
    `image_path`, the mask is first turned with its image (crowdskin.pixels.mask_follows_image), as
    the image cache reads the image upright."""
    if _missing(path):
        return None
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ValueError(f"cannot read mask {path}")
    if not _missing(image_path):
        mask = mask_follows_image(mask, image_path)
    return region_at(mask, size)


def _regions(paths: list[Any], size: int, image_paths: list[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Regions (n, size, size) and whether each exists (a missing one is all zeros)."""
    regions = np.zeros((len(paths), size, size), dtype=np.float32)
    present = np.zeros(len(paths), dtype=bool)
    for i, path in enumerate(paths):
        region = read_region(path, size, None if image_paths is None else image_paths[i])
        if region is not None:
            regions[i], present[i] = region, True
    return regions, present


def _scores(model: Any, images: np.ndarray) -> np.ndarray:
    outputs = model.predict(images, batch_size=64, verbose=0)
    scores = outputs["label"] if isinstance(outputs, dict) else outputs
    return np.asarray(scores, dtype=np.float64).reshape(-1)


def explain_fold(model: Any, test: pd.DataFrame, images: np.ndarray, layer: str, size: int,
                 shortcut: pd.DataFrame | None = None,
                 shortcut_root: Path | None = None) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """One fold: `test` (image_id, label, score, mask_path) and its images (n, size, size, 3, 0-255)."""
    from crowdskin.explain.gradcam import gradcam

    maps = gradcam(model, images.astype(np.float32), layer)
    image_paths = test["image_path"].tolist() if "image_path" in test else None
    lesions, has_mask = _regions(test["mask_path"].tolist(), size, image_paths)
    rows = test[["image_id", "label", "score"]].reset_index(drop=True).assign(
        has_mask=has_mask, lesion_area=np.where(has_mask, lesions.mean(axis=(1, 2)), np.nan))
    rows["relevance_lesion"] = np.where(has_mask, relevance_mass(maps, lesions), np.nan)
    arrays = {"maps": maps.astype(np.float32)}
    if shortcut is not None and shortcut_root is not None:
        truth = shortcut.set_index("image_id").loc[rows["image_id"]]
        markers, _ = _regions([shortcut_root / "marker" / f"{i}.png" for i in rows["image_id"]], size)
        rows["marker_train"] = truth["marker_train"].to_numpy(bool)
        rows["marker_trap"] = truth["marker_trap"].to_numpy(bool)
        rows["marker_area"] = markers.mean(axis=(1, 2))
        rows["relevance_marker"] = relevance_mass(maps, markers)
        for rendering in RENDERINGS:
            rendered = np.stack([load_resized(shortcut_root / rendering / f"{i}.png", size)
                                 for i in rows["image_id"]]).astype(np.float32)
            rendered_maps = gradcam(model, rendered, layer)
            rows[f"score_{rendering}"] = _scores(model, rendered)
            rows[f"relevance_lesion_{rendering}"] = np.where(has_mask, relevance_mass(rendered_maps, lesions), np.nan)
            rows[f"relevance_marker_{rendering}"] = relevance_mass(rendered_maps, markers)
            arrays[f"maps_{rendering}"] = rendered_maps.astype(np.float32)
    return rows, arrays


def run_request(request: dict[str, Any]) -> pd.DataFrame:
    """Explain every fold's model of one (task, backbone); writes relevance.parquet and maps.npz."""
    threads = int(request.get("threads", 1))
    select_backend(request.get("backend"), threads=threads)
    # The job's thread pools, as a training job's: left to the backend, TensorFlow's take every core
    # and slow the training jobs that run beside it.
    configure(backend=request.get("backend") or "tensorflow", threads=threads)
    import keras

    from crowdskin.train import models

    inputs = request["inputs"]
    size, layer = int(request["size"]), request["layer"]
    images = pd.read_parquet(inputs["images"], columns=["image_id", "image_path", "mask_path", "abnormal"]
                             ).set_index("image_id")
    # As a training job: a cache built with other labels than the images table's is refused.
    cache_array, cache_index = read_cache(inputs["cache_array"], inputs["cache_index"],
                                          manifest=inputs.get("cache_manifest"), labels=images["abnormal"])
    rows_of = cache_index.set_index("image_id")["row"]
    shortcut = pd.read_csv(inputs["shortcut"]) if inputs.get("shortcut") else None
    shortcut_root = shortcut_folder(inputs["shortcut"]) if inputs.get("shortcut") else None
    tables, arrays = [], {}
    for fold, (model_path, predictions_path) in enumerate(zip(inputs["models"], inputs["predictions"], strict=True)):
        predictions = pd.read_parquet(predictions_path, columns=["image_id", "split", "score", "label"])
        test = predictions[predictions["split"] == "test"].drop(columns="split").reset_index(drop=True)
        test["mask_path"] = images["mask_path"].reindex(test["image_id"]).to_numpy()
        test["image_path"] = images["image_path"].reindex(test["image_id"]).to_numpy()
        fold_images = np.asarray(cache_array[rows_of.loc[test["image_id"]].to_numpy()])
        model = models.load_saved_model(model_path)
        rows, fold_arrays = explain_fold(model, test, fold_images, layer, size, shortcut, shortcut_root)
        tables.append(rows.assign(model=request["task"], backbone=request["backbone"], fold=fold))
        arrays[f"fold{fold}_ids"] = rows["image_id"].to_numpy(str)
        arrays.update({f"fold{fold}_{name}": array for name, array in fold_arrays.items()})
        log.info("fold %d: %d test lesions, median relevance mass in the lesion %.3f", fold, len(rows),
                 rows["relevance_lesion"].median())
        del model
        keras.backend.clear_session()
    relevance = pd.concat(tables, ignore_index=True)
    columns = RELEVANCE_COLUMNS + (SHORTCUT_COLUMNS if shortcut is not None else [])
    relevance = relevance[columns]
    out = request["out"]
    Path(out["relevance"]).parent.mkdir(parents=True, exist_ok=True)
    relevance.to_parquet(out["relevance"], index=False)
    np.savez_compressed(out["maps"], **arrays)
    return relevance
