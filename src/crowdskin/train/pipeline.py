"""tf.data input: cached uint8 images -> shuffled batches -> (augmentation) -> prefetch.

Images come from the memory-mapped cache (already at input size), so an epoch never decodes a
JPEG; loading a batch is one fancy-indexing copy. Augmentation runs either here, in parallel
`map` calls on CPU workers, or inside the model on the accelerator (`train.augment.placement`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def make_dataset(
    images: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    targets: np.ndarray | None = None,
    available: np.ndarray | None = None,
    *,
    batch_size: int,
    training: bool,
    seed: int = 0,
    augment: Any = None,
    deterministic: bool = False,
) -> tf.data.Dataset:
    """Batches of (image float32 0-255, {"label": (B, 1)[, "target": (B, 2) = target, available]}).

    Training datasets shuffle and repeat forever (fit's steps_per_epoch bounds an epoch); others
    pass once over the rows in order.
    """
    rows = np.asarray(rows, dtype=np.int64)
    size = images.shape[1]
    label_tensor = tf.constant(np.asarray(labels, np.float32).reshape(-1, 1))
    target_tensor = None
    if targets is not None:
        pair = np.stack([np.asarray(targets, np.float32), np.asarray(available, np.float32)], axis=1)
        target_tensor = tf.constant(pair)

    def load(positions: np.ndarray) -> np.ndarray:
        # Sorted reads are sequential on the memory map; the batch order is restored after.
        order = np.argsort(rows[positions])
        batch = np.empty((len(positions), size, size, 3), np.float32)
        batch[order] = images[rows[positions][order]]
        return batch

    def to_example(positions: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        batch = tf.numpy_function(load, [positions], tf.float32, stateful=False)
        batch.set_shape((None, size, size, 3))
        y = {"label": tf.gather(label_tensor, positions)}
        if target_tensor is not None:
            y["target"] = tf.gather(target_tensor, positions)
        return batch, y

    dataset = tf.data.Dataset.from_tensor_slices(np.arange(len(rows), dtype=np.int64))
    if training:
        dataset = dataset.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True).repeat()
    # Evaluation order must match the rows (predictions are joined by position).
    deterministic = deterministic or not training
    dataset = dataset.batch(batch_size).map(to_example, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if training and augment is not None:
        dataset = dataset.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=AUTOTUNE,
                              deterministic=deterministic)
    return dataset.prefetch(AUTOTUNE)
