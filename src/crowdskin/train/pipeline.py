"""Input: cached uint8 images -> shuffled batches -> (augmentation) -> prefetch.

Images come from the memory-mapped cache (already at input size), so an epoch never decodes a
JPEG; loading a batch is one fancy-indexing copy. Augmentation runs either here, on CPU workers,
or inside the model on the accelerator (`train.augment.placement`).

Two loaders with the same batches' contents: `CacheBatches`, a `keras.utils.PyDataset` that every
Keras backend reads, and `make_dataset`, `tf.data` with parallel map and prefetch, kept on the
TensorFlow backend for augmentation in the pipeline only (`batches` picks). `CacheBatches` hands
out uint8 pixels: the model's float32 input converts them on the accelerator, a quarter of the
bytes through the host.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import keras
import numpy as np

from crowdskin.train.models import head_output, label_pairs


def _pair(target: np.ndarray, available: np.ndarray) -> np.ndarray:
    """(n, 2) float32 rows of [target, available]: what the masked MSE reads; an annotator head's
    (n, A) targets give (n, 2A) rows of [A answers, A availabilities]."""
    target, available = np.asarray(target, np.float32), np.asarray(available, np.float32)
    if target.ndim == 2:
        return np.concatenate([target, available], axis=1)
    return np.stack([target, available], axis=1)


def batches(
    images: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    heads: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    *,
    batch_size: int,
    training: bool,
    seed: int = 0,
    augment: Any = None,
    deterministic: bool = False,
    images_only: bool = False,
    workers: int = 1,
    start: int = 0,
    class_weight: Mapping[int, float] | None = None,
) -> Any:
    """CacheBatches, except for augmentation in the pipeline on TensorFlow: there tf.data runs the
    augmentation layers in parallel map calls, where CacheBatches calls them from one worker.
    Without augmentation tf.data is not faster (docs/benchmarks.md, "Keras backends").
    A training stream begins at its batch `start` (a resumed job's next), as if the batches
    before had been drawn: augmentation's random draws included."""
    if keras.backend.backend() == "tensorflow" and training and augment is not None:
        data = make_dataset(images, rows, labels, heads, batch_size=batch_size, training=training,
                            seed=seed, augment=augment, deterministic=deterministic, start=start,
                            class_weight=class_weight)
        return data.map(lambda x, y: x) if images_only else data
    return CacheBatches(images, rows, labels, heads, batch_size=batch_size, training=training,
                        seed=seed, augment=augment, images_only=images_only, workers=workers, start=start,
                        class_weight=class_weight)


class CacheBatches(keras.utils.PyDataset):
    """Batches of (image uint8, {"label": (B, 2) = label, class weight[, "target_<head>": (B, 2) =
    target, available per head]}).

    Training: an endless stream of full batches (one shape, so a compiled step is never
    recompiled), each pass over the rows in a fresh order drawn from (seed, pass), so batch
    `i` is the same whichever worker thread loads it. Evaluation: one pass, in row order.
    """

    def __init__(self, images: np.ndarray, rows: np.ndarray, labels: np.ndarray,
                 heads: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None, *,
                 batch_size: int, training: bool, seed: int = 0, augment: Any = None,
                 images_only: bool = False, workers: int = 1, start: int = 0,
                 class_weight: Mapping[int, float] | None = None) -> None:
        # Augmentation layers keep random state: one worker calls them, in batch order.
        workers = 1 if (training and augment is not None) else max(1, workers)
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max(10, 2 * workers))
        self.images = images
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = label_pairs(labels, dict(class_weight) if class_weight else None)
        self.pairs = {head_output(head): _pair(target, available)
                      for head, (target, available) in (heads or {}).items()}
        self.batch_size = int(batch_size)
        self.training = training
        self.seed = int(seed)
        self.augment = augment if training else None
        self.images_only = images_only
        self.start = int(start) if training else 0
        if self.augment is not None:
            # The augmentation's random state advances one draw per layer and call, whatever the
            # batch's size: the skipped batches' draws on one blank image each.
            blank = np.zeros((1, *images.shape[1:]), np.float32)
            for _ in range(self.start):
                self.augment(blank, training=True)

    @property
    def num_batches(self) -> int | None:
        return None if self.training else math.ceil(len(self.rows) / self.batch_size)

    def __len__(self) -> int:
        return self.num_batches or math.ceil(len(self.rows) / self.batch_size)

    @lru_cache(maxsize=4)  # noqa: B019 - a few passes' orders per loader, freed with it
    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))

    def positions(self, index: int) -> np.ndarray:
        n = len(self.rows)
        if not self.training:
            return np.arange(index * self.batch_size, min(n, (index + 1) * self.batch_size))
        index += self.start
        stream = np.arange(index * self.batch_size, (index + 1) * self.batch_size)
        return np.concatenate([self._order(int(p))[stream[stream // n == p] % n] for p in np.unique(stream // n)])

    def __getitem__(self, index: int) -> Any:
        positions = self.positions(index)
        rows = self.rows[positions]
        # Sorted reads are sequential on the memory map; the batch order is restored after.
        order = np.argsort(rows, kind="stable")
        x = np.empty((len(rows), *self.images.shape[1:]), self.images.dtype)
        x[order] = self.images[rows[order]]
        if self.augment is not None:
            x = keras.ops.convert_to_numpy(self.augment(x.astype(np.float32), training=True))
        if self.images_only:
            return (x,)
        y = {"label": self.labels[positions]}
        for name, pair in self.pairs.items():
            y[name] = pair[positions]
        return x, y


def make_dataset(
    images: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    heads: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    *,
    batch_size: int,
    training: bool,
    seed: int = 0,
    augment: Any = None,
    deterministic: bool = False,
    start: int = 0,
    class_weight: Mapping[int, float] | None = None,
) -> Any:
    """tf.data batches of (image float32 0-255, {"label": (B, 2)[, "target_<head>": (B, 2) per head]}).

    Training datasets shuffle and repeat forever (fit's steps_per_epoch bounds an epoch), from
    their batch `start`; others pass once over the rows in order.
    """
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    rows = np.asarray(rows, dtype=np.int64)
    size = images.shape[1]
    label_tensor = tf.constant(label_pairs(labels, dict(class_weight) if class_weight else None))
    head_tensors = {head_output(head): tf.constant(_pair(target, available))
                    for head, (target, available) in (heads or {}).items()}

    def load(positions: np.ndarray) -> np.ndarray:
        # Sorted reads are sequential on the memory map; the batch order is restored after.
        order = np.argsort(rows[positions])
        batch = np.empty((len(positions), size, size, 3), np.float32)
        batch[order] = images[rows[positions][order]]
        return batch

    def to_example(positions: Any) -> tuple[Any, dict[str, Any]]:
        batch = tf.numpy_function(load, [positions], tf.float32, stateful=False)
        batch.set_shape((None, size, size, 3))
        y = {"label": tf.gather(label_tensor, positions)}
        for name, tensor in head_tensors.items():
            y[name] = tf.gather(tensor, positions)
        return batch, y

    dataset = tf.data.Dataset.from_tensor_slices(np.arange(len(rows), dtype=np.int64))
    if training:
        dataset = dataset.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True).repeat()
    # Evaluation order must match the rows (predictions are joined by position).
    deterministic = deterministic or not training
    dataset = dataset.batch(batch_size).map(to_example, num_parallel_calls=autotune, deterministic=deterministic)
    if training and augment is not None:
        dataset = dataset.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=autotune,
                              deterministic=deterministic)
    if start:
        # After the augmentation: the skipped batches advance its random state as they did before.
        dataset = dataset.skip(start)
    return dataset.prefetch(autotune)
