"""One tiny training job on a GPU with mixed precision (bfloat16) and XLA/jit. Runs only where
`nvidia-smi` lists a GPU and a Keras backend with GPU support is installed; skipped elsewhere (CI
has no GPU). The backend: $CROWDSKIN_GPU_BACKEND, else the first of jax, torch, tensorflow installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from crowdskin.train.backend import installed
from test_train_backends import N_IMAGES, _request

pytestmark = [pytest.mark.slow]


def _gpus() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return [line for line in listed.stdout.splitlines() if line.startswith("GPU ")] if listed.returncode == 0 else []


def _backend() -> str | None:
    wanted = os.environ.get("CROWDSKIN_GPU_BACKEND")
    if wanted:
        return wanted if installed(wanted) else None
    return next((name for name in ("jax", "torch", "tensorflow") if installed(name)), None)


@pytest.mark.skipif(not _gpus(), reason="no NVIDIA GPU visible (nvidia-smi lists none)")
def test_tiny_job_trains_on_the_gpu_with_mixed_precision_and_jit(tmp_path):
    backend = _backend()
    if backend is None:
        pytest.skip("no Keras backend installed to train on the GPU with")
    path = _request(tmp_path / "run", backend)
    request = json.loads(path.read_text())
    request["settings"].update(mixed_precision="bfloat16", xla=True, run_eagerly=False)
    path.write_text(json.dumps(request))
    done = subprocess.run([sys.executable, "-m", "crowdskin.train.job", str(path)], capture_output=True, text=True,
                          timeout=600)
    log = (tmp_path / "run" / "job.log").read_text()
    assert done.returncode == 0, log[-3000:]
    assert "1 GPU(s)" in log and "mixed_bfloat16" in log and "jit True" in log, log[-3000:]
    predictions = pd.read_parquet(tmp_path / "run" / "job" / "predictions.parquet")
    assert len(predictions) == N_IMAGES and predictions["score"].between(0, 1).all()
