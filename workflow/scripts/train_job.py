"""Snakemake adapter: one (task, backbone, fold) job. Logic: crowdskin.train.job / crowdskin.train.loop."""
import logging
import os
import sys

sm = snakemake  # noqa: F821
settings = sm.params.train
request = {
    "task": sm.wildcards.task, "backbone": sm.wildcards.backbone, "fold": int(sm.wildcards.fold),
    "settings": settings, "seed": sm.params.seed, "threads": sm.threads, "out_dir": sm.params.out_dir,
    "log": str(sm.log[0]), "save_model": sm.params.save_model, "inputs": {name: str(path) for name, path in sm.input.items()},
}
# Under Slurm each job is its own allocation: a worker forked on one node would outlive the job.
if settings["warm_worker"] and "SLURM_JOB_ID" not in os.environ:
    # Only the standard library and the worker module here: that is what saves the imports.
    from crowdskin.train.worker import WorkerUnavailable, submit

    try:
        sys.exit(submit(request, server_log=sm.params.worker_log))
    except WorkerUnavailable as error:
        logging.basicConfig(filename=sm.log[0], level=logging.INFO)
        logging.warning("%s; running the job in this process instead", error)

from crowdskin.train.job import log_to, run_request  # noqa: E402

log_to(request["log"])
run_request(request)
