# crowdskin run from a checkout (`snakemake`, `make run`, `dvc repro`): the checkout's default config,
# layered under any --configfile, then the workflow itself, workflow/Snakefile, which is also what a
# deployment declares as a module (README: "Deploying the workflow"). See docs/architecture.md.
import os


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "workflow/Snakefile"


# The workflow's `rule all` stays the default target: an included file's `default_target` does not
# carry over to the file including it (Snakemake's module loader sets it the same way for a module).
workflow.default_target = "all"
