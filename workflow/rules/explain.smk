# The explanation stage: where each trained model looks (Grad-CAM of the diagnosis output on its
# test lesions) and how much of it falls on the lesion (relevance mass), per (task, backbone) after
# its folds are trained; it reads the saved models and never re-trains. crowdskin.explain.
# explain_gallery shows a few test lesions' maps per backbone for the report (explain.gallery).


rule explain:
    input:
        unpack(explain_inputs),
    output:
        relevance=f"{EXPLAIN}/{{task}}/{{backbone}}/relevance.parquet",
        maps=f"{EXPLAIN}/{{task}}/{{backbone}}/maps.npz",
    log:
        f"{LOGS}/explain/{{task}}/{{backbone}}.log",
    wildcard_constraints:
        task=tasks_pattern(TRAIN_SAVED),
        backbone="|".join(TRAIN_BACKBONES),
    threads: TRAIN_EXECUTION["threads"]
    resources:
        mem_mb=TRAIN_EXECUTION["mem_mb"],
        runtime=TRAIN_EXECUTION["runtime"],
        warm_worker=int(TRAIN_EXECUTION["warm_worker"]),
    params:
        model=lambda wildcards: wildcards.task,
        layer=lambda wildcards: BACKBONES[wildcards.backbone].gradcam_layer,
        size=lambda wildcards: TRAIN_SIZES[wildcards.backbone],
        backend=TRAIN_SETTINGS["backend"],
        worker_log=f"{LOGS}/train_worker.log",
    script:
        script_path("explain_job.py")


if CLEAN_REFERENCE_EXPLAINED:

    use rule explain as explain_clean_reference with:
        input:
            unpack(clean_reference_explain_inputs),
        output:
            relevance=f"{EXPLAIN}/{CLEAN_REFERENCE_MODEL}/{{backbone}}/relevance.parquet",
            maps=f"{EXPLAIN}/{CLEAN_REFERENCE_MODEL}/{{backbone}}/maps.npz",
        log:
            f"{LOGS}/explain/{CLEAN_REFERENCE_MODEL}/{{backbone}}.log",
        wildcard_constraints:
            backbone="|".join(TRAIN_BACKBONES),
        params:
            model=CLEAN_REFERENCE_MODEL,
            layer=lambda wildcards: BACKBONES[wildcards.backbone].gradcam_layer,
            size=lambda wildcards: TRAIN_SIZES[wildcards.backbone],
            backend=TRAIN_SETTINGS["backend"],
            worker_log=f"{LOGS}/train_worker.log",


rule explain_scores:
    input:
        relevance=EXPLAIN_FILES + CLEAN_REFERENCE_EXPLAINED,
    output:
        **(
            {
                "shortcut": f"{SCORES}/shortcut.csv",
                "shortcut_comparisons": f"{SCORES}/shortcut_comparisons.csv",
            }
            if SHORTCUT
            else {}
        ),
        summary=f"{SCORES}/relevance.csv",
        comparisons=f"{SCORES}/relevance_comparisons.csv",
        figure=f"{SCORES}/figures/relevance.png",
    log:
        f"{LOGS}/explain_scores.log",
    params:
        bootstrap=EVALUATE["bootstrap"],
        seed=config["seed"],
        ensembles=SHORTCUT_ENSEMBLES if SHORTCUT else {},
    script:
        script_path("explain_scores.py")


if EXPLAINED:

    ALL_TARGETS += list(rules.explain_scores.output)


# The explanation gallery: a few PNGs of thumbnails and maps already computed, a few seconds.
localrules:
    explain_gallery,


rule explain_gallery:
    input:
        **EXPLAIN_GALLERY_FILES,
        auc_summary=rules.scores.output.auc_summary,
        images=rules.ingest.output.images,
        # The shown lesions' image and mask files are known only once the lesions are drawn; the
        # fetch markers stand for every file the images table names, as for the lesion gallery.
        raw=fetched_markers(),
    output:
        [explanation_figure(backbone) for backbone in TRAIN_BACKBONES],
    log:
        f"{LOGS}/explain_gallery.log",
    params:
        gallery=config["explain"]["gallery"],
        seed=config["seed"],
        backbones=TRAIN_BACKBONES,
        candidates=EXPLAIN_GALLERY,
    script:
        script_path("explain_gallery.py")


if EXPLAINED:

    ALL_TARGETS += [*rules.explain_gallery.output]
