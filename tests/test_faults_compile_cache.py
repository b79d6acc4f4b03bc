"""The compilation cache in the warm worker: the server imports JAX and Keras before any job sets a
cache folder, so each forked job must turn the cache on itself, before it compiles."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from crowdskin.train.backend import installed
from crowdskin.train.worker import submit
from test_train_backends import _request
from workflow_runner import fault_test

pytestmark = [
    pytest.mark.slow,
    fault_test,  # a warm worker and two JAX jobs, about 30 s
    pytest.mark.skipif(not installed("jax"), reason="JAX is not installed: `make install BACKEND=jax`"),
]


def test_jobs_forked_by_the_warm_worker_share_the_compile_cache(tmp_path):
    """Catches a cache set up only at the server's start (where no job's folder is known yet) or
    not at all in forked jobs: the second job of the same program compiles again."""
    request = json.loads(_request(tmp_path / "inputs", "jax").read_text())
    socket, server_log = tmp_path / "worker.sock", tmp_path / "worker.log"
    metrics = []
    for name in ("first", "second"):
        job = {**request, "out_dir": str(tmp_path / name), "log": str(tmp_path / f"{name}.log"),
               "execution": {"warm_worker": True, "compile_cache": str(tmp_path / "cache")}}
        code = submit(job, path=socket, server_log=server_log, idle_timeout=0.3)
        assert code == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
        metrics.append(json.loads((tmp_path / name / "metrics.json").read_text())["compile"]["jax"])
    servers = re.findall(r"serving on .* \(pid (\d+)\)", server_log.read_text())
    assert len(servers) == 1  # both jobs were forked from one server
    first, second = metrics
    assert first["cache_writes"] > 0 and second["cache_writes"] == 0
    assert second["cache_hits"] == second["programs"] > 0
    deadline = time.monotonic() + 10
    while Path(socket).exists() and time.monotonic() < deadline:  # the idle server removes its socket and exits
        time.sleep(0.1)
