"""Snakemake adapter: results/truth/, what the workflow recovered against the synthetic truth
(crowdskin.truth). One script for the rules of truth.smk, chosen by the rule's name."""
import pandas as pd

from crowdskin import tables, truth
from crowdskin.crowd.io import read_annotations
from crowdskin.crowd.labels import worker_reliability
from crowdskin.logs import to_rule_log
from crowdskin.tables import write_csv_atomic

log = to_rule_log(snakemake)
inp, out = snakemake.input, snakemake.output


def truth_data():
    images = pd.read_csv(inp.truth_images, dtype={"image_id": str})
    workers = pd.read_csv(inp.truth_workers, dtype={"worker_id": str})
    kept = pd.read_parquet(inp.kept)
    targets = tables.read_table(inp.targets, tables.TARGETS)
    per_worker = truth.reliability_per_worker(pd.read_csv(inp.worker_reliability, dtype={"worker_id": str}), kept,
                                              images, workers)
    # The same model on every answer, spammers' included: can it tell them apart without the funnel?
    answers = pd.read_parquet(inp.assignments)
    per_worker_all = truth.reliability_per_worker(worker_reliability(answers), answers, images, workers)
    return {
        "automated": truth.automated_vs_truth(pd.read_parquet(inp.automated), images),
        "annotations": truth.annotations_vs_truth(read_annotations(inp.annotations, inp.automated_annotations), images),
        "consensus": truth.consensus_vs_truth(targets, images),
        "ambiguity": truth.spread_vs_ambiguity(targets, images),
        "mturk_funnel": truth.funnel_vs_spammers(pd.read_parquet(inp.decisions), workers),
        "dawid_skene": pd.concat([truth.reliability_vs_truth(per_worker, "kept"),
                                  truth.reliability_vs_truth(per_worker_all, "all")], ignore_index=True),
        "dawid_skene_workers": pd.concat([per_worker.assign(answers="kept"), per_worker_all.assign(answers="all")],
                                         ignore_index=True),
    }


def truth_auc():
    return {"auc": truth.training_auc(pd.read_csv(inp.auc_summary))}


def truth_spread_heads():
    images = pd.read_csv(inp.truth_images, dtype={"image_id": str})
    parts = [pd.read_parquet(path).assign(**entry)
             for path, entry in zip(inp.predictions, snakemake.params.index, strict=True)]
    predictions = (pd.concat(parts, ignore_index=True) if parts else
                   pd.DataFrame(columns=["model", "source", "backbone", "split", "image_id"]))
    return {"spread_heads": truth.spread_heads_vs_ambiguity(predictions, images)}


def truth_explain():
    tables = {"relevance": truth.relevance_in_lesion(pd.read_csv(inp.relevance))}
    if hasattr(inp, "shortcut"):
        lesions = pd.concat([pd.read_parquet(path) for path in inp.lesions], ignore_index=True)
        tables["shortcut"] = truth.shortcut_vs_reference(pd.read_csv(inp.shortcut), lesions, "baseline",
                                                         snakemake.params.reference)
    return tables


def truth_annotators():
    images = pd.read_csv(inp.truth_images, dtype={"image_id": str})
    workers = pd.read_csv(inp.truth_workers, dtype={"worker_id": str})
    parts = [pd.read_parquet(path).assign(**entry)
             for path, entry in zip(inp.learned, snakemake.params.index, strict=True)]
    learned = pd.concat(parts, ignore_index=True)
    per_worker = truth.learned_workers(learned, pd.read_parquet(inp.votes), images, workers)
    annotators = truth.annotators_vs_truth(per_worker, learned, pd.read_parquet(inp.annotations),
                                           pd.read_csv(inp.truth_students))
    return {"annotators": annotators, "workers": per_worker}


def truth_summary():
    return {"summary": truth.summarise({name: pd.read_csv(path) for name, path in inp.items()})}


results = {"truth_data": truth_data, "truth_auc": truth_auc, "truth_spread_heads": truth_spread_heads,
           "truth_explain": truth_explain, "truth_annotators": truth_annotators,
           "truth_summary": truth_summary}[snakemake.rule]()
for name, table in results.items():
    write_csv_atomic(table, out[name])
    log.info("%s:\n%s", name, table.to_string(index=False))
