"""Every MTurk vote with its worker and their reliability: crowdskin.crowd.labels.annotator_votes."""
import pandas as pd

from crowdskin import tables
from crowdskin.crowd.labels import annotator_votes
from crowdskin.logs import to_rule_log

log = to_rule_log(snakemake)
votes = annotator_votes(pd.read_parquet(snakemake.input.decisions), method=snakemake.params.method,
                        n_iter=snakemake.params.n_iter)
tables.write_parquet_atomic(votes, snakemake.output.votes)
log.info("%d votes of %d workers (%d kept by the funnel)", len(votes), votes["worker_id"].nunique(),
         int(votes["kept"].sum()))
