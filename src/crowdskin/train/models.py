"""Keras 3 models of the study: backbone + Flatten + Dense(256) + label head (+ annotation heads).

Backbones are the entries of `crowdskin.train.backbones.BACKBONES`: the study's VGG16, ResNet50
and InceptionV3, DenseNet121 and EfficientNetV2-B0 (keras.applications), and `smallcnn`, three
convolution blocks that learn the synthetic default's diagnosis in seconds on a laptop's CPU,
where the ImageNet-sized backbones need minutes per job to learn anything. It is for the embedded
default and tests; the study's configs never use it, and it has no pretrained weights.

The multi-task loss is 0.5 x masked MSE + 0.5 x binary cross-entropy; a model with several heads
shares the 0.5 among them. Each annotation target travels as two columns `[target, available]`:
the mask is the availability flag, so a real annotation of 0 counts (the study's code treated 0 as
missing), and the MSE is averaged over the available annotations of the batch, 0 when there are none.
The label travels the same way, as `[label, weight]` with the row's class weight (`label_pairs`).

A kind with an annotator head (crowdskin.train.annotators) adds the output `target_annotators`:
each annotator's predicted answer, from the diagnosis through a confusion matrix per annotator or
from a shared score through a scale and bias per annotator; its loss is masked where an annotator
did not answer, and a label that is NaN (a crowd image the kind learns through the head) is left
out of the label's loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from crowdskin.train.annotators import (
    AnnotatorAffine,
    MaskedAnnotatorCrossentropy,
    MaskedAnnotatorMSE,
    WorkerConfusion,
)
from crowdskin.train.backbones import BACKBONES

# The annotator head's name (its output is `head_output(ANNOTATOR_HEAD)`, its data a (n, 2A) pair).
ANNOTATOR_HEAD = "annotators"


def small_cnn(include_top: bool = False, weights: str | None = None,
              input_shape: tuple[int, int, int] = (32, 32, 3)) -> keras.Model:
    """Three blocks of 3x3 convolution (16, 32, 64 filters) + ReLU + 2x2 max pooling; the
    keras.applications signature, so `build_model` treats it as any other base."""
    if include_top or weights is not None:
        raise ValueError("smallcnn has no classification top and no pretrained weights (train.weights: none)")
    inputs = keras.Input(input_shape)
    x = inputs
    for block, filters in enumerate((16, 32, 64), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{block}_conv")(x)
        x = keras.layers.MaxPooling2D(name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name="smallcnn")


def scale_to_unit(images: Any) -> Any:
    """smallcnn's preprocessing: it has no pretrained weights, so 0-1 is all it needs."""
    return images / 255.0


def imagenet_standardize(images: Any) -> Any:
    """x / 255, then ImageNet's per-channel mean and sd: what EfficientNetV2's B variants do inside
    the model with include_preprocessing=True (keras.applications' "torch" mode)."""
    return keras.applications.imagenet_utils.preprocess_input(images, mode="torch")


@keras.saving.register_keras_serializable(package="crowdskin")
class MaskedMSE(keras.losses.Loss):
    """Mean squared error over the annotations whose availability flag is set."""

    def __init__(self, name: str = "masked_mse", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        target = ops.cast(y_true[:, 0], "float32")
        available = ops.cast(y_true[:, 1], "float32")
        prediction = ops.cast(ops.reshape(y_pred, (-1,)), "float32")
        # An unavailable row's target may be NaN, and 0 x NaN is NaN: blank it, not just weight it 0.
        target = ops.where(available > 0, target, ops.zeros_like(target))
        squared = available * ops.square(target - prediction)
        # max(count, 1): with no annotation in the batch the sum is 0, and so is the loss.
        return ops.sum(squared) / ops.maximum(ops.sum(available), 1.0)


def label_pairs(labels: Any, class_weight: dict[int, float] | None = None) -> np.ndarray:
    """(n, 2) float32 rows of [label, weight]: what the label's loss reads. The weight is the row's
    class weight, interpolated for a soft label and 0 for a NaN label (one the kind does not learn
    from). The class weights travel as data, not as constants of the loss, because each fold has
    its own: as constants they made every fold's job compile its own training program, where as
    data every job of a (backbone, size, batch) runs one program from the compilation cache."""
    labels = np.asarray(labels, np.float32).reshape(-1)
    weights = class_weight or {0: 1.0, 1: 1.0}
    learned = ~np.isnan(labels)
    known = np.where(learned, labels, np.float32(0))
    # float32, in the order the loss computed it in the graph before: the same weights to the bit.
    weight = known * np.float32(weights[1]) + (np.float32(1) - known) * np.float32(weights[0])
    return np.stack([labels, np.where(learned, weight, np.float32(0))], axis=1).astype(np.float32)


@keras.saving.register_keras_serializable(package="crowdskin")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy of [label, weight] rows (`label_pairs`): each row weighted by its class
    weight, the arithmetic of Keras' `class_weight` (which Keras 3 refuses for models with several
    outputs). A NaN label is one the kind does not learn from: it adds nothing."""

    def __init__(self, name: str = "weighted_bce", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, "float32")
        label, weight = y_true[:, 0:1], y_true[:, 1]
        y_pred = ops.cast(ops.reshape(y_pred, (-1, 1)), "float32")
        learned = ops.logical_not(ops.isnan(label))
        # 0 x NaN is NaN: the unlearned label is blanked, not just weighted 0.
        label = ops.where(learned, label, ops.zeros_like(label))
        bce = keras.losses.binary_crossentropy(label, y_pred)
        return weight * ops.cast(learned[:, 0], "float32") * bce


@keras.saving.register_keras_serializable(package="crowdskin")
class LabelAUC(keras.metrics.AUC):
    """ROC AUC of the label column of [label, weight] rows; the weight is the loss's, not the metric's."""

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        return super().update_state(y_true[:, 0:1], y_pred, sample_weight=sample_weight)


def _magnitude(factor: Any) -> Any:
    """f from a symmetric range (-f, f), as RandomShear saves its factors; anything else as it is."""
    if isinstance(factor, (list, tuple)) and len(factor) == 2 and float(factor[0]) == -float(factor[1]):
        return abs(float(factor[1]))
    return factor


@keras.saving.register_keras_serializable(package="crowdskin")
class SymmetricShear(keras.layers.RandomShear):
    """keras.layers.RandomShear that loads again from its saved config. Keras 3.15 saves each
    factor as its range (-f, f) and then refuses the range's negative end when it reads it, so no
    model with shear inside (the paper config's augmentation placement) could be loaded again:
    not to fine-tune, explain or resume from. This one saves f (and reads the range too). Models
    saved before with Keras' own layer stay unreadable; their jobs re-run with this code anyway."""

    def __init__(self, x_factor: Any = 0.0, y_factor: Any = 0.0, **kwargs: Any) -> None:
        super().__init__(x_factor=_magnitude(x_factor), y_factor=_magnitude(y_factor), **kwargs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "x_factor": _magnitude(self.x_factor),
                "y_factor": _magnitude(self.y_factor)}


def load_saved_model(path: Path | str) -> keras.Model:
    """A model.keras of this package for inference or fine-tuning (no optimizer, not compiled);
    its layers and losses are registered by importing this module."""
    return keras.models.load_model(path, compile=False)


@keras.saving.register_keras_serializable(package="crowdskin")
class ChannelShift(keras.layers.Layer):
    """ImageDataGenerator's channel_shift_range: one uniform offset per image added to all
    channels, clipped to [0, 255]. Keras 3 has no such layer."""

    def __init__(self, intensity: float = 20.0, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.intensity = float(intensity)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images: Any, training: bool = True) -> Any:
        if not training or self.intensity == 0:
            return images
        shift = keras.random.uniform((ops.shape(images)[0], 1, 1, 1), -self.intensity, self.intensity,
                                     seed=self.seed_generator)
        return ops.clip(images + ops.cast(shift, images.dtype), 0.0, 255.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "intensity": self.intensity, "seed": self.seed}


@keras.saving.register_keras_serializable(package="crowdskin")
class BackbonePreprocess(keras.layers.Layer):
    """The backbone's own `preprocess_input`, as a layer so that model.keras takes raw 0-255 pixels."""

    def __init__(self, backbone: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backbone = backbone

    def call(self, images: Any) -> Any:
        return BACKBONES[self.backbone].preprocess(images)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "backbone": self.backbone}


def augmentation(settings: dict[str, Any], seed: int = 0) -> keras.Sequential:
    """The study's ImageDataGenerator settings as Keras 3 preprocessing layers (active in training only)."""
    layers: list[keras.layers.Layer] = []
    if settings["rotation_degrees"]:
        # RandomRotation's factor is a fraction of a full turn, each way.
        layers.append(keras.layers.RandomRotation(settings["rotation_degrees"] / 720.0, fill_mode="nearest", seed=seed))
    if settings["width_shift"] or settings["height_shift"]:
        layers.append(keras.layers.RandomTranslation(settings["height_shift"], settings["width_shift"],
                                                     fill_mode="nearest", seed=seed + 1))
    if settings["shear_degrees"]:
        # ImageDataGenerator's shear_range is an angle in degrees; RandomShear takes the shear factor.
        factor = math.tan(math.radians(settings["shear_degrees"]))
        layers.append(SymmetricShear(x_factor=factor, y_factor=factor, fill_mode="nearest", seed=seed + 2,
                                     name="random_shear"))
    if settings["zoom"]:
        layers.append(keras.layers.RandomZoom(settings["zoom"], settings["zoom"], fill_mode="nearest", seed=seed + 3))
    if settings["channel_shift"]:
        layers.append(ChannelShift(settings["channel_shift"], seed=seed + 4))
    flips = {(True, True): "horizontal_and_vertical", (True, False): "horizontal", (False, True): "vertical"}
    mode = flips.get((settings["horizontal_flip"], settings["vertical_flip"]))
    if mode:
        layers.append(keras.layers.RandomFlip(mode, seed=seed + 5))
    return keras.Sequential(layers, name="augmentation")


def build_model(
    backbone: str,
    input_size: int,
    *,
    heads: Sequence[str] = (),
    weights: Path | None = None,
    preprocess: str = "rescale",
    augment: keras.Sequential | None = None,
    annotators: dict[str, Any] | None = None,
) -> keras.Model:
    """Outputs a dict: `label` (sigmoid), one linear `target_<head>` per annotation head, and with
    `annotators` ({model: confusion|affine, n: annotators, rate[, diagonal]}) the annotator head."""
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = augment(inputs) if augment is not None else inputs
    if preprocess == "rescale":
        x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(x)
    else:
        x = BackbonePreprocess(backbone, name="preprocess")(x)
    base = BACKBONES[backbone].build(input_size, weights)
    base.trainable = True
    features = keras.layers.Flatten(name="flatten")(base(x))
    shared = keras.layers.Dense(256, activation="relu", name="dense_256")(features)
    # float32 heads: under mixed precision the sigmoid and the regression stay numerically safe.
    outputs = {"label": keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="label")(shared)}
    for head in heads:
        name = head_output(head)
        outputs[name] = keras.layers.Dense(1, activation="linear", dtype="float32", name=name)(shared)
    if annotators:
        name = head_output(ANNOTATOR_HEAD)
        if annotators["model"] == "confusion":
            layer = WorkerConfusion(int(annotators["n"]), diagonal=float(annotators["diagonal"]),
                                    rate=float(annotators["rate"]), dtype="float32", name=name)
            outputs[name] = layer(outputs["label"])
        else:
            score = keras.layers.Dense(1, activation="linear", dtype="float32", name="annotator_score")(shared)
            outputs[name] = AnnotatorAffine(int(annotators["n"]), rate=float(annotators["rate"]), dtype="float32",
                                            name=name)(score)
    kind = "annotators" if annotators else "multitask" if heads else "baseline"
    return keras.Model(inputs, outputs, name=f"{backbone}_{kind}")


def head_output(head: str) -> str:
    """The model output of an annotation head. The prefix sorts every head after `label`, the order
    in which Keras sums the losses of a dict of outputs, whatever the head is called."""
    return f"target_{head}"


def _annotator_loss(model: keras.Model, weights: Sequence[float] | None) -> keras.losses.Loss:
    """The masked loss of the annotator head: cross-entropy of the answers through confusion
    matrices, squared error of the scores through scales and biases."""
    layer = model.get_layer(head_output(ANNOTATOR_HEAD))
    n = layer.n_annotators
    weights = list(weights) if weights is not None else [1.0] * n
    if len(weights) != n:
        raise ValueError(f"{len(weights)} annotator weights for a head of {n} annotators")
    return MaskedAnnotatorCrossentropy(weights) if isinstance(layer, WorkerConfusion) else MaskedAnnotatorMSE(weights)


def _allow_jit_of_augmentation(layer: keras.layers.Layer) -> None:
    """Mark Keras' affine augmentation layers (rotation, shift, shear, zoom) jit-compatible.

    Keras flags them `supports_jit = False` because TensorFlow's ImageProjectiveTransform op has no
    XLA kernel, and one such layer turns a whole model's compilation off. On JAX and torch they are
    plain array ops that compile; left uncompiled, a JAX train step runs op by op.
    """
    for child in getattr(layer, "layers", []):
        if isinstance(child, keras.layers.Layer):
            keras_augmentation = any("image_preprocessing" in cls.__module__ for cls in type(child).__mro__)
            if not child.supports_jit and keras_augmentation:
                child.supports_jit = True
            _allow_jit_of_augmentation(child)


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    return {"rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam,
            "sgd": keras.optimizers.SGD}[name](learning_rate=learning_rate)


def compile_model(
    model: keras.Model,
    *,
    optimizer: keras.optimizers.Optimizer,
    loss_weights: dict[str, float] | None,
    jit_compile: bool = False,
    run_eagerly: bool = False,
    steps_per_execution: int = 1,
    annotator_weights: Sequence[float] | None = None,
) -> None:
    """Weighted cross-entropy on `label` (its data: `label_pairs`, the class weights with it); every
    other output is an annotation head with the masked MSE. `loss_weights` {label, target}: the
    label's weight, and the annotation heads' together, shared equally among them, so a model with
    three heads puts as much weight on annotations as one with a single head. The annotator head's
    loss weighs each annotator by `annotator_weights`."""
    heads = [name for name in model.output if name != "label"]
    losses: dict[str, Any] = {"label": WeightedBinaryCrossentropy()}
    # The 0.5/0.5 split is the multi-task loss; a baseline keeps its plain cross-entropy.
    weights = {"label": loss_weights["label"] if heads and loss_weights else 1.0}
    for head in heads:
        losses[head] = MaskedMSE() if head != head_output(ANNOTATOR_HEAD) else _annotator_loss(model, annotator_weights)
        weights[head] = loss_weights["target"] / len(heads) if loss_weights else 1.0 / len(heads)
    if keras.backend.backend() != "tensorflow":
        _allow_jit_of_augmentation(model)
    model.compile(optimizer=optimizer, loss=losses, loss_weights=weights,
                  metrics={"label": [LabelAUC(name="auc")]},
                  jit_compile=jit_compile, run_eagerly=run_eagerly, steps_per_execution=steps_per_execution)
