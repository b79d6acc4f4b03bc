"""Snakemake adapter: every explained model's relevance -> results/scores/relevance*.csv, the
figure, and with the shortcut trap results/scores/shortcut*.csv (crowdskin.explain.scores)."""
import pandas as pd

from crowdskin.evaluate.figures import save_figure
from crowdskin.explain.figures import relevance_figure
from crowdskin.explain.scores import (
    Settings,
    compare_drops,
    compare_to_baseline,
    ensemble_scores,
    shortcut_scores,
    summarise_relevance,
)
from crowdskin.logs import to_rule_log
from crowdskin.tables import write_csv_atomic

log = to_rule_log(snakemake)
params, out = snakemake.params, snakemake.output
bootstrap = params.bootstrap
settings = Settings(resamples=bootstrap["resamples"], confidence=bootstrap["confidence"],
                    seed=params.seed if bootstrap["seed"] is None else bootstrap["seed"])
relevance = pd.concat([pd.read_parquet(path) for path in snakemake.input.relevance], ignore_index=True)
summary = summarise_relevance(relevance, settings)
write_csv_atomic(summary, out.summary)
write_csv_atomic(compare_to_baseline(relevance, settings), out.comparisons)
save_figure(relevance_figure(summary), out.figure)
if "shortcut" in out.keys():  # noqa: SIM118 - `in` on a Snakemake Namedlist tests its values
    scored = pd.concat([relevance, ensemble_scores(relevance, params.ensembles)], ignore_index=True)
    write_csv_atomic(shortcut_scores(scored, settings), out.shortcut)
    write_csv_atomic(compare_drops(scored, settings), out.shortcut_comparisons)
log.info("%d models explained; relevance mass in the lesion: %s", len(summary),
         summary[["model", "relevance_lesion"]].to_string(index=False))
