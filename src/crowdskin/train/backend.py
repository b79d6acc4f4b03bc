"""Which Keras 3 backend a process trains with (`train.backend`: tensorflow, jax or torch).

Keras reads `KERAS_BACKEND` once, at its first import, so the backend is fixed per process: a job
selects it before anything imports keras, and a process that already runs another backend refuses
the job with a clear message instead of silently training on the wrong one. TensorFlow is the
design's stack and the only backend `requirements.lock` installs; `make install BACKEND=jax`
(or torch) adds another.
"""

from __future__ import annotations

import importlib.util
import os
import sys

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT = "tensorflow"
# The package each backend needs beyond Keras itself, and how to install it.
PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


class BackendError(RuntimeError):
    """The backend asked for cannot run in this process."""


def installed(name: str) -> bool:
    return importlib.util.find_spec(PACKAGES[name]) is not None


def active() -> str | None:
    """The backend of the keras already imported in this process, or None when keras is not."""
    if "keras" not in sys.modules:
        return None
    return sys.modules["keras"].backend.backend()


def select(name: str | None = None, *, threads: int | None = None, deterministic: bool = False,
           share_gpu: bool = False) -> str:
    """Make `name` the process's backend (before keras is imported); returns it.

    `threads` bounds JAX's CPU thread pool and `deterministic` picks XLA's deterministic GPU
    kernels: unlike TensorFlow's settings, both can only be set through XLA_FLAGS before jax starts.
    `share_gpu` (execution.train.jobs_per_gpu > 1): JAX allocates GPU memory as it needs it, since
    by default it takes 75 % of the GPU at start and leaves a second job none. TensorFlow's memory
    growth is set in crowdskin.train.runtime for every job; PyTorch allocates on demand anyway.
    """
    name = name or DEFAULT
    if name not in BACKENDS:
        raise BackendError(f"train.backend must be one of {', '.join(BACKENDS)}, not {name!r}")
    running = active()
    if running is not None and running != name:
        raise BackendError(f"this process already runs Keras on {running}; a job on {name} needs its own "
                           f"process (KERAS_BACKEND is read once, when keras is first imported)")
    if running is None:
        if not installed(name):
            raise BackendError(f"train.backend is {name} but {PACKAGES[name]} is not installed: "
                               f"`make install BACKEND={name}` adds it to .venv")
        os.environ["KERAS_BACKEND"] = name
        if name == "tensorflow":
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Also where keras and jax are imported already: a job forked from the warm worker, whose
    # server imported them but never started a device, still gets its own flags.
    if name == "jax" and not _jax_started():
        flags = os.environ.get("XLA_FLAGS", "")
        if threads is not None and "intra_op_parallelism_threads" not in flags:
            # Scheduled jobs share the machine: JAX would otherwise take every core for its CPU kernels.
            flags += (f" --xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}"
                      f" intra_op_parallelism_threads={threads}")
        if deterministic and "xla_gpu_deterministic_ops" not in flags:
            flags += " --xla_gpu_deterministic_ops=true"
        os.environ["XLA_FLAGS"] = flags.strip()
        if share_gpu:
            os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return name


def _jax_started() -> bool:
    """Whether JAX has started its devices in this process: XLA reads XLA_FLAGS then, once."""
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge
    except ImportError:  # a JAX without that module: assume started, and leave its flags alone
        return True
    started = getattr(xla_bridge, "backends_are_initialized", None)
    return True if started is None else bool(started())
