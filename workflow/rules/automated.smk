# The automated stage (issue 3): asymmetry, border and colour scores per image, in shards.
# Logic: src/crowdskin/automated/. A checkpoint splits the sorted image ids into shards of
# `automated.shard_size`; each shard's job depends only on its own masks and images (its rows travel
# as params), so a changed mask re-runs only its shard.
ANNOTATIONS_DIR = "results/annotations"
AUTOMATED_SHARDS = f"{ANNOTATIONS_DIR}/automated_shards"


checkpoint automated_plan:
    input:
        images=f"{DATA}/images.parquet",
    output:
        plan=f"{AUTOMATED_SHARDS}/plan.parquet",
    params:
        shard_size=config["automated"]["shard_size"],
    log:
        f"{LOGS}/automated/plan.log",
    script:
        script_path("automated_plan.py")


def _automated_plan():
    import pandas as pd

    return pd.read_parquet(checkpoints.automated_plan.get().output.plan)


def automated_shard_rows(wildcards):
    plan = _automated_plan()
    rows = plan[plan["shard"] == int(wildcards.shard)]
    return rows[["image_id", "dataset", "image_path", "mask_path"]].to_dict("records")


def automated_shard_files(wildcards):
    rows = automated_shard_rows(wildcards)
    # only files that exist: a missing one becomes that row's status, not a missing-input error
    paths = {r[k] for r in rows for k in ("image_path", "mask_path") if isinstance(r[k], str) and r[k]}
    return sorted(p for p in paths if Path(p).is_file())


def automated_shard_outputs(wildcards):
    shards = sorted(set(_automated_plan()["shard"]))
    return [f"{AUTOMATED_SHARDS}/shard_{k:04d}.parquet" for k in shards]


rule automated_shard:
    input:
        automated_shard_files,
    output:
        f"{AUTOMATED_SHARDS}/shard_{{shard}}.parquet",
    wildcard_constraints:
        shard=r"\d{4}",
    params:
        rows=automated_shard_rows,
        settings=config["automated"],
    threads: config["automated"]["threads"]
    resources:
        mem_mb=lambda wildcards, threads: 1024 * threads + 512,
    log:
        f"{LOGS}/automated/shard_{{shard}}.log",
    benchmark:
        f"results/benchmarks/automated/shard_{{shard}}.tsv"
    script:
        script_path("automated_shard.py")


rule automated_collect:
    input:
        automated_shard_outputs,
    output:
        wide=f"{ANNOTATIONS_DIR}/automated.parquet",
        long=f"{ANNOTATIONS_DIR}/automated_annotations.parquet",
    log:
        f"{LOGS}/automated/collect.log",
    script:
        script_path("automated_collect.py")


ALL_TARGETS += [rules.automated_collect.output.wide, rules.automated_collect.output.long]
