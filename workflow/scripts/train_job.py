"""Snakemake adapter: one (task, backbone, fold) job. Logic: crowdskin.train.job / crowdskin.train.loop."""
import logging
import os
import sys

from crowdskin.interrupt import job_ends_quietly_on_ctrl_c

sm = snakemake
request = {
    "task": sm.wildcards.task, "backbone": sm.wildcards.backbone, "fold": int(sm.wildcards.fold),
    "settings": sm.params.settings, "seed": sm.params.seed, "split_scheme": sm.params.split_scheme,
    "threads": sm.threads, "out_dir": sm.params.out_dir,
    "log": str(sm.log[0]), "save_model": sm.params.save_model, "check": sm.params.check,
    "inputs": {name: str(path) for name, path in sm.input.items()},
    "execution": {"weights_dir": sm.resources.get("weights_dir"), "warm_worker": bool(sm.resources.get("warm_worker")),
                  "jobs_per_gpu": int(sm.resources.get("jobs_per_gpu", 1)),
                  "steps_per_execution": int(sm.resources.get("steps_per_execution", 1)),
                  "compile_cache": sm.resources.get("compile_cache")},
}
with job_ends_quietly_on_ctrl_c(request["log"], f"training job {request['task']}/{request['backbone']}/fold"
                                                f"{request['fold']}"):
    # Under Slurm each job is its own allocation: a worker forked on one node would outlive the job.
    if request["execution"]["warm_worker"] and "SLURM_JOB_ID" not in os.environ:
        # Only the standard library and the worker module here: that is what saves the imports.
        from crowdskin.train.worker import WorkerUnavailableError, submit

        try:
            sys.exit(submit(request, server_log=sm.params.worker_log))
        except WorkerUnavailableError as error:
            logging.basicConfig(filename=sm.log[0], level=logging.INFO)
            logging.warning("%s; running the job in this process instead", error)
            request["execution"]["warm_worker"] = False  # what MLflow records is how the job really ran

    from crowdskin.train.job import log_to, run_request  # after the warm worker's early exit

    log_to(request["log"])
    run_request(request)
