"""Figures of the crowd layer: raincloud plots (ENHANCE Figs. 3-4) and the source agreement heat
map (Fig. 5). Matplotlib with the Agg backend, so they render without a display."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

DIAGNOSIS_COLORS = {0: "#4C72B0", 1: "#DD8452"}
DIAGNOSIS_NAMES = {0: "healthy", 1: "abnormal"}
# Under 1000 px at the saved dpi: the report shows an image at its own size only up to about 1150 px.
MAX_WIDTH_INCHES = 9.0


def raincloud(targets: pd.DataFrame, images: pd.DataFrame, path: str | Path, *, seed: int) -> Path:
    """One panel per (dataset, source) row × feature column: half violin (cloud), box plot and
    jittered points (rain) of the consensus target, split by diagnosis. Lesions without a
    diagnosis are left out (the panel title gives n)."""
    labelled = images.dropna(subset=["abnormal"])[["image_id", "dataset", "abnormal"]]
    frame = targets[targets["available"]].merge(labelled, on=["image_id", "dataset"])
    row_keys = sorted(frame[["dataset", "source"]].drop_duplicates().itertuples(index=False, name=None))
    features = sorted(frame["feature"].unique())
    rng = np.random.default_rng(seed)
    n_rows, n_cols = max(len(row_keys), 1), max(len(features), 1)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(min(2.9 * n_cols, MAX_WIDTH_INCHES), 2.4 * n_rows), squeeze=False,
                             layout="constrained")
    for i, (dataset, source) in enumerate(row_keys):
        for j, feature in enumerate(features):
            ax = axes[i][j]
            panel = frame[(frame["dataset"] == dataset) & (frame["source"] == source) & (frame["feature"] == feature)]
            for position, label in enumerate((0, 1)):
                values = panel.loc[panel["abnormal"].astype(int) == label, "target"].to_numpy(float)
                if len(values) == 0:
                    continue
                color = DIAGNOSIS_COLORS[label]
                if len(values) > 1 and np.ptp(values) > 0:
                    violin = ax.violinplot(values, positions=[position], orientation="horizontal", side="high",
                                           showextrema=False, widths=0.8)
                    for body in violin["bodies"]:
                        body.set_facecolor(color)
                        body.set_alpha(0.6)
                ax.boxplot(values, positions=[position - 0.12], orientation="horizontal", widths=0.1, showfliers=False)
                jitter = position - 0.3 + rng.uniform(-0.08, 0.08, len(values))
                ax.scatter(values, jitter, s=3, color=color, alpha=0.5, linewidths=0)
            ax.set_yticks([0, 1], [DIAGNOSIS_NAMES[0], DIAGNOSIS_NAMES[1]])
            # two lines: a study's own feature names are longer than ENHANCE's and would run into the next panel
            ax.set_title(f"{dataset} {source}: {feature}\n(n={len(panel)})", fontsize=9)
            ax.set_xlabel("standardised score", fontsize=8)
    if not row_keys:
        axes[0][0].text(0.5, 0.5, "no annotated lesion has a diagnosis", ha="center", va="center")
        axes[0][0].set_axis_off()
    return _save(fig, path)


def agreement_heatmap(agreement: pd.DataFrame, path: str | Path) -> Path:
    """One heat map per (dataset, feature): Pearson r between every pair of sources."""
    panels = list(agreement.groupby(["dataset", "feature"], sort=True)) if len(agreement) else []
    n = max(len(panels), 1)
    n_cols = min(n, 3)
    n_rows = -(-n // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(min(2.8 * n_cols + 1.0, MAX_WIDTH_INCHES), 3.0 * n_rows),
                             squeeze=False, layout="constrained")
    for ax in axes.ravel()[len(panels):]:
        ax.set_axis_off()
    image = None
    for ax, ((dataset, feature), group) in zip(axes.ravel(), panels, strict=False):
        sources = sorted(set(group["source_a"]) | set(group["source_b"]))
        matrix = pd.DataFrame(np.eye(len(sources)), index=sources, columns=sources)
        for row in group.itertuples():
            matrix.loc[row.source_a, row.source_b] = row.r
            matrix.loc[row.source_b, row.source_a] = row.r
        image = ax.imshow(matrix.to_numpy(float), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(sources)), sources, rotation=45, ha="right")
        ax.set_yticks(range(len(sources)), sources)
        for (a, b), value in np.ndenumerate(matrix.to_numpy(float)):
            ax.text(b, a, "–" if np.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(value) > 0.6 else "black")
        ax.set_title(f"{dataset}: {feature}", fontsize=9)
    if not panels:
        axes[0][0].text(0.5, 0.5, "fewer than two sources share lesions", ha="center", va="center", fontsize=8)
        axes[0][0].set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="Pearson r")
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
