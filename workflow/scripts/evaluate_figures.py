"""Snakemake adapter: the evaluation figures (crowdskin.evaluate.figures)."""
import pandas as pd

from crowdskin.evaluate import figures
from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)
inp, out = snakemake.input, snakemake.output


def read(path):
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


histories = pd.concat(
    [pd.read_csv(path).assign(**entry) for path, entry in zip(inp.histories, snakemake.params.history_index,
                                                              strict=True)],
    ignore_index=True,
)
figures.roc_curves(read(inp.roc), read(inp.auc_summary), out.roc)
figures.forest_plot(read(inp.comparisons), out.forest, snakemake.params.controls)
figures.fold_auc_dots(read(inp.auc_folds), out.folds)
figures.training_curves(histories, out.training)
figures.funnel_chart(read(inp.funnel), out.funnel)
log.info("wrote %d figures", len(out))
