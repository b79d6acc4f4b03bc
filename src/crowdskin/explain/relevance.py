"""Relevance mass: the share of a map's positive relevance inside a region (Arras et al., 2022,
"relevance mass accuracy"), here of Grad-CAM maps inside the lesion mask or on a marker.

Written here, not imported: it is a ratio of two sums, and an evaluation framework for it would
be a dependency bigger than the stage.
"""

from __future__ import annotations

import cv2
import numpy as np


def upsample(maps: np.ndarray, size: int) -> np.ndarray:
    """Maps (n, h, w) to (n, size, size), bilinearly, as Grad-CAM is shown over its image."""
    if len(maps) == 0:
        return np.zeros((0, size, size), dtype=np.float32)
    return np.stack([cv2.resize(np.asarray(m, dtype=np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
                     for m in maps])


def region_at(mask: np.ndarray, size: int) -> np.ndarray:
    """A 0/255 (or boolean) mask squashed to size x size as the image cache squashes images; a
    pixel's value is the share of it that the region covers (0-1), so boundary pixels count in part."""
    area = np.asarray(mask, dtype=np.float32)
    if area.ndim == 3:
        area = area.max(axis=-1)
    area = area / area.max() if area.max() > 0 else area
    return cv2.resize(area, (size, size), interpolation=cv2.INTER_AREA)


def relevance_mass(maps: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """For each map, the share of its positive relevance that lies in its region: sum(R+ x region)
    / sum(R+), with maps upsampled to the regions' size. NaN where a map has no positive relevance
    at all (nothing raised the score: no share to speak of)."""
    if len(maps) != len(regions):
        raise ValueError(f"{len(maps)} maps but {len(regions)} regions")
    if len(maps) == 0:
        return np.zeros(0)
    positive = np.maximum(upsample(maps, regions.shape[-1]), 0.0).astype(np.float64)
    total = positive.sum(axis=(1, 2))
    inside = (positive * regions).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)
