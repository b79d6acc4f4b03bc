"""Several training steps per compiled call on JAX (the backend config/paper.yaml trains on): a
job's history, predictions and saved weights equal those at one step per call, and a job
interrupted after an epoch and run again equals an uninterrupted one, with augmentation in the
input pipeline (CacheBatches replays the skipped batches' random draws) or inside the model (its
layers' seed states kept in the checkpoint). TensorFlow's side is in test_train_tf.py.

JAX is fixed per process, so the jobs run in a subprocess (about a minute): `make test-faults` runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from crowdskin.train.backend import installed
from test_train_tf import STEPS_CASE, _assert_same_job, _request
from workflow_runner import fault_test

pytestmark = [pytest.mark.slow, fault_test, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

# In JAX's process: each request in turn; one whose `interrupt` is set stops after its first
# epoch's checkpoint (as a kill would) and is run again.
IN_JAX = r"""
import json, logging, sys
from pathlib import Path
logging.basicConfig(level=logging.INFO)
from crowdskin.train import loop
from crowdskin.train.job import run_request

class Interrupted(Exception):
    pass

backup_callback = loop._backup_callback

def interrupted_after_first_epoch(keras, backup_dir, epochs):
    callback = backup_callback(keras, backup_dir, epochs)
    on_epoch_end = callback.on_epoch_end
    def end_then_stop(epoch, logs=None):
        on_epoch_end(epoch, logs)
        if epoch == 0:
            raise Interrupted
    callback.on_epoch_end = end_then_stop
    return callback

for path in sys.argv[1:]:
    request = json.loads(Path(path).read_text())
    if request.pop("interrupt", False):
        loop._backup_callback = interrupted_after_first_epoch
        try:
            run_request(request)
            raise SystemExit(f"{path}: not interrupted")
        except Interrupted:
            pass
        loop._backup_callback = backup_callback
    run_request(request)
"""


@pytest.mark.skipif(not installed("jax"), reason="jax is not installed (`make install BACKEND=jax`)")
@pytest.mark.parametrize("placement", ["pipeline", "model"])
def test_several_steps_per_call_and_a_resume_on_jax_equal_one_step_per_call(tmp_path, placement):
    case = {**STEPS_CASE, "backend": "jax", "augment": {"placement": placement}}
    paths = []
    for name, steps, interrupt in (("one", 1, False), ("four", 4, False), ("resumed", 3, True)):
        (tmp_path / name).mkdir()
        request = _request(tmp_path / name, **case)
        request["execution"] = {"steps_per_execution": steps}
        request["interrupt"] = interrupt
        request["log"] = None
        (tmp_path / name / "request.json").write_text(json.dumps(request))
        paths.append(str(tmp_path / name / "request.json"))
    done = subprocess.run([sys.executable, "-c", IN_JAX, *paths], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "steps_per_execution 4 runs as 3" in done.stderr
    assert "resuming from checkpoint: 1 epoch(s) done" in done.stderr
    _assert_same_job(tmp_path / "one" / "job", tmp_path / "four" / "job")
    _assert_same_job(tmp_path / "one" / "job", tmp_path / "resumed" / "job")
