"""Throughput of the input pipeline alone and of the training step alone (images/s).

`crowdskin bench train` runs `run` (medians; CPU-sized training steps). On a GPU machine:

`python -m crowdskin.train.bench --size 384 --backbones vgg16 resnet50 inceptionv3 [--mixed-precision] [--xla]`
prints one JSON line per measurement. On a GPU machine, compare `pipeline` with `train_step`: the
pipeline must deliver more images/s than the step consumes, or the accelerator starves.
These are TensorFlow's figures; `crowdskin.train.bench_backends` measures per Keras backend,
through the real input pipeline and against the GPU's peak.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np


def _random_cache(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


def bench_pipeline(*, size: int = 384, batch: int = 20, steps: int = 30, augment: bool = True,
                   n_images: int = 200, warmup: int = 3) -> dict[str, Any]:
    """Images/s out of make_dataset (cache -> batches -> augmentation -> prefetch), no model."""
    from crowdskin.config import section
    from crowdskin.train import models
    from crowdskin.train.pipeline import make_dataset

    cache = _random_cache(n_images, size)
    layers = models.augmentation(section("train")["augment"]) if augment else None
    data = make_dataset(cache, np.arange(n_images), np.zeros(n_images), batch_size=batch, training=True,
                        augment=layers)
    iterator = iter(data)
    for _ in range(warmup):
        next(iterator)
    started = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    seconds = time.perf_counter() - started
    return {"what": "pipeline", "size": size, "batch": batch, "augment": augment,
            "images_per_s": round(batch * steps / seconds, 1)}


def bench_train_step(backbone: str, *, size: int = 384, batch: int = 20, steps: int = 10, multitask: bool = True,
                     mixed_precision: bool = False, xla: bool = False, warmup: int = 2) -> dict[str, Any]:
    """Images/s of model.train_on_batch on in-memory batches (no input pipeline), after warm-up."""
    import keras

    from crowdskin.train import models

    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")
    model = models.build_model(backbone, size, heads=("target",) if multitask else ())
    models.compile_model(model, optimizer=models.make_optimizer("rmsprop", 2e-5),
                         loss_weights={"label": 0.5, "target": 0.5}, jit_compile=xla)
    x = _random_cache(batch, size).astype(np.float32)
    y = {"label": models.label_pairs(np.zeros(batch))}
    if multitask:
        y[models.head_output("target")] = np.ones((batch, 2), np.float32)
    for _ in range(warmup):
        model.train_on_batch(x, y)
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    seconds = time.perf_counter() - started
    import tensorflow as tf

    return {"what": "train_step", "backbone": backbone, "size": size, "batch": batch,
            "mixed_precision": mixed_precision, "xla": xla, "gpus": len(tf.config.list_physical_devices("GPU")),
            "images_per_s": round(batch * steps / seconds, 2)}


def bench_cache(data_dir: Path, *, size: int = 384, threads: int = 2) -> dict[str, Any]:
    """Images/s of building the cache from the real CROWDSIM thumbnails (decode + resize)."""
    import pandas as pd

    from crowdskin.train.cache import build_image_cache

    paths = sorted((Path(data_dir) / "crowdsim" / "thumbnails").glob("*.jpg"))[:200]
    images = pd.DataFrame({"image_id": [p.stem for p in paths], "image_path": [str(p) for p in paths]})
    started = time.perf_counter()
    array, index = build_image_cache(images, size, threads=threads)
    seconds = time.perf_counter() - started
    return {"what": "cache", "size": size, "images": len(array), "unreadable": int((index["row"] < 0).sum()),
            "threads": threads, "images_per_s": round(len(array) / seconds, 1)}


def _median_of(repeat: int, measure: Any) -> dict[str, Any]:
    runs = [measure() for _ in range(max(1, repeat))]
    result = dict(runs[0])
    result["images_per_s"] = statistics.median(r["images_per_s"] for r in runs)
    result["runs"] = [r["images_per_s"] for r in runs]
    return result


def run(data_dir: Path, repeat: int) -> dict[str, Any]:
    """Entry point of `crowdskin bench train`: medians of `repeat` runs, CPU-sized training steps."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result: dict[str, Any] = {}
    if (Path(data_dir) / "crowdsim" / "thumbnails").is_dir():
        result["cache_384px"] = _median_of(repeat, lambda: bench_cache(data_dir))
    result["pipeline_384px"] = _median_of(repeat, lambda: bench_pipeline(size=384, batch=20, steps=20, augment=False))
    result["pipeline_384px_augmented"] = _median_of(repeat, lambda: bench_pipeline(size=384, batch=20, steps=20))
    for backbone, size in (("vgg16", 64), ("resnet50", 64), ("inceptionv3", 75)):
        result[f"train_step_{backbone}_{size}px"] = _median_of(
            repeat, partial(bench_train_step, backbone, size=size, batch=16, steps=5))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crowdskin.train.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--backbones", nargs="*", default=["vgg16", "resnet50", "inceptionv3"])
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--xla", action="store_true")
    parser.add_argument("--no-pipeline", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not args.no_pipeline:
        for augment in (False, True):
            print(json.dumps(bench_pipeline(size=args.size, batch=args.batch, steps=max(args.steps, 20),
                                            augment=augment)), flush=True)
    for backbone in args.backbones:
        print(json.dumps(bench_train_step(backbone, size=args.size, batch=args.batch, steps=args.steps,
                                          mixed_precision=args.mixed_precision, xla=args.xla)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
