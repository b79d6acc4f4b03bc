"""The multi-task loss and the tf.data pipeline, pinned to numpy hand computations on tiny inputs.

Unavailable annotations may carry NaN targets; the loss must ignore them (0 x NaN is NaN), and the
pipeline must hand the loss its annotation columns as `[target, available]`.
"""

from __future__ import annotations

import numpy as np
import pytest

# Not marked slow: a few seconds, nearly all of it importing TensorFlow.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras 3 on numpy 2: np.array(copy=False)

SIZE = 2  # images are SIZE x SIZE x 3
IMAGES = np.arange(5 * SIZE * SIZE * 3, dtype=np.uint8).reshape(5, SIZE, SIZE, 3)
ROWS = np.array([3, 0, 4, 1])  # cache rows of the four examples, deliberately out of order
LABELS = np.array([1.0, 0.0, 0.0, 1.0], np.float32)
TARGETS = np.array([0.7, np.nan, 0.0, np.nan], np.float32)  # a real 0 annotation, and two missing ones
AVAILABLE = np.array([True, False, True, False])
CLASS_WEIGHT = {0: 0.75, 1: 1.5}


def _hand_loss(scores: np.ndarray, target_predictions: np.ndarray) -> float:
    """0.5 x MSE over available annotations + 0.5 x class-weighted binary cross-entropy, in numpy."""
    scores = np.clip(scores.reshape(-1).astype(np.float64), 1e-7, 1 - 1e-7)
    errors = (TARGETS[AVAILABLE] - target_predictions.reshape(-1)[AVAILABLE]) ** 2
    mse = errors.sum() / max(AVAILABLE.sum(), 1)
    bce = -(LABELS * np.log(scores) + (1 - LABELS) * np.log(1 - scores))
    weights = np.where(LABELS == 1, CLASS_WEIGHT[1], CLASS_WEIGHT[0])
    return float(0.5 * mse + 0.5 * (weights * bce).mean())


def _tiny_model():
    import keras

    from crowdskin.train.models import compile_model

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, {"label": keras.layers.Dense(1, activation="sigmoid", name="label")(x),
                                 "target_asymmetry": keras.layers.Dense(1, name="target_asymmetry")(x)})
    compile_model(model, optimizer=keras.optimizers.SGD(0.1),
                  loss_weights={"label": 0.5, "target": 0.5}, run_eagerly=True)
    return model


def test_masked_mse_ignores_nan_targets_of_unavailable_rows():
    """Catches: masking only by multiplying with the flag (0 x NaN = NaN), or reading the columns swapped."""
    from crowdskin.train.models import MaskedMSE

    pair = np.stack([TARGETS, AVAILABLE.astype(np.float32)], axis=1)
    prediction = np.array([[0.2], [5.0], [0.5], [-3.0]], np.float32)
    expected = ((0.7 - 0.2) ** 2 + (0.0 - 0.5) ** 2) / 2
    assert float(MaskedMSE()(pair, prediction)) == pytest.approx(expected, rel=1e-6)


def test_pipeline_hands_the_loss_target_then_available():
    """Catches: make_dataset stacking the annotation pair as [available, target] (or rows out of order)."""
    from crowdskin.train.pipeline import make_dataset

    heads = {"asymmetry": (TARGETS, AVAILABLE)}
    batches = list(make_dataset(IMAGES, ROWS, LABELS, heads, batch_size=3, training=False, class_weight=CLASS_WEIGHT))
    x = np.concatenate([b[0].numpy() for b in batches])
    label = np.concatenate([b[1]["label"].numpy() for b in batches])
    pair = np.concatenate([b[1]["target_asymmetry"].numpy() for b in batches])
    assert [len(b[0]) for b in batches] == [3, 1]
    np.testing.assert_array_equal(x, IMAGES[ROWS].astype(np.float32))
    # The label's pair is [label, class weight]: the weights travel with the data, not in the loss.
    np.testing.assert_array_equal(label, np.stack([LABELS, np.where(LABELS == 1, 1.5, 0.75)], axis=1))
    assert pair.shape == (4, 2)
    np.testing.assert_array_equal(pair[:, 0], TARGETS)  # NaN where unavailable, compared as equal
    np.testing.assert_array_equal(pair[:, 1], AVAILABLE.astype(np.float32))


def test_training_step_with_nan_targets_has_the_hand_computed_finite_loss():
    """Catches: a NaN target of an unavailable row reaching the loss (NaN loss, NaN weights after the step)."""
    from crowdskin.train.pipeline import make_dataset

    model = _tiny_model()
    before = model.predict(IMAGES[ROWS].astype(np.float32), verbose=0)
    expected = _hand_loss(before["label"], before["target_asymmetry"])
    data = make_dataset(IMAGES, ROWS, LABELS, {"asymmetry": (TARGETS, AVAILABLE)}, batch_size=4, training=False,
                        class_weight=CLASS_WEIGHT)
    x, y = next(iter(data))
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)
    assert all(np.isfinite(w).all() for w in model.get_weights())
