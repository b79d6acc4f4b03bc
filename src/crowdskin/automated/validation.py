"""Agreement with the ENHANCE study's published automated scores (../shared/data/enhance/automated_sample).

    python -m crowdskin.automated.validation [--shared ../shared/data] [--variant study|paper] [--limit N]

Asymmetry and border on the full-resolution ISIC 2017 masks; color on the 256-px CROWDSIM thumbnails
of the ISIC 2017 anchors (masks resized to them with nearest neighbour), since the full-resolution
ISIC 2017 images are not in the sample.
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from .asymmetry import asymmetry
from .border import border
from .color import color
from .preprocessing import BadInputError, find_lesion, read_mask, read_rgb, resize_mask


@dataclass
class Agreement:
    n_published: int
    n_compared: int
    n_failed: int
    spearman: float | None
    exact: float | None
    within_one: float | None
    mean_abs_diff: float | None


def _agreement(ours: list[float], theirs: list[float], n_published: int, failed: int) -> Agreement:
    a, b = np.asarray(ours, float), np.asarray(theirs, float)
    if a.size == 0:
        return Agreement(n_published, 0, failed, None, None, None, None)
    rho = float(spearmanr(a, b)[0]) if a.size > 2 and a.std() > 0 and b.std() > 0 else None
    return Agreement(n_published, int(a.size), failed, rho, float(np.mean(a == b)),
                     float(np.mean(np.abs(a - b) <= 1)), float(np.mean(np.abs(a - b))))


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def published(shared: Path) -> dict[str, dict[str, tuple]]:
    base = shared / "enhance" / "automated_sample"
    return {
        "asymmetry": {r["ID"]: (int(r["i"]), float(r["ii"])) for r in _read(base / "computer_asymmetry_0.9.csv")},
        "border": {r["ID"].removesuffix("_segmentation"): (int(r["i"]),) for r in _read(base / "computer_border_.csv")},
        "color": {r["ID"]: (int(r["i"]),) for r in _read(base / "computer_color.csv")},
    }


def compare_masks(shared: Path, *, variant: str = "study", limit: int | None = None, max_side: int = 2048) -> dict:
    """Asymmetry (raw rank correlation, class agreement) and border agreement on the masks."""
    pub = published(shared)
    ids = sorted(set(pub["asymmetry"]) | set(pub["border"]))[:limit]
    raw_ours, raw_theirs, cls_ours, cls_theirs, b_ours, b_theirs = [], [], [], [], [], []
    failed_a = failed_b = 0
    for image_id in ids:
        try:
            lesion = find_lesion(read_mask(shared / "isic2017" / "masks" / f"{image_id}_segmentation.png", []), [])
        except BadInputError:
            failed_a += image_id in pub["asymmetry"]
            failed_b += image_id in pub["border"]
            continue
        if image_id in pub["asymmetry"]:
            try:
                score = asymmetry(lesion, variant=variant, max_side=max_side)
                cls_ours.append(score.score)
                raw_ours.append(score.raw)
                cls_theirs.append(pub["asymmetry"][image_id][0])
                raw_theirs.append(pub["asymmetry"][image_id][1])
            except BadInputError:
                failed_a += 1
        if image_id in pub["border"]:
            try:
                b_ours.append(border(lesion, variant=variant).score)
                b_theirs.append(pub["border"][image_id][0])
            except BadInputError:
                failed_b += 1
    n_a = len([i for i in ids if i in pub["asymmetry"]])
    n_b = len([i for i in ids if i in pub["border"]])
    raw = _agreement(raw_ours, raw_theirs, n_a, failed_a)
    return {
        "asymmetry_raw": asdict(raw) | {
            "max_abs_diff": float(np.max(np.abs(np.subtract(raw_ours, raw_theirs)))) if raw_ours else None},
        "asymmetry_class": asdict(_agreement(cls_ours, cls_theirs, n_a, failed_a)),
        "border": asdict(_agreement(b_ours, b_theirs, n_b, failed_b)),
    }


def compare_color(shared: Path, *, variant: str = "study", max_pixels: int = 250_000) -> dict:
    """Color on the ISIC 2017 anchor thumbnails that have a published color score."""
    pub = published(shared)["color"]
    anchors = [r["image_id"] for r in _read(shared / "crowdsim" / "ISIC-2017_anchor_images.csv")]
    ours, theirs = [], []
    failed = 0
    for image_id in anchors:
        if image_id not in pub:
            continue
        try:
            rgb = read_rgb(shared / "crowdsim" / "thumbnails" / f"{image_id}.jpg", [])
            mask = read_mask(shared / "isic2017" / "masks" / f"{image_id}_segmentation.png", [])
            mask = resize_mask(mask, rgb.shape[:2], [])
            ours.append(color(rgb, mask, variant=variant, max_pixels=max_pixels).score)
            theirs.append(pub[image_id][0])
        except BadInputError:
            failed += 1
    n = sum(1 for i in anchors if i in pub)
    return {"color": asdict(_agreement(ours, theirs, n, failed)), "anchors": len(anchors)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--variant", default="study", choices=["study", "paper"])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-side", type=int, default=2048)
    args = parser.parse_args(argv)
    result = compare_masks(args.shared, variant=args.variant, limit=args.limit, max_side=args.max_side)
    result |= compare_color(args.shared, variant=args.variant)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
