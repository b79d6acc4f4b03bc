"""Snakemake adapter: images.parquet -> results/splits/folds.parquet (+ the skipped lesions)."""
import pandas as pd

from crowdskin.logs import to_rule_log
from crowdskin.train.splits import make_folds, trainable_lesions

log = to_rule_log(snakemake)
params = snakemake.params
images = pd.read_parquet(snakemake.input.images)
lesions, skipped = trainable_lesions(images)
folds = make_folds(lesions, scheme=params.scheme, n_folds=params.n_folds, seed=params.seed,
                   min_positives_per_fold=params.min_positives_per_fold)
folds.to_parquet(snakemake.output.folds, index=False)
skipped.to_csv(snakemake.output.skipped, index=False)
log.info("%d of %d lesions trainable; skipped by reason: %s", len(lesions), len(images),
         skipped["reason"].value_counts().to_dict())
log.info("scheme %s, %d folds, split hash %s; rows per fold and split:\n%s", params.scheme, params.n_folds,
         folds["split_hash"].iloc[0], folds.groupby(["fold", "split"]).size().unstack().to_string())
