"""Snakemake adapter: Grad-CAM and relevance mass of one (task, backbone)'s fold models
(crowdskin.explain.job), in the training stage's warm worker where there is one."""
import logging
import os
import sys

from crowdskin.interrupt import job_ends_quietly_on_ctrl_c

sm = snakemake
request = {
    "entry": "crowdskin.explain.job", "task": sm.params.model, "backbone": sm.wildcards.backbone,
    "layer": sm.params.layer, "size": sm.params.size, "backend": sm.params.backend, "threads": sm.threads,
    "log": str(sm.log[0]), "out": {"relevance": sm.output.relevance, "maps": sm.output.maps},
    "inputs": {name: [str(p) for p in value] if name in ("models", "predictions") else str(value)
               for name, value in sm.input.items()},
}
with job_ends_quietly_on_ctrl_c(request["log"], f"explanation job {request['task']}/{request['backbone']}",
                                on_rerun="runs it again"):
    # As a training job: under Slurm each job is its own process.
    if sm.resources.get("warm_worker") and "SLURM_JOB_ID" not in os.environ:
        from crowdskin.train.worker import WorkerUnavailableError, submit

        try:
            sys.exit(submit(request, server_log=sm.params.worker_log))
        except WorkerUnavailableError as error:
            logging.basicConfig(filename=sm.log[0], level=logging.INFO)
            logging.warning("%s; explaining in this process instead", error)

    from crowdskin.explain.job import run_request  # after the warm worker's early exit
    from crowdskin.train.job import log_to

    log_to(request["log"])
    run_request(request)
