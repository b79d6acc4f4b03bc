# The automated stage: asymmetry, border and color scores per image, in shards.
# Logic: src/crowdskin/automated/. A checkpoint splits the sorted ids of the lesions with a mask
# into shards of `automated.shard_size`; each shard's job depends only on its own masks and images
# (its rows travel as params), so a changed mask re-runs only its shard. Lesions without a mask have
# nothing to score: no shard holds them, and the collect job writes their `failed` rows.


checkpoint automated_plan:
    input:
        images=f"{DATA}/images.parquet",
    output:
        plan=f"{AUTOMATED_SHARDS}/plan.parquet",
    log:
        f"{LOGS}/automated/plan.log",
    params:
        shard_size=config["automated"]["shard_size"],
    script:
        script_path("automated_plan.py")


rule automated_shard:
    input:
        automated_shard_files,
    output:
        f"{AUTOMATED_SHARDS}/shard_{{shard}}.parquet",
    log:
        f"{LOGS}/automated/shard_{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/automated/shard_{{shard}}.tsv"
    wildcard_constraints:
        shard=r"\d{4}",
    threads: EXECUTION["automated"]["threads"]
    resources:
        mem_mb=lambda wildcards, threads: 512 * threads + 1024,
    params:
        rows=automated_shard_rows,
        settings=AUTOMATED_SETTINGS,
    script:
        script_path("automated_shard.py")


rule automated_collect:
    input:
        shards=automated_shard_outputs,
        plan=rules.automated_plan.output.plan,
    output:
        wide=f"{ANNOTATIONS_DIR}/automated.parquet",
        long=f"{ANNOTATIONS_DIR}/automated_annotations.parquet",
    log:
        f"{LOGS}/automated/collect.log",
    params:
        settings=AUTOMATED_SETTINGS,
    script:
        script_path("automated_collect.py")


ALL_TARGETS += [rules.automated_collect.output.wide, rules.automated_collect.output.long]
