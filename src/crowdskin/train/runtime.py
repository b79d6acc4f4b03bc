"""TensorFlow process settings, applied once before any model is built."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    strategy: Any
    n_gpus: int
    jit_compile: bool
    mixed_precision: bool


def configure(
    *,
    threads: int = 1,
    mixed_precision: bool = False,
    xla: bool = False,
    deterministic: bool = False,
    seed: int = 0,
) -> Runtime:
    """Thread pools from the job's `threads`, GPU memory growth, precision, determinism, strategy.

    Must run before TensorFlow executes its first op (thread pools are fixed after that).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    # Scheduled jobs share the machine: more threads than the job was given only slows its neighbours.
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(threads, 2)))
    except RuntimeError:  # the runtime already runs (a second job in one process, e.g. tests)
        log.info("TensorFlow already initialised; keeping its thread pools")
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # Several jobs may share one GPU; without growth the first would take all memory.
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            log.info("GPU already initialised; memory growth unchanged")
    if mixed_precision:
        if not gpus:
            log.warning("mixed precision asked for on a CPU-only machine: float16 on CPU is slow")
        keras.mixed_precision.set_global_policy("mixed_float16")
    else:
        keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    log.info("TensorFlow: %d GPU(s), %d thread(s), mixed precision %s, XLA %s, deterministic %s",
             len(gpus), threads, mixed_precision, xla, deterministic)
    return Runtime(strategy=strategy, n_gpus=len(gpus), jit_compile=xla, mixed_precision=mixed_precision)
