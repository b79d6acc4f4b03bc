"""Per-backend benchmarks: a job's fixed costs on CPU, and training throughput on a GPU.

A Keras backend is fixed per process, so each command measures one backend (`--backend`), chosen
before keras is imported. Prints one JSON line per measurement; docs/benchmarks.md quotes them.

    python -m crowdskin.train.bench_backends costs --backend jax            # CPU, default config
    python -m crowdskin.train.bench_backends steps --backend jax            # CPU, steps per call
    python -m crowdskin.train.bench_backends fit --backend jax --backbones resnet50 \\
        --precision float32 bfloat16 --batch 20 max                         # GPU, config/paper.yaml

`fit` trains through the real input pipeline: a memory-mapped uint8 cache on disk -> `CacheBatches`
(worker threads) -> model with the augmentation layers inside (paper.yaml's placement) -> Keras'
fit. Images/s is timed over whole epochs after a warm-up epoch (compilation), median of
`--epochs` timed epochs; an epoch's end waits for the device, so asynchronous dispatch cannot
flatter the figure. FLOPs per training image: `train_flops_per_image`, from the model's layers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# Dense peak of the GPUs measured here (NVIDIA datasheets, SXM5, without sparsity), TFLOP/s.
DENSE_PEAK_TFLOPS = {
    "H100": {"float32": 66.9, "tf32": 494.7, "bfloat16": 989.4, "float16": 989.4},
    "H200": {"float32": 66.9, "tf32": 494.7, "bfloat16": 989.4, "float16": 989.4},
}


def _select(backend: str, threads: int | None = None) -> None:
    from crowdskin.train.backend import select

    select(backend, threads=threads)


def _device_name(backend: str) -> str:
    if backend == "jax":
        import jax

        return jax.devices()[0].device_kind
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "cpu"


def _peak(device: str, precision: str) -> dict[str, float | None]:
    """The dense peaks a figure is divided by: the precision's own, and TF32 for float32 (what
    matrix units run float32 convolutions in by default on JAX and TensorFlow)."""
    for name, peaks in DENSE_PEAK_TFLOPS.items():
        if name in device:
            if precision == "float32":
                return {"float32": peaks["float32"], "tf32": peaks["tf32"]}
            return {precision: peaks[precision]}
    return {}


def _paper_train_settings() -> dict[str, Any]:
    from crowdskin.config import load_config, packaged_config

    return load_config(packaged_config("config.yaml"), packaged_config("paper.yaml"))["train"]


def train_flops_per_image(model: Any) -> float:
    """FLOPs of one image's training step, counted from the model's own layers: 2 x multiply-adds
    of every convolution and dense layer forward, x 3 for forward + backward (the gradients of
    inputs and of weights each cost one forward). Normalisation, activations and pooling are left
    out (under 1 % of ResNet50's), so the fraction of peak errs low.

    XLA's cost analysis is no alternative on a GPU: it counts cuDNN convolutions as 0 FLOPs.
    """
    import keras

    def layers(layer: Any) -> Any:
        for child in getattr(layer, "layers", []):
            yield child
            yield from layers(child)

    forward = 0.0
    for layer in layers(model):
        if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D):
            height, width = layer.output.shape[1:3]
            forward += 2.0 * height * width * math.prod(layer.kernel.shape) / layer.groups
        elif isinstance(layer, keras.layers.Dense):
            forward += 2.0 * math.prod(layer.kernel.shape)
    return 3 * forward


def make_cache(path: Path, n: int, size: int, seed: int = 0) -> np.ndarray:
    """A memory-mapped uint8 cache like results/train/cache/ (random pixels), re-opened read-only."""
    cache = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    rng = np.random.default_rng(seed)
    for start in range(0, n, 64):
        cache[start:start + 64] = rng.integers(0, 255, cache[start:start + 64].shape, dtype=np.uint8)
    cache.flush()
    del cache
    return np.load(path, mmap_mode="r")


def loader_rate(cache: np.ndarray, *, batch: int, workers: int, batches: int = 60) -> float:
    """Images/s out of CacheBatches alone with `workers` threads (as the enqueuer runs it)."""
    from concurrent.futures import ThreadPoolExecutor

    from crowdskin.train.pipeline import CacheBatches

    n = len(cache)
    loader = CacheBatches(cache, np.arange(n), np.zeros(n), {"target": (np.zeros(n), np.ones(n))},
                          batch_size=batch, training=True, workers=workers)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(loader.__getitem__, range(workers * 2)))  # warm: page cache, thread start
        started = time.perf_counter()
        list(pool.map(loader.__getitem__, range(batches)))
    return batch * batches / (time.perf_counter() - started)


class _EpochTimer:
    def __init__(self) -> None:
        import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.seconds: list[float] = []

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                # Steps are dispatched asynchronously: reading a weight that the last step wrote
                # waits for the device to finish the epoch.
                keras.ops.convert_to_numpy(self.model.trainable_variables[-1])
                self.seconds.append(time.perf_counter() - self.started)

        self.callback = Timer()


def _device_memory_peak(backend: str) -> float | None:
    """Peak bytes the framework allocated on the GPU in this process, GiB."""
    try:
        if backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            return stats.get("peak_bytes_in_use", 0) / 2**30 or None
        if backend == "torch":
            import torch

            return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - a missing statistic leaves the column empty
        return None
    return None


def bench_fit(backbone: str, *, backend: str, size: int, batch: int, precision: str, jit: bool,
              cache: np.ndarray, workers: int, steps: int, epochs: int, augment: bool = True) -> dict[str, Any]:
    """Training images/s through cache -> CacheBatches -> model (augmentation inside) -> fit."""
    import keras

    from crowdskin.train import models
    from crowdskin.train.pipeline import CacheBatches
    from crowdskin.train.runtime import precision_policy

    train = _paper_train_settings()
    keras.mixed_precision.set_global_policy(precision_policy({"float32": False, "float16": True}.get(precision,
                                                                                                     precision)))
    keras.utils.set_random_seed(0)
    layers = models.augmentation(train["augment"]) if augment else None
    model = models.build_model(backbone, size, heads=("target",), preprocess=train["preprocess"], augment=layers)
    models.compile_model(model, optimizer=models.make_optimizer(train["optimizer"], train["learning_rate"]),
                         loss_weights=train["loss_weights"], jit_compile=jit)
    n = len(cache)
    rng = np.random.default_rng(0)
    loader = CacheBatches(cache, np.arange(n), rng.integers(0, 2, n), {"target": (rng.normal(size=n),
                                                                                 rng.integers(0, 2, n))},
                          batch_size=batch, training=True, workers=workers)
    timer = _EpochTimer().callback
    started = time.perf_counter()
    model.fit(loader, epochs=epochs + 1, steps_per_epoch=steps, callbacks=[timer], shuffle=False, verbose=0)
    total = time.perf_counter() - started
    per_epoch = statistics.median(timer.seconds[1:])
    images_per_s = batch * steps / per_epoch
    result: dict[str, Any] = {
        "what": "fit", "backend": backend, "backbone": backbone, "size": size, "batch": batch,
        "precision": precision, "jit": jit, "augment_in_model": augment, "workers": workers,
        "images_per_s": round(images_per_s, 1), "epoch_seconds": [round(s, 3) for s in timer.seconds],
        "first_epoch_seconds": round(timer.seconds[0], 1), "total_seconds": round(total, 1),
        "memory_peak_gib": _device_memory_peak(backend),
    }
    train_flops = train_flops_per_image(model)
    if train_flops:
        device = _device_name(backend)
        result["device"] = device
        result["train_gflop_per_image"] = round(train_flops / 1e9, 2)
        result["achieved_tflops"] = round(train_flops * images_per_s / 1e12, 1)
        result["fraction_of_dense_peak"] = {name: round(train_flops * images_per_s / (peak * 1e12), 4)
                                            for name, peak in _peak(device, precision).items()}
    return result


def largest_batch(peak_gib_at: float, batch: int, total_gib: float, margin: float = 0.85) -> int:
    """The largest batch whose memory, extrapolated linearly from one measured batch, fits in
    `margin` of the GPU (weights and optimizer state are inside the measured peak, so this errs small)."""
    per_image = peak_gib_at / batch
    return max(batch, int(total_gib * margin / per_image) // 8 * 8)


def fixed_costs(backend: str, *, repeat_predict: int = 1) -> dict[str, Any]:
    """One default-config job's fixed costs on CPU: import, model build, first step, predict, and
    the whole fit of the default job (smallcnn, 32 px, 20 epochs of 10 steps of 32) on random pixels."""
    started = time.perf_counter()
    _select(backend, threads=1)
    from crowdskin.config import load_config, packaged_config
    from crowdskin.train.runtime import configure

    train_config = load_config(packaged_config("config.yaml"))["train"]
    runtime = configure(backend=backend, threads=1, deterministic=train_config["deterministic"], seed=0)
    import keras

    from crowdskin.train import models
    from crowdskin.train.pipeline import batches
    imported = time.perf_counter()

    size, batch = train_config["input_size"], train_config["batch_size"]
    model = models.build_model("smallcnn", size, preprocess=train_config["preprocess"])
    models.compile_model(model, optimizer=models.make_optimizer(train_config["optimizer"],
                                                                train_config["learning_rate"]),
                         loss_weights=None, jit_compile=runtime.jit_compile,
                         run_eagerly=train_config["run_eagerly"])
    built = time.perf_counter()
    n = 500  # the default synthetic set's lesions
    rng = np.random.default_rng(0)
    cache = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, n)
    train_data = batches(cache, np.arange(320), labels[:320], batch_size=batch, training=True)
    val_data = batches(cache, np.arange(320, 400), labels[320:400], batch_size=batch, training=False)
    model.fit(train_data, epochs=1, steps_per_epoch=1, verbose=0)
    first_step = time.perf_counter()
    model.fit(train_data, epochs=train_config["epochs"], steps_per_epoch=train_config["steps_per_epoch"],
              validation_data=val_data, validation_steps=train_config["validation_steps"], verbose=0)
    fitted = time.perf_counter()
    predict_seconds = []
    for _ in range(repeat_predict):
        t = time.perf_counter()
        model.predict(batches(cache, np.arange(n), labels, batch_size=max(batch, 32), training=False,
                              images_only=True), verbose=0)
        predict_seconds.append(time.perf_counter() - t)
    return {"what": "fixed_costs", "backend": backend, "keras": keras.__version__,
            "import_s": round(imported - started, 2), "build_s": round(built - imported, 2),
            "first_step_s": round(first_step - built, 2),
            "fit_s": round(fitted - first_step, 2),
            "predict_s": round(predict_seconds[0], 2),
            "total_s": round(time.perf_counter() - started, 2)}


def steps_per_call_timings(backend: str, *, batches_sizes: list[int], values: list[int], repeats: int,
                           threads: int = 1) -> Any:
    """The default config's job (smallcnn, its epochs, steps, validation and settings) at each
    number of training steps per call, at each batch size; `repeats` rounds, the values interleaved
    within each round. Yields one result per fit: the whole fit and the median of its epochs after
    the first (which compiles)."""
    _select(backend, threads=threads)
    from crowdskin.config import load_config, packaged_config
    from crowdskin.train.loop import steps_per_call
    from crowdskin.train.runtime import configure

    train_config = load_config(packaged_config("config.yaml"))["train"]
    runtime = configure(backend=backend, threads=threads, deterministic=train_config["deterministic"], seed=0)
    import keras

    from crowdskin.train import models
    from crowdskin.train.pipeline import batches

    size, steps = train_config["input_size"], train_config["steps_per_epoch"]
    n = 500  # the default synthetic set's lesions
    rng = np.random.default_rng(0)
    cache = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, n)
    augment = models.augmentation(train_config["augment"]) if train_config["augment"]["enabled"] else None
    for round_ in range(repeats):
        for batch in batches_sizes:
            # Each round starts at another value: drift of a shared machine falls on all of them.
            for requested in values[round_ % len(values):] + values[:round_ % len(values)]:
                ran, _ = steps_per_call(requested, steps, backend)
                keras.utils.set_random_seed(0)
                model = models.build_model("smallcnn", size, preprocess=train_config["preprocess"])
                models.compile_model(model, optimizer=models.make_optimizer(train_config["optimizer"],
                                                                            train_config["learning_rate"]),
                                     loss_weights=None,
                                     jit_compile=runtime.jit_compile, run_eagerly=train_config["run_eagerly"],
                                     steps_per_execution=ran)
                train_data = batches(cache, np.arange(320), labels[:320], batch_size=batch, training=True,
                                     augment=augment, deterministic=train_config["deterministic"])
                validation = min(train_config["validation_steps"], math.ceil(80 / batch))
                validated = np.arange(320, 320 + validation * batch)  # as a job: only what validation reads
                val_data = batches(cache, validated, labels[validated], batch_size=batch, training=False)
                timer = _EpochTimer().callback
                started = time.perf_counter()
                model.fit(train_data, epochs=train_config["epochs"], steps_per_epoch=steps, validation_data=val_data,
                          validation_steps=validation, callbacks=[timer], shuffle=False, verbose=0)
                fit_seconds = time.perf_counter() - started
                steady = statistics.median(timer.seconds[1:])
                yield {"what": "steps_per_call", "backend": backend, "keras": keras.__version__, "round": round_,
                       "batch": batch, "steps_per_epoch": steps, "epochs": train_config["epochs"],
                       "requested": requested, "ran": ran, "fit_s": round(fit_seconds, 3),
                       "first_epoch_s": round(timer.seconds[0], 3), "steady_epoch_s": round(steady, 4),
                       "steady_images_per_s": round(batch * steps / steady, 1)}
                keras.backend.clear_session()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crowdskin.train.bench_backends",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    costs = sub.add_parser("costs", help="a default-config job's fixed costs on CPU")
    costs.add_argument("--backend", default="tensorflow")
    steps = sub.add_parser("steps", help="the default job at several training steps per compiled call (CPU)")
    steps.add_argument("--backend", default="tensorflow")
    steps.add_argument("--batch", type=int, nargs="+", default=[32, 20], help="batch sizes (32: the default's)")
    steps.add_argument("--values", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="steps per call asked for")
    steps.add_argument("--repeats", type=int, default=3)
    fit = sub.add_parser("fit", help="training images/s through the real input pipeline (GPU)")
    fit.add_argument("--backend", default="jax")
    fit.add_argument("--backbones", nargs="+", default=["resnet50", "vgg16", "inceptionv3"])
    fit.add_argument("--size", type=int, default=384)
    fit.add_argument("--batch", nargs="+", default=["20", "max"], help="batch sizes; max = largest that fits")
    fit.add_argument("--precision", nargs="+", default=["float32", "bfloat16"],
                     choices=["float32", "bfloat16", "float16"])
    fit.add_argument("--no-jit", action="store_true", help="torch: eager (jax always compiles)")
    fit.add_argument("--steps", type=int, default=20)
    fit.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up epoch")
    fit.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    fit.add_argument("--images", type=int, default=1024, help="images in the benchmark's cache")
    fit.add_argument("--loader-only", action="store_true")
    fit.add_argument("--no-augment", action="store_true", help="leave the augmentation layers out of the model")
    args = parser.parse_args(argv)

    if args.command == "costs":
        print(json.dumps(fixed_costs(args.backend)), flush=True)
        return 0
    if args.command == "steps":
        for result in steps_per_call_timings(args.backend, batches_sizes=args.batch, values=args.values,
                                             repeats=args.repeats):
            print(json.dumps(result), flush=True)
        return 0
    if args.backend == "jax":
        # Measured memory per job needs JAX to allocate what it uses, as jobs sharing a GPU do.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    _select(args.backend, threads=args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        cache = make_cache(Path(tmp) / "cache.npy", args.images, args.size)
        for batch in [int(b) for b in args.batch if b != "max"][:1] or [20]:
            for workers in sorted({1, args.workers}):
                print(json.dumps({"what": "loader", "size": args.size, "batch": batch, "workers": workers,
                                  "images_per_s": round(loader_rate(cache, batch=batch, workers=workers), 1)}),
                      flush=True)
        if args.loader_only:
            return 0
        for backbone in args.backbones:
            for precision in args.precision:
                measured_at: dict[str, Any] | None = None
                for batch_arg in args.batch:
                    if batch_arg == "max":
                        if not measured_at or not measured_at.get("memory_peak_gib"):
                            continue
                        batch = largest_batch(measured_at["memory_peak_gib"], measured_at["batch"],
                                              _total_memory_gib(args.backend))
                    else:
                        batch = int(batch_arg)
                    try:
                        result = bench_fit(backbone, backend=args.backend, size=args.size, batch=batch,
                                           precision=precision, jit=not args.no_jit, cache=cache,
                                           workers=args.workers, steps=args.steps, epochs=args.epochs,
                                           augment=not args.no_augment)
                    except Exception as error:  # noqa: BLE001 - out of memory at a guessed batch: say so, go on
                        result = {"what": "fit", "backbone": backbone, "batch": batch, "precision": precision,
                                  "error": f"{type(error).__name__}: {str(error)[:300]}"}
                    result["batch_arg"] = batch_arg
                    print(json.dumps(result), flush=True)
                    if batch_arg != "max":
                        measured_at = result
                    _free(args.backend)
    return 0


def _total_memory_gib(backend: str) -> float:
    if backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats.get("bytes_limit", 0) / 2**30
    import torch

    return torch.cuda.get_device_properties(0).total_memory / 2**30


def _free(backend: str) -> None:
    """Drop the last model's buffers, so the next measurement starts from an empty GPU. JAX keeps
    its peak-memory statistic for the process: measure one (backbone, precision) per process."""
    import gc

    import keras

    keras.backend.clear_session()
    gc.collect()
    if backend == "torch":
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


if __name__ == "__main__":
    sys.exit(main())
