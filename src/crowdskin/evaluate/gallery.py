"""A lesion gallery per backbone: the test lesions that a model gets most confidently wrong and most
confidently right, each with its image, its mask, its label, the predicted probability and the
annotations (consensus ABC targets of every source) the lesion has.

Two models per backbone: its best model and the baseline. "Best" is the highest pooled out-of-fold
AUC (`results/scores/auc_summary.csv`) among the trained models and ensembles, leaving out the
baseline (the reference it is shown beside) and the randomized control (a control, never a
candidate); see `best_models` for the ties and the schemes without a pooled AUC.

Confidence is the distance of the predicted probability from the label, |p - y| (p the predicted
probability of "abnormal", y 0 or 1). A lesion is an error when its prediction at `threshold`
(abnormal when p >= threshold) differs from its label. The most confidently wrong are the errors
with the largest |p - y|, the most confidently right the correct ones with the smallest; ties go to
the smaller image_id so that the gallery is the same on every run.

Images are shown as thumbnails (the longer side `size` px, letterboxed to a square) so that a
gallery of full-size dermoscopy photographs stays a small PNG.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from crowdskin.evaluate.scores import REFERENCE
from crowdskin.pixels import read_rgb8
from crowdskin.train.kinds import registered_kinds

WRONG, RIGHT = "wrong", "right"
# Kinds never chosen as a backbone's best model: a randomized control (the kinds say which) measures
# what a head gains without any annotation, so showing it as "the best model" would mislead.
EXCLUDED_KINDS = tuple(kind.name for kind in registered_kinds() if kind.randomized_control)
SOURCE_ORDER = ("student", "crowd", "automated")
FEATURE_LETTERS = {"asymmetry": "A", "border": "B", "color": "C"}
PREDICTION_COLUMNS = ["image_id", "score", "label"]

# Layout in pixels at DPI: a report displays the PNG at about 1000 px, so the figure is drawn at
# that width and its text sizes are chosen to stay legible there without zooming.
DPI = 100
MAX_WIDTH = 1000
MARGIN = 10
GAP = 4  # between an image and its mask
CELL_PAD = 16  # between two lesions
LINE_PX = 13
TITLE_PX = 30
HEADER_PX = 22
FONT_PT = 8.5
HEADER_PT = 10
TITLE_PT = 12
PAD_GREY = 235  # the letterbox around a thumbnail that is not square
MASK_BACKGROUND = 40


@dataclass(frozen=True)
class Settings:
    """`evaluate.gallery`: how many lesions of each group, the thumbnail size, the threshold."""

    lesions: int = 4
    thumbnail: int = 112
    threshold: float = 0.5

    @classmethod
    def from_config(cls, gallery: Mapping[str, Any]) -> Settings:
        return cls(lesions=int(gallery["lesions"]), thumbnail=int(gallery["thumbnail"]),
                   threshold=float(gallery["threshold"]))


# --- choosing the models and the lesions -------------------------------------------------------------


def ranked_models(auc_summary: pd.DataFrame, *, reference: str = REFERENCE,
                  excluded_kinds: Iterable[str] = EXCLUDED_KINDS) -> pd.DataFrame:
    """auc_summary's rows of every model and ensemble but `reference` and the `excluded_kinds`,
    each backbone's best first.

    Where a model has no pooled AUC (test sets that overlap, or one class only) its fold mean ranks
    it, so a scheme without pooling still ranks its models; ties go to the higher fold mean, then to
    the first name in sorted order. A model without either AUC is left out.
    """
    missing = [c for c in ("model", "kind", "backbone", "pooled_auc", "mean_auc") if c not in auc_summary.columns]
    if missing:
        raise ValueError(f"auc_summary lacks column(s) {missing}; it has {list(auc_summary.columns)}")
    excluded = set(excluded_kinds)
    frame = auc_summary[(auc_summary["model"] != reference) & ~auc_summary["kind"].isin(excluded)].copy()
    frame["_pooled"] = pd.to_numeric(frame["pooled_auc"], errors="coerce")
    frame["_mean"] = pd.to_numeric(frame["mean_auc"], errors="coerce")
    frame["_rank"] = frame["_pooled"].fillna(frame["_mean"])
    frame = frame.dropna(subset=["_rank"])
    frame = frame.sort_values(["_rank", "_mean", "model"], ascending=[False, False, True], kind="mergesort",
                              na_position="last")
    return frame.drop(columns=["_pooled", "_mean", "_rank"])


def best_models(auc_summary: pd.DataFrame, *, reference: str = REFERENCE,
                excluded_kinds: Iterable[str] = EXCLUDED_KINDS) -> dict[str, str]:
    """backbone -> the model with the highest pooled AUC there, among every model and ensemble but
    `reference` and the `excluded_kinds` (ranked as `ranked_models` ranks them). A backbone without
    any candidate is absent.
    """
    frame = ranked_models(auc_summary, reference=reference, excluded_kinds=excluded_kinds)
    return {str(backbone): str(rows["model"].iloc[0]) for backbone, rows in frame.groupby("backbone", sort=False)}


def out_of_fold(predictions: pd.DataFrame) -> pd.DataFrame:
    """One test prediction per lesion (image_id, score, label) from a model's prediction files.

    Only `split == "test"` rows count. With k-fold every lesion is tested once; where test sets
    overlap (repeated hold-out) a lesion's scores are averaged, since the gallery shows one lesion once.
    """
    missing = [c for c in ("split", *PREDICTION_COLUMNS) if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack column(s) {missing}; they have {list(predictions.columns)}")
    test = predictions.loc[predictions["split"] == "test", PREDICTION_COLUMNS].dropna(subset=["score", "label"])
    if test.empty:
        return pd.DataFrame({"image_id": pd.Series(dtype=str), "score": pd.Series(dtype=float),
                             "label": pd.Series(dtype=int)})
    labels = test.groupby("image_id")["label"].nunique()
    if (labels > 1).any():
        raise ValueError(f"lesion(s) {sorted(labels[labels > 1].index)[:5]} have different labels in different folds")
    pooled = test.groupby("image_id", as_index=False).agg(score=("score", "mean"), label=("label", "first"))
    pooled["image_id"] = pooled["image_id"].astype(str)
    pooled["label"] = pooled["label"].astype(int)
    return pooled


def choose_lesions(predictions: pd.DataFrame, n: int, threshold: float = 0.5) -> pd.DataFrame:
    """The `n` most confidently wrong and the `n` most confidently right lesions of one model.

    `predictions`: one row per lesion (image_id, score, label), as `out_of_fold` gives. Returns
    image_id, score, label, group (WRONG or RIGHT), confidence (|score - label|); the wrong ones
    first, each group from the most confident on. Fewer rows where a group has fewer lesions.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    frame = predictions[PREDICTION_COLUMNS].copy()
    frame["image_id"] = frame["image_id"].astype(str)
    frame["confidence"] = (frame["score"].astype(float) - frame["label"].astype(float)).abs()
    predicted = (frame["score"] >= threshold).astype(int)
    wrong = frame[predicted != frame["label"]].sort_values(["confidence", "image_id"], ascending=[False, True],
                                                            kind="mergesort")
    right = frame[predicted == frame["label"]].sort_values(["confidence", "image_id"], ascending=[True, True],
                                                            kind="mergesort")
    chosen = pd.concat([wrong.head(n).assign(group=WRONG), right.head(n).assign(group=RIGHT)], ignore_index=True)
    return chosen[["image_id", "score", "label", "group", "confidence"]]


# --- what is written under each lesion -------------------------------------------------------------


def _source_rank(source: str) -> tuple[int, str]:
    return (SOURCE_ORDER.index(source) if source in SOURCE_ORDER else len(SOURCE_ORDER), source)


def _feature_key(feature: str) -> tuple[int, str]:
    letters = list(FEATURE_LETTERS)
    return (letters.index(feature) if feature in letters else len(letters), feature)


def annotation_lines(targets: pd.DataFrame, image_ids: Iterable[str]) -> dict[str, list[str]]:
    """image_id -> one line per annotation source of the consensus targets (`crowd/targets.parquet`).

    Each line gives the source's consensus z-score per feature (A, B, C for asymmetry, border, color)
    and, where several did, how many annotators scored the lesion; a source that did not score it says "none". The
    z-scores are what the multi-task models regress and compare across sources whose raw scales differ.
    """
    ids = [str(i) for i in image_ids]
    frame = targets[targets["image_id"].astype(str).isin(ids)]
    sources = sorted({str(s) for s in targets["source"].dropna()}, key=_source_rank)
    features = sorted({str(f) for f in targets["feature"].dropna()}, key=_feature_key)
    available = frame[frame["available"].astype(bool)]
    by_lesion = {str(k): rows for k, rows in available.groupby(available["image_id"].astype(str))}
    lines: dict[str, list[str]] = {}
    for image_id in ids:
        rows = by_lesion.get(image_id)
        out = []
        for source in sources:
            part = rows[rows["source"] == source] if rows is not None else pd.DataFrame()
            if part.empty:
                out.append(f"{source}: none")
                continue
            values = dict(zip(part["feature"].astype(str), part["target"].astype(float), strict=True))
            # +0.0 rather than -0.0: a sign that means nothing would read as a direction
            shown = [f"{FEATURE_LETTERS.get(f, f[:3])} {round(values[f], 1) + 0.0:+.1f}" if f in values else
                     f"{FEATURE_LETTERS.get(f, f[:3])} –" for f in features]
            annotators = int(part["n_annotators"].max()) if "n_annotators" in part.columns else 1
            # one annotator (the automated source) needs no count, and the line stays within its lesion
            suffix = f" (n {annotators})" if annotators > 1 else ""
            out.append(f"{source}: {' '.join(shown)}{suffix}")
        lines[image_id] = out
    return lines


def lesion_lines(row: Mapping[str, Any]) -> list[str]:
    """The lesion's id, its label and the predicted probability."""
    label = int(row["label"])
    return [str(row["image_id"]), f"label {label} ({'abnormal' if label else 'normal'})  p {float(row['score']):.3f}"]


# --- thumbnails ------------------------------------------------------------------------------------


def _letterbox(image: Image.Image, size: int, fill: int | tuple[int, int, int]) -> np.ndarray:
    canvas = Image.new(image.mode, (size, size), fill)
    canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return np.asarray(canvas.convert("RGB"))


def load_thumbnail(path: str | Path, size: int, *, mask: bool = False) -> np.ndarray:
    """The image (or, with `mask`, the lesion mask: lesion white) as an RGB uint8 array of size x size,
    its longer side `size` px and the rest a grey letterbox. Raises OSError or ValueError when the file
    cannot be read.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if not mask:
        # JPEG DCT scaling: a 4000 px photograph decodes at a fraction of the cost of a full decode.
        rgb = Image.fromarray(read_rgb8(path, draft_size=(size, size)))
        rgb.thumbnail((size, size), Image.Resampling.LANCZOS)
        return _letterbox(rgb, size, (PAD_GREY,) * 3)
    with Image.open(path) as image:
        # ISIC masks are 0/255, some are saved 0/1: any non-zero pixel is lesion.
        grey = image.convert("L").point(lambda v: 255 if v > 0 else MASK_BACKGROUND)
    grey.thumbnail((size, size), Image.Resampling.BOX)
    return _letterbox(grey, size, PAD_GREY)


def try_thumbnail(path: Any, size: int, *, mask: bool = False) -> tuple[np.ndarray | None, str]:
    """(thumbnail, "") or (None, why there is none): a lesion without a file or with an unreadable one
    is still shown, with the reason in place of the picture."""
    what = "mask" if mask else "image"
    if path is None or (isinstance(path, float) and math.isnan(path)) or path is pd.NA or not str(path):
        return None, f"no {what}"
    try:
        return load_thumbnail(str(path), size, mask=mask), ""
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return None, f"{what} unreadable:\n{type(error).__name__}"


# --- drawing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Panel:
    """One lesion: its thumbnails (None: the reason is shown instead) and the text under them."""

    image: np.ndarray | None
    mask: np.ndarray | None
    lines: tuple[str, ...]
    image_note: str = ""
    mask_note: str = ""


@dataclass(frozen=True)
class Row:
    """A heading and its lesions; `empty` says why a row has none."""

    title: str
    panels: tuple[Panel, ...] = ()
    empty: str = ""


@dataclass(frozen=True)
class Gallery:
    title: str
    rows: tuple[Row, ...] = field(default_factory=tuple)


def _columns(size: int) -> tuple[int, int]:
    """(lesions per line, cell width): as many lesions as fit in MAX_WIDTH."""
    cell = 2 * size + GAP + CELL_PAD
    return max(1, (MAX_WIDTH - 2 * MARGIN + CELL_PAD) // cell), cell


def _text_lines(rows: Sequence[Row]) -> int:
    return max([len(p.lines) for r in rows for p in r.panels] or [1])


def gallery_figure(gallery: Gallery, size: int) -> Figure:
    """The figure of `gallery` with thumbnails of `size` px, drawn 1:1 (one image pixel per figure
    pixel at DPI) and at most MAX_WIDTH px wide."""
    per_line, cell = _columns(size)
    widest = max([len(r.panels) for r in gallery.rows] + [1])
    shown = min(per_line, widest)
    width = min(MAX_WIDTH, max(2 * MARGIN + shown * cell - CELL_PAD, 600))
    block = size + 4 + _text_lines(gallery.rows) * LINE_PX + 8
    heights = [HEADER_PX + max(1, math.ceil(len(r.panels) / per_line)) * block if r.panels else HEADER_PX + LINE_PX * 2
               for r in gallery.rows]
    height = TITLE_PX + sum(heights) + MARGIN
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)

    def axes(x: float, top: float, w: float, h: float) -> Any:
        # pixel box (left, top, width, height) -> figure fractions from the bottom
        return fig.add_axes((x / width, 1 - (top + h) / height, w / width, h / height))

    def text(x: float, top: float, value: str, **kwargs: Any) -> None:
        fig.text(x / width, 1 - top / height, value, va="top", ha="left", **kwargs)

    def picture(x: float, top: float, array: np.ndarray | None, note: str) -> None:
        ax = axes(x, top, size, size)
        ax.set_axis_off()
        if array is not None:
            ax.imshow(array, interpolation="nearest", aspect="auto")
        else:
            ax.set_facecolor((PAD_GREY / 255,) * 3)
            ax.set_axis_on()
            ax.set_xticks([])
            ax.set_yticks([])
            ax.text(0.5, 0.5, note, ha="center", va="center", fontsize=FONT_PT - 1, color="#555555",
                    transform=ax.transAxes)

    text(MARGIN, 8, gallery.title, fontsize=TITLE_PT, fontweight="bold")
    top = float(TITLE_PX)
    for row, row_height in zip(gallery.rows, heights, strict=True):
        text(MARGIN, top + 4, row.title, fontsize=HEADER_PT, fontweight="bold")
        if not row.panels:
            text(MARGIN, top + HEADER_PX, row.empty or "no lesions", fontsize=FONT_PT, color="#555555")
        for index, panel in enumerate(row.panels):
            x = MARGIN + (index % per_line) * cell
            y = top + HEADER_PX + (index // per_line) * block
            picture(x, y, panel.image, panel.image_note or "no image")
            picture(x + size + GAP, y, panel.mask, panel.mask_note or "no mask")
            for k, line in enumerate(panel.lines):
                text(x, y + size + 4 + k * LINE_PX, line, fontsize=FONT_PT,
                     fontweight="bold" if k == 1 else "normal")
        top += row_height
    return fig


def save_gallery(gallery: Gallery, size: int, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    gallery_figure(gallery, size).savefig(path, dpi=DPI)


# --- one backbone's gallery from the stage's tables --------------------------------------------------


def auc_text(auc_summary: pd.DataFrame, model: str, backbone: str) -> str:
    """" (pooled AUC 0.881)" for a heading; the fold mean where there is no pooled AUC, "" where
    the model has neither."""
    row = auc_summary[(auc_summary["model"] == model) & (auc_summary["backbone"] == backbone)]
    if row.empty:
        return ""
    pooled = pd.to_numeric(row["pooled_auc"], errors="coerce").iloc[0]
    if not math.isnan(pooled):
        return f" (pooled AUC {pooled:.3f})"
    mean = pd.to_numeric(row["mean_auc"], errors="coerce").iloc[0]
    return f" (fold-mean AUC {mean:.3f})" if not math.isnan(mean) else ""


def model_rows(name: str, role: str, predictions: pd.DataFrame | None, images: pd.DataFrame,
               targets: pd.DataFrame, settings: Settings, auc: str = "") -> list[Row]:
    """The two rows of one model (most confidently wrong, most confidently right), thumbnails loaded.

    `predictions`: the model's prediction files concatenated (None: the backbone has no such model);
    `images`: image_id, image_path, mask_path (paths readable from the working directory)."""
    heading = f"{role}{auc}" if name.lower() == role.lower() else f"{role}: {name}{auc}"
    if predictions is None:
        return [Row(role, empty=f"no predictions of {name} on this backbone")]
    chosen = choose_lesions(out_of_fold(predictions), settings.lesions, settings.threshold)
    paths = images.assign(image_id=images["image_id"].astype(str)).drop_duplicates("image_id").set_index("image_id")
    notes = annotation_lines(targets, chosen["image_id"])
    rows = []
    for group, what, empty in (
        (WRONG, "most confidently wrong", f"no errors at threshold {settings.threshold:g}"),
        (RIGHT, "most confidently right", f"no correct predictions at threshold {settings.threshold:g}"),
    ):
        panels = []
        for record in chosen[chosen["group"] == group].to_dict("records"):
            lesion = paths.loc[record["image_id"]] if record["image_id"] in paths.index else None
            image, image_note = try_thumbnail(None if lesion is None else lesion.get("image_path"),
                                              settings.thumbnail)
            mask, mask_note = try_thumbnail(None if lesion is None else lesion.get("mask_path"),
                                            settings.thumbnail, mask=True)
            panels.append(Panel(image, mask, (*lesion_lines(record), *notes[record["image_id"]]),
                                image_note, mask_note))
        rows.append(Row(f"{heading} — {what}", tuple(panels), empty))
    return rows


def backbone_gallery(backbone: str, best: str | None, predictions: Mapping[str, pd.DataFrame],
                     auc_summary: pd.DataFrame, images: pd.DataFrame, targets: pd.DataFrame,
                     settings: Settings, reference: str = REFERENCE) -> Gallery:
    """The gallery of one backbone: its best model's rows, then the baseline's.

    `predictions`: model -> that model's prediction files on this backbone, concatenated."""
    rows: list[Row] = []
    if best is None:
        rows.append(Row("Best model", empty="no model besides the baseline has an AUC on this backbone"))
    else:
        rows += model_rows(best, "Best model", predictions.get(best), images, targets, settings,
                           auc_text(auc_summary, best, backbone))
    rows += model_rows(reference, reference.capitalize(), predictions.get(reference), images, targets, settings,
                       auc_text(auc_summary, reference, backbone))
    return Gallery(f"Lesion gallery: {backbone}", tuple(rows))
