# Ingestion: the raw files (real or synthetic, same formats) into the canonical tables.


rule ingest:
    input:
        markers=fetched_markers(),
        study=INGEST_ROOT_FILES,
    output:
        images=f"{DATA}/images.parquet",
        annotations=f"{DATA}/annotations.parquet",
        mturk=f"{DATA}/mturk_assignments.parquet",
        quarantine=f"{DATA}/quarantine.parquet",
        counts=f"{DATA}/ingest_counts.csv",
    log:
        f"{LOGS}/ingest.log",
    params:
        ingest=INGEST_SETTINGS,
        url_lists=list(URL_LISTS),
        raw=lambda wildcards, input: raw_root(input.markers[0]) if input.markers else RAW,
    script:
        script_path("ingest.py")


ALL_TARGETS += rules.ingest.output
