"""An explanation gallery per backbone: a few test lesions, each with its image, its mask and the
Grad-CAM map of the baseline and of the best models with annotation heads; under each map the
model's predicted probability, the map's relevance mass in the lesion and, for heads of asymmetry,
border and color, the predicted and the annotated A, B, C.

ENHANCE proposes that a model's predicted A, B, C with its class-activation map is the explanation a
dermatologist reads. Shown on lesions picked for how good their maps look, such a figure would argue
for itself; so the lesions are drawn at random with the run's seed from the test lesions with a mask
(half abnormal, half not, as far as there are), the same for every model of the backbone, each with
the map and the prediction of the fold that tested it.

Models: the baseline, then at most `models` explained models whose kind has annotation heads, never
the randomized control (`crowdskin.explain.candidates`), ranked as the lesion gallery ranks them
(`crowdskin.evaluate.gallery.ranked_models`: pooled out-of-fold AUC, else the fold mean).

Maps: the explanation job's Grad-CAM (`crowdskin.explain.job`) at the resolution of the backbone's
Grad-CAM layer, over the square the model saw (the image squashed, as the image cache squashes it).
Each is upsampled bilinearly onto the image's box in its letterboxed thumbnail, so that it covers the
photograph as the model saw it, and coloured from 0 to its own maximum: colours compare places within
one map, never two maps (a map's values are in its logit's units, which differ between models).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from crowdskin.evaluate.figures import save_figure
from crowdskin.evaluate.gallery import (
    DPI,
    FEATURE_LETTERS,
    FONT_PT,
    LINE_PX,
    MARGIN,
    MAX_WIDTH,
    PAD_GREY,
    TITLE_PT,
    TITLE_PX,
    auc_text,
    ranked_models,
    try_thumbnail,
)
from crowdskin.evaluate.scores import REFERENCE
from crowdskin.explain.candidates import Candidate
from crowdskin.pixels import exif_orientation, mask_follows_image

NO_VALUE = "–"
ABNORMAL = 1
# Perceptually uniform, so equal steps of relevance look like equal steps of colour; its dark end
# (no relevance) dims the image rather than tinting it.
CMAP = "inferno"
ALPHA = 0.55
OUTLINE = "#56B4E9"  # Okabe–Ito sky blue: apart from inferno's colours and from skin tones
TILE_MAX = 160
GAP = 8
ROW_PAD = 10
MIN_WIDTH = 640
# About the width of a character at FONT_PT and DPI (bold is wider), to wrap text to a tile or to
# the figure without measuring it.
CHAR_PX = 6.3
BOLD_CHAR_PX = 7.2


@dataclass(frozen=True)
class Settings:
    """`explain.gallery` and the run's seed: how many lesions, how many models besides the baseline."""

    lesions: int
    models: int
    seed: int

    @classmethod
    def from_config(cls, gallery: Mapping[str, Any], seed: int) -> Settings:
        return cls(lesions=int(gallery["lesions"]), models=int(gallery["models"]), seed=int(seed))


# --- choosing the models and the lesions -------------------------------------------------------------


def choose_models(candidates: Sequence[Candidate], auc_summary: pd.DataFrame, n: int,
                  reference: str = REFERENCE) -> list[Candidate]:
    """One backbone's shown models: the `reference` where it is a candidate, then the `n` other
    candidates ranked highest by `ranked_models` (which also leaves out the randomized control by its
    kind in `auc_summary`); a candidate without any AUC is left out, as it cannot be ranked."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    backbones = {c.backbone for c in candidates}
    if len(backbones) > 1:
        raise ValueError(f"candidates of one backbone expected, got {sorted(backbones)}")
    by_name = {c.model: c for c in candidates}
    ranked = ranked_models(auc_summary, reference=reference)
    ranked = ranked[ranked["backbone"].isin(backbones) & ranked["model"].isin(list(by_name))]
    shown = [by_name[reference]] if reference in by_name else []
    return shown + [by_name[str(model)] for model in ranked["model"].head(n)]


def lesion_pool(relevance: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The test lesions with a mask that every model of `relevance` (model -> its relevance.parquet)
    was tested on: image_id, fold, label. Where a lesion was tested in several folds (repeated
    hold-out) its first fold common to every model is the one shown."""
    common: pd.DataFrame | None = None
    for table in relevance.values():
        masked = table.loc[table["has_mask"].astype(bool), ["image_id", "fold", "label"]].copy()
        masked["image_id"] = masked["image_id"].astype(str)
        masked["fold"] = masked["fold"].astype(int)
        masked["label"] = masked["label"].astype(int)
        common = masked if common is None else common.merge(masked[["image_id", "fold"]], on=["image_id", "fold"])
    if common is None or common.empty:
        return pd.DataFrame({"image_id": pd.Series(dtype=str), "fold": pd.Series(dtype=int),
                             "label": pd.Series(dtype=int)})
    common = common.sort_values(["image_id", "fold"], kind="mergesort").drop_duplicates("image_id")
    return common.reset_index(drop=True)


def draw_lesions(pool: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """`n` lesions of `pool` drawn at random with `seed`: half abnormal (the odd one abnormal), half
    not, the other group filling in where one has too few; abnormal first, each group by image_id.

    The pool is sorted before the draw, so its row order never changes the sample, and a backbone
    with the same test lesions draws the same ones.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    pool = pool.sort_values("image_id", kind="mergesort").reset_index(drop=True)
    abnormal, normal = pool[pool["label"] == ABNORMAL], pool[pool["label"] != ABNORMAL]
    n_abnormal = min(len(abnormal), max(math.ceil(n / 2), n - len(normal)))
    n_normal = min(len(normal), n - n_abnormal)
    drawn = [group.iloc[np.sort(rng.choice(len(group), size=k, replace=False))]
             for group, k in ((abnormal, n_abnormal), (normal, n_normal))]
    return pd.concat(drawn, ignore_index=True)


def lesion_map(maps: Mapping[str, np.ndarray], fold: int, image_id: str) -> np.ndarray:
    """The Grad-CAM map of `image_id` from fold `fold` of a maps.npz (`fold{k}_ids`, `fold{k}_maps`)."""
    ids = np.asarray(maps[f"fold{fold}_ids"]).astype(str)
    where = np.flatnonzero(ids == str(image_id))
    if not len(where):
        raise KeyError(f"no map of lesion {image_id} in fold {fold}")
    return np.asarray(maps[f"fold{fold}_maps"][where[0]], dtype=np.float32)


# --- what is written under each tile ---------------------------------------------------------------


def _number(row: Mapping[str, Any] | None, column: str) -> float:
    if row is None or column not in row:
        return math.nan
    value = pd.to_numeric(row[column], errors="coerce")
    return float(value) if pd.notna(value) else math.nan


def _z(value: float) -> str:
    # +0.0 rather than -0.0: a sign that means nothing would read as a direction
    return NO_VALUE if math.isnan(value) else f"{round(value, 1) + 0.0:+.1f}"


def abc_lines(prediction: Mapping[str, Any] | None, heads: Sequence[str]) -> list[str]:
    """One line per head of asymmetry, border or color that the model has, in A, B, C order: its
    predicted and the annotated consensus z-score of the lesion ("–" where there is none: no
    prediction row, or the lesion not annotated for that feature)."""
    lines = []
    for feature, letter in FEATURE_LETTERS.items():
        if feature not in heads:
            continue
        predicted = _number(prediction, f"prediction_{feature}")
        available = prediction is not None and bool(prediction.get(f"available_{feature}", False))
        annotated = _number(prediction, f"target_{feature}") if available else math.nan
        lines.append(f"{letter} {_z(predicted)}  annotated {_z(annotated)}")
    return lines


def _share(value: float) -> str:
    return NO_VALUE if math.isnan(value) else f"{value:.0%}"


def map_lines(score: float, relevance: float, prediction: Mapping[str, Any] | None,
              heads: Sequence[str]) -> list[str]:
    """Under a model's map: p, the relevance mass in the lesion, and the A, B, C lines."""
    p = NO_VALUE if math.isnan(score) else f"{score:.2f}"
    return [f"p {p}", f"in lesion {_share(relevance)}", *abc_lines(prediction, heads)]


# --- thumbnails and maps ---------------------------------------------------------------------------

Box = tuple[int, int, int, int]  # left, top, width, height in a thumbnail


def image_box(width: int, height: int, size: int) -> Box:
    """Where an image of `width` x `height` lies in its letterboxed thumbnail
    (`crowdskin.evaluate.gallery.load_thumbnail`: shrunk to fit, never enlarged, centred)."""
    scale = min(1.0, size / max(width, height))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    return ((size - w) // 2, (size - h) // 2, w, h)


def upright_size(path: Any) -> tuple[int, int]:
    """(width, height) of the image as shown: EXIF orientations 5-8 swap the stored sides."""
    orientation, (width, height) = exif_orientation(path)
    return (height, width) if orientation >= 5 else (width, height)


def mask_outline(path: Any, box: Box, size: int, *, image_path: Any = None) -> np.ndarray:
    """The lesion mask (any non-zero pixel) stretched onto the image's `box` of a `size` px
    thumbnail, as each pixel's share of lesion (0 on the letterbox): its 0.5 contour is the
    outline. The mask is stretched as the image cache stretches it, so it lies on the image; with
    `image_path`, it is first turned with its image (crowdskin.pixels.mask_follows_image)."""
    with Image.open(str(path)) as mask:
        lesion = (np.asarray(mask.convert("L")) > 0).astype(np.float32)
    if image_path is not None:
        lesion = mask_follows_image(lesion, image_path)
    left, top, w, h = box
    canvas = np.zeros((size, size), dtype=np.float32)
    canvas[top:top + h, left:left + w] = cv2.resize(lesion, (w, h), interpolation=cv2.INTER_AREA)
    return canvas


def overlay(thumbnail: np.ndarray, cam: np.ndarray, box: Box) -> np.ndarray:
    """`thumbnail` (RGB uint8) with `cam` upsampled bilinearly onto the image's `box`, coloured
    from 0 to the map's own maximum with CMAP and blended at ALPHA; the letterbox is untouched.
    A map without positive relevance leaves the thumbnail as it is."""
    out = np.asarray(thumbnail, dtype=np.float32).copy()
    positive = np.maximum(np.asarray(cam, dtype=np.float32), 0.0)
    peak = float(positive.max()) if positive.size else 0.0
    if peak <= 0:
        return out.astype(np.uint8)
    left, top, w, h = box
    upsampled = cv2.resize(positive, (w, h), interpolation=cv2.INTER_LINEAR)
    colours = matplotlib.colormaps[CMAP](np.clip(upsampled / peak, 0.0, 1.0))[..., :3] * 255.0
    region = out[top:top + h, left:left + w]
    out[top:top + h, left:left + w] = (1 - ALPHA) * region + ALPHA * colours
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


# --- the gallery -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """One picture with the text under it; `note` is shown on it (in place of it where None)."""

    picture: np.ndarray | None
    lines: tuple[str, ...] = ()
    outline: np.ndarray | None = None
    note: str = ""


@dataclass(frozen=True)
class Column:
    """A column's heading: its name (wrapped to the tile) and, for a model, its AUC."""

    name: tuple[str, ...]
    auc: str = ""


@dataclass(frozen=True)
class Explanations:
    """A backbone's gallery: column headings, one row of tiles per lesion; `empty` says why none."""

    title: str
    notes: tuple[str, ...]
    columns: tuple[Column, ...]
    rows: tuple[tuple[Tile, ...], ...]
    tile: int
    empty: str = ""
    models: tuple[str, ...] = ()


def tile_size(columns: int) -> int:
    """The side of a tile that lets `columns` tiles fit in MAX_WIDTH, at most TILE_MAX."""
    return max(1, min(TILE_MAX, (MAX_WIDTH - 2 * MARGIN - (columns - 1) * GAP) // max(1, columns)))


def _column(name: str, tile: int, auc: str = "") -> Column:
    lines = textwrap.wrap(name, width=max(8, int(tile / BOLD_CHAR_PX)), break_on_hyphens=True) or [name]
    return Column(tuple(lines), auc.strip(" ()"))


def _test_row(predictions: pd.DataFrame | None, fold: int, image_id: str) -> dict[str, Any] | None:
    if predictions is None or predictions.empty:
        return None
    rows = predictions[(predictions["split"] == "test") & (predictions["fold"].astype(int) == fold)
                       & (predictions["image_id"].astype(str) == image_id)]
    return None if rows.empty else rows.iloc[0].to_dict()


def _relevance_row(relevance: pd.DataFrame, fold: int, image_id: str) -> Mapping[str, Any]:
    rows = relevance[(relevance["fold"].astype(int) == fold) & (relevance["image_id"].astype(str) == image_id)]
    return rows.iloc[0].to_dict()


def _notes(chosen: pd.DataFrame, settings: Settings, resolution: tuple[int, ...] | None) -> tuple[str, ...]:
    abnormal = int((chosen["label"] == ABNORMAL).sum())
    shape = f"{resolution[0]} x {resolution[1]} " if resolution else ""
    return (
        f"{len(chosen)} test lesions with a mask, drawn at random (seed {settings.seed}; {abnormal} abnormal, "
        f"{len(chosen) - abnormal} not), the same for every model; each with the map and prediction of the fold "
        "that tested it.",
        f"Maps: Grad-CAM of the diagnosis logit ({shape}at the backbone's Grad-CAM layer), upsampled bilinearly; "
        "each map coloured from 0 to its own maximum (colours do not compare between maps). Outline: the lesion "
        "mask.",
        "p: predicted probability of abnormal. In lesion: share of the map's positive relevance inside the mask "
        "(a map spread evenly scores the lesion's area). A, B, C: the model's predicted and the annotated "
        f"consensus z-score ({NO_VALUE}: not annotated).",
    )


def backbone_explanations(backbone: str, candidates: Sequence[Candidate], auc_summary: pd.DataFrame,
                          relevance: Mapping[str, pd.DataFrame], predictions: Mapping[str, pd.DataFrame],
                          maps: Mapping[str, Mapping[str, np.ndarray]], images: pd.DataFrame,
                          settings: Settings, reference: str = REFERENCE) -> Explanations:
    """The gallery of one backbone, thumbnails loaded and maps laid over them.

    `candidates`: every backbone's (only this one's are read); `relevance`, `predictions` (every
    fold's predictions.parquet concatenated), `maps` (maps.npz): model -> this backbone's file of
    that model, for at least the shown models; `images`: image_id, image_path, mask_path (paths
    readable from the working directory)."""
    title = f"Where the models look: {backbone}"
    shown = choose_models([c for c in candidates if c.backbone == backbone], auc_summary, settings.models,
                          reference)
    tile = tile_size(2 + len(shown))
    if not shown:
        return Explanations(title, (), (), (), tile, empty="No baseline or model with annotation heads was "
                            "explained on this backbone (explain.enabled, train.save_model).")
    chosen = draw_lesions(lesion_pool({c.model: relevance[c.model] for c in shown}), settings.lesions,
                          settings.seed)
    columns = (Column(("image",)), Column(("mask",)),
               *(_column(c.model, tile, auc_text(auc_summary, c.model, backbone)) for c in shown))
    if chosen.empty:
        return Explanations(title, (), columns, (), tile, "No test lesion with a mask was explained for every "
                            "shown model.", tuple(c.model for c in shown))
    paths = images.assign(image_id=images["image_id"].astype(str)).drop_duplicates("image_id").set_index("image_id")
    rows = []
    resolution = None
    for lesion in chosen.to_dict("records"):
        image_id, fold, label = str(lesion["image_id"]), int(lesion["fold"]), int(lesion["label"])
        entry = paths.loc[image_id] if image_id in paths.index else None
        image_path = None if entry is None else entry.get("image_path")
        image, image_note = try_thumbnail(image_path, tile)
        if image is None:
            # the maps still show, on a blank square standing for the image
            base, box = np.full((tile, tile, 3), PAD_GREY, dtype=np.uint8), (0, 0, tile, tile)
        else:
            base, box = image, image_box(*upright_size(str(image_path)), tile)
        mask_path = None if entry is None else entry.get("mask_path")
        outline, mask_note = None, "no mask"
        if isinstance(mask_path, str) and mask_path:
            try:
                outline, mask_note = mask_outline(mask_path, box, tile, image_path=image_path), ""
            except (OSError, ValueError, cv2.error) as error:
                mask_note = f"mask unreadable: {type(error).__name__}"
        area = _number(_relevance_row(relevance[shown[0].model], fold, image_id), "lesion_area")
        tiles = [Tile(image, (image_id, f"label {label} ({'abnormal' if label == ABNORMAL else 'normal'})",
                             f"tested in fold {fold}"), note=image_note),
                 Tile(base, ("mask outline", f"lesion area {_share(area)}"), outline, mask_note)]
        for candidate in shown:
            cam = lesion_map(maps[candidate.model], fold, image_id)
            resolution = resolution or cam.shape
            row = _relevance_row(relevance[candidate.model], fold, image_id)
            lines = map_lines(_number(row, "score"), _number(row, "relevance_lesion"),
                              _test_row(predictions.get(candidate.model), fold, image_id), candidate.heads)
            note = "" if float(np.max(cam, initial=0.0)) > 0 else "no positive relevance"
            tiles.append(Tile(overlay(base, cam, box), tuple(lines), outline, note))
        rows.append(tuple(tiles))
    return Explanations(title, _notes(chosen, settings, resolution), columns, tuple(rows), tile,
                        models=tuple(c.model for c in shown))


# --- drawing ---------------------------------------------------------------------------------------


def explanations_figure(gallery: Explanations) -> Figure:
    """The figure of `gallery`: tiles drawn 1:1 (one thumbnail pixel per figure pixel at DPI), at
    most MAX_WIDTH px wide."""
    size = gallery.tile
    n_columns = max(1, len(gallery.columns))
    width = min(MAX_WIDTH, max(2 * MARGIN + n_columns * size + (n_columns - 1) * GAP, MIN_WIDTH))
    chars = int((width - 2 * MARGIN) / CHAR_PX)
    notes = [line for note in gallery.notes for line in textwrap.wrap(note, chars)]
    heading_lines = max([len(c.name) + bool(c.auc) for c in gallery.columns] or [0])
    text_lines = max([len(t.lines) for row in gallery.rows for t in row] or [0])
    block = size + 4 + text_lines * LINE_PX + ROW_PAD
    top_of_rows = TITLE_PX + len(notes) * LINE_PX + 8 + heading_lines * LINE_PX + 4
    height = top_of_rows + (len(gallery.rows) * block if gallery.rows else 2 * LINE_PX) + MARGIN
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)

    def axes(x: float, top: float, w: float, h: float) -> Any:
        # pixel box (left, top, width, height) -> figure fractions from the bottom
        return fig.add_axes((x / width, 1 - (top + h) / height, w / width, h / height))

    def text(x: float, top: float, value: str, **kwargs: Any) -> None:
        fig.text(x / width, 1 - top / height, value, va="top", ha=kwargs.pop("ha", "left"), **kwargs)

    text(MARGIN, 8, gallery.title, fontsize=TITLE_PT, fontweight="bold")
    if gallery.rows:
        # the colour scale that every map shares in form, each up to its own maximum
        bar_w = 90
        bar_x = width - MARGIN - bar_w - 60
        bar = axes(bar_x, 10, bar_w, 10)
        bar.imshow(np.linspace(0, 1, 256)[None, :], cmap=CMAP, aspect="auto")
        bar.set_axis_off()
        text(bar_x - 4, 9, "0", fontsize=FONT_PT, ha="right")
        text(bar_x + bar_w + 4, 9, "map's max", fontsize=FONT_PT)
    for k, line in enumerate(notes):
        text(MARGIN, TITLE_PX + k * LINE_PX, line, fontsize=FONT_PT, color="#333333")
    heading_top = TITLE_PX + len(notes) * LINE_PX + 8
    for c, column in enumerate(gallery.columns):
        x = MARGIN + c * (size + GAP)
        for k, line in enumerate(column.name):
            text(x, heading_top + k * LINE_PX, line, fontsize=FONT_PT, fontweight="bold")
        if column.auc:
            text(x, heading_top + len(column.name) * LINE_PX, column.auc, fontsize=FONT_PT)
    if not gallery.rows:
        text(MARGIN, top_of_rows, gallery.empty or "no lesions", fontsize=FONT_PT, color="#555555")
    for r, row in enumerate(gallery.rows):
        y = top_of_rows + r * block
        for c, tile in enumerate(row):
            x = MARGIN + c * (size + GAP)
            ax = axes(x, y, size, size)
            ax.set_axis_off()
            if tile.picture is None:
                ax.set_facecolor((PAD_GREY / 255,) * 3)
                ax.set_axis_on()
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                ax.imshow(tile.picture, interpolation="nearest", aspect="auto")
                if tile.outline is not None and tile.outline.max() > 0.5:
                    ax.contour(tile.outline, levels=[0.5], colors=OUTLINE, linewidths=1.2)
                ax.set_xlim(-0.5, size - 0.5)
                ax.set_ylim(size - 0.5, -0.5)
            if tile.note:
                on_picture = tile.picture is not None
                ax.text(0.5, 0.04 if on_picture else 0.5, tile.note, ha="center",
                        va="bottom" if on_picture else "center", fontsize=FONT_PT - 1, color="#333333",
                        transform=ax.transAxes,
                        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.5}
                        if on_picture else None)
            for k, line in enumerate(tile.lines):
                text(x, y + size + 4 + k * LINE_PX, line, fontsize=FONT_PT)
    return fig


def save_explanations(gallery: Explanations, path: str | Path) -> None:
    save_figure(explanations_figure(gallery), path)
