"""Color after Kasmi & Mokrani (2016): SLIC superpixels in the lesion, each superpixel's mean RGB
compared with six reference colors.

Variants (docs/validation.md):

* ``paper`` — Appendix C: a color counts when the *pixels* of the superpixels within distance
  < 0.4 of it exceed 5 % of the lesion's pixels.
* ``study`` — the study's code (color_helper.py): it counts distinct superpixel mean colors (as
  uint8, ``label2rgb(kind='avg')``) *plus the mean color of everything outside the mask* (label 0
  is not treated as background there), and a color counts when at least 5 % of those distinct
  colors lie within <= 0.4.

Speed: SLIC runs on the lesion's bounding box downscaled (INTER_AREA) to at most ``max_pixels``
pixels; the study ran it on the whole full-resolution image (7.5 s for 6 MP). The score shift is
measured in docs/validation.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.segmentation import slic

from crowdskin.tables import AUTOMATED_COLORS

from .preprocessing import BadInputError, bbox_of

# In the order of crowdskin.tables.AUTOMATED_COLORS, the automated table's color_<name> columns.
REFERENCE_COLORS: dict[str, tuple[int, int, int]] = dict(zip(AUTOMATED_COLORS, [
    (197, 188, 217), (118, 21, 17), (163, 82, 16), (135, 44, 5), (113, 108, 139), (41, 31, 30),
], strict=True))
COLOR_NAMES = AUTOMATED_COLORS
_REFERENCE = np.array(list(REFERENCE_COLORS.values()), dtype=float) / 255.0
DISTANCE_THRESHOLD = 0.4
SHARE_THRESHOLD = 0.05


@dataclass(frozen=True)
class ColorScore:
    score: int
    present: dict[str, bool]
    superpixels: int
    scale: float  # linear downscale factor applied before SLIC (1.0 = full resolution)


def reference_distances(colors_rgb: np.ndarray) -> np.ndarray:
    """(n, 6) Euclidean distances in RGB/255 between n colors (0-255) and the reference colors."""
    return np.linalg.norm(np.asarray(colors_rgb, float)[:, None, :] / 255.0 - _REFERENCE[None], axis=2)


def color(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    variant: str = "study",
    n_segments: int = 100,
    max_pixels: int = 250_000,
    distance_threshold: float = DISTANCE_THRESHOLD,
    share_threshold: float = SHARE_THRESHOLD,
) -> ColorScore:
    """Color score of an RGB uint8 image within a bool mask of the same height and width."""
    if variant not in ("study", "paper"):
        raise ValueError(f"unknown color variant {variant!r} (study, paper)")
    if image.shape[:2] != mask.shape:
        raise BadInputError(f"color: image {image.shape[:2]} and mask {mask.shape} differ")
    if not mask.any():
        raise BadInputError("color: empty mask")
    r0, c0, r1, c1 = bbox_of(mask)
    roi = image[r0:r1, c0:c1]
    roi_mask = mask[r0:r1, c0:c1]
    scale = min(1.0, math.sqrt(max_pixels / roi_mask.size))
    if scale < 1.0:
        size = (max(1, round(roi.shape[1] * scale)), max(1, round(roi.shape[0] * scale)))
        roi = cv2.resize(roi, size, interpolation=cv2.INTER_AREA)
        roi_mask = cv2.resize(roi_mask.view(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        if not roi_mask.any():
            raise BadInputError("color: lesion vanished when downscaled")
    segments = slic(roi, n_segments=n_segments, mask=roi_mask, start_label=1, channel_axis=-1)
    labels = segments[roi_mask]
    pixels = roi[roi_mask].astype(np.float64)
    n_labels = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=n_labels)
    sums = np.stack([np.bincount(labels, weights=pixels[:, k], minlength=n_labels) for k in range(3)], axis=1)
    used = counts > 0
    means = sums[used] / counts[used, None]
    if variant == "study":
        # label2rgb(kind='avg') writes means into a uint8 image (truncation), then np.unique
        outside = ~mask
        background = np.array(cv2.mean(image, mask=outside.view(np.uint8))[:3]) if outside.any() else None
        colors = np.floor(means)
        if background is not None:
            colors = np.vstack([colors, np.floor(background)[None]])
        colors = np.unique(colors, axis=0)
        linked = reference_distances(colors) <= distance_threshold
        present = linked.sum(axis=0) >= share_threshold * len(colors)
    else:
        linked = reference_distances(means) < distance_threshold
        share = (linked * counts[used, None]).sum(axis=0) / counts[used].sum()
        present = share > share_threshold
    flags = {name: bool(flag) for name, flag in zip(COLOR_NAMES, present, strict=True)}
    return ColorScore(int(sum(flags.values())), flags, int(used.sum()), scale)

