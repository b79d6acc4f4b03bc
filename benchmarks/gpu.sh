#!/usr/bin/env bash
# Every GPU measurement in one call (crowdskin.train.bench_gpu): installs the wheels of .whl/ (made
# here by `make gpu-wheels`) into a scratch folder, then runs the cut-down paper grid, jobs sharing
# the GPU and the step profile. JSON results go to $OUT (the device tool's folder), else to
# results/bench_gpu/. Arguments pass through, e.g. `--tiny` (CPU, about two minutes) or
# `--compile-cache DIR --steps-per-execution 4`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# Only where the jobs' packages are missing (the GPU machine): a development .venv has them all.
if ! "$PYTHON" -c "import keras, jsonschema" 2>/dev/null; then
    compgen -G ".whl/*.whl" >/dev/null || { echo "keras or jsonschema missing and no .whl/: run \`make gpu-wheels\` and carry .whl" >&2; exit 1; }
    # --no-deps: the machine's own jax, numpy, pandas and CUDA libraries stay; only what it lacks comes.
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/bench_gpu_site .whl/*.whl
    export PYTHONPATH=/tmp/bench_gpu_site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-}
export PYTHONUNBUFFERED=1
export BENCH_GPU_COMMAND="benchmarks/gpu.sh $*"
exec "$PYTHON" -m crowdskin.train.bench_gpu "$@"
