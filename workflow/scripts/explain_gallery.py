"""Snakemake adapter: per backbone, the explanation gallery of the baseline and the best models with
annotation heads on a random sample of test lesions (crowdskin.explain.gallery)."""
import numpy as np
import pandas as pd

from crowdskin.explain.candidates import Candidate
from crowdskin.explain.gallery import Settings, backbone_explanations, save_explanations
from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)
inp, params = snakemake.input, snakemake.params
settings = Settings.from_config(params.gallery, params.seed)
candidates = [Candidate.from_dict(entry) for entry in params.candidates]
auc_summary = pd.read_csv(inp.auc_summary, keep_default_na=False, na_values=[""])
images = pd.read_parquet(inp.images, columns=["image_id", "image_path", "mask_path"])
folds = len(inp.predictions) // max(1, len(candidates))
for backbone, path in zip(params.backbones, snakemake.output, strict=True):
    relevance, predictions, maps = {}, {}, {}
    # Every candidate's files are inputs so that a re-trained model re-runs the choice; only this
    # backbone's are read (the figure reads only the shown models' of them).
    for i, candidate in enumerate(candidates):
        if candidate.backbone != backbone:
            continue
        relevance[candidate.model] = pd.read_parquet(inp.relevance[i])
        predictions[candidate.model] = pd.concat(
            [pd.read_parquet(file) for file in inp.predictions[i * folds:(i + 1) * folds]], ignore_index=True)
        maps[candidate.model] = np.load(inp.maps[i])
    gallery = backbone_explanations(backbone, candidates, auc_summary, relevance, predictions, maps, images,
                                    settings)
    save_explanations(gallery, path)
    log.info("%s: %s on %d lesions; wrote %s", backbone, ", ".join(gallery.models) or "no model",
             len(gallery.rows), path)
