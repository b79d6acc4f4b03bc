"""The explanation stage's figure: each model's relevance mass in the lesion with its CI, per
backbone, beside what a map spread evenly over the image would score (the lesions' area share)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from crowdskin.evaluate.figures import MAX_WIDTH_INCHES, themed


@themed
def relevance_figure(summary: pd.DataFrame) -> Figure:
    backbones = list(dict.fromkeys(summary["backbone"]))
    models = list(dict.fromkeys(summary["model"]))
    fig = Figure(figsize=(MAX_WIDTH_INCHES, 1.2 + 0.22 * len(models) * max(1, len(backbones))),
                 layout="constrained")
    if summary.empty:
        fig.text(0.5, 0.5, "No model was explained (explain.enabled, train.save_model).", ha="center")
        return fig
    axes = fig.subplots(len(backbones), 1, squeeze=False)[:, 0]
    for ax, backbone in zip(axes, backbones, strict=True):
        rows = summary[summary["backbone"] == backbone].set_index("model").reindex(models).dropna(how="all")
        positions = range(len(rows))[::-1]
        ax.errorbar(rows["relevance_lesion"], list(positions),
                    xerr=[rows["relevance_lesion"] - rows["ci_low"], rows["ci_high"] - rows["relevance_lesion"]],
                    fmt="o", color="#1f5fa8", capsize=2, markersize=4)
        area = rows["lesion_area"].mean()
        ax.axvline(area, color="#888888", linestyle="--", linewidth=1)
        ax.text(area, len(rows) - 0.4, " the lesions' area share\n (a map spread evenly)", fontsize=7,
                color="#555555", va="top")
        ax.set_yticks(list(positions), rows.index)
        ax.set_xlim(0, 1)
        ax.set_title(f"{backbone}: share of each Grad-CAM map's positive relevance inside the lesion mask")
        ax.set_xlabel("relevance mass in the lesion (mean over test lesions, pooled over folds; 95% bootstrap CI)")
    return fig
