"""The crowd layer: what crowdskin does with non-expert input.

- `consensus`: ENHANCE training targets (per-annotator z-scores averaged per lesion) and the
  disagreement moments across annotators.
- `mturk`: the CROWDSIM quality rules for MTurk similarity answers and the filtering funnel.
- `labels`: crowd labels for candidate images, by majority vote and by Dawid-Skene (crowd-kit).
- `analysis`: the studies' tables (annotation counts, label correlation, source agreement,
  the Cheplygina & Pluim disagreement experiment) and spammer detection on synthetic data.
- `figures`: raincloud plots and the source agreement heat map (matplotlib, Agg).
- `schemas`: pandera schemas of this layer's outputs.
"""
