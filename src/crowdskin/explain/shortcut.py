"""The synthetic shortcut trap's files (written by crowdskin.synthetic beside its truth): the
clean renderings the marker-free reference model trains on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def shortcut_folder(shortcut_truth: str | Path) -> Path:
    """truth/shortcut/ beside truth/shortcut.csv: a folder per rendering (clean, trap, marker)."""
    return Path(shortcut_truth).with_suffix("")


def clean_images(images: pd.DataFrame, shortcut_truth: str | Path) -> pd.DataFrame:
    """`images` with every image path replaced by its clean rendering (no marker). An image the
    truth does not list is an error naming it: the trap must cover every lesion or none."""
    truth = pd.read_csv(shortcut_truth, dtype={"image_id": str})
    missing = sorted(set(images["image_id"]) - set(truth["image_id"]))
    if missing:
        raise ValueError(f"{shortcut_truth}: no row for image(s) {', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''} of the images table")
    folder = shortcut_folder(shortcut_truth) / "clean"
    return images.assign(image_path=[str(folder / f"{image_id}.png") for image_id in images["image_id"]])
