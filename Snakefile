# crowdskin: one DAG from raw data to ensemble scores. Rules per stage live in workflow/rules/,
# the logic in the package src/crowdskin/. See docs/architecture.md.
import os

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/acquire.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/automated.smk"
include: "workflow/rules/crowd.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/truth.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        lambda wildcards: ALL_TARGETS,
