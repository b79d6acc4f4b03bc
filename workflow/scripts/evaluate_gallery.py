"""Snakemake adapter: per backbone, the lesion gallery of its best model and the baseline
(crowdskin.evaluate.gallery)."""
import pandas as pd

from crowdskin.evaluate.gallery import Settings, backbone_gallery, best_models, save_gallery
from crowdskin.evaluate.scores import REFERENCE
from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)
inp, params = snakemake.input, snakemake.params
settings = Settings.from_config(params.gallery)
auc_summary = pd.read_csv(inp.auc_summary, keep_default_na=False, na_values=[""])
best = best_models(auc_summary)
images = pd.read_parquet(inp.images, columns=["image_id", "image_path", "mask_path"])
targets = pd.read_parquet(inp.targets)
for backbone, path in zip(params.backbones, snakemake.output, strict=True):
    # Only the two shown models' files are read: every other prediction file is an input so that a
    # re-trained model re-runs the choice of the best one, not to be read here.
    shown = {best.get(backbone), REFERENCE}
    files = {}
    for file, entry in zip(inp.predictions, params.index, strict=True):
        if entry["backbone"] == backbone and entry["model"] in shown:
            files.setdefault(entry["model"], []).append(pd.read_parquet(file))
    predictions = {model: pd.concat(parts, ignore_index=True) for model, parts in files.items()}
    gallery = backbone_gallery(backbone, best.get(backbone), predictions, auc_summary, images, targets, settings)
    save_gallery(gallery, settings.thumbnail, path)
    log.info("%s: best model %s; wrote %s", backbone, best.get(backbone), path)
