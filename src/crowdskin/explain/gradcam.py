"""Grad-CAM (Selvaraju et al., 2017) of a model's diagnosis output, on every Keras 3 backend.

Keras 3.15 has no backend-neutral gradient (`keras.ops` has none), so the gradient of the
diagnosis logit with respect to the target layer's activations goes through each backend's own
autograd: TensorFlow's tape, `jax.grad`, torch autograd, behind `diagnosis_gradients`.

How the gradient reaches an inner layer whatever the model's nesting: for the duration of one
call the target layer returns `activations + offset`, with `offset` zeros of the activations'
shape. The gradient with respect to `offset` at zero is the gradient with respect to the
activations, and no graph is cut or rebuilt (the backbones are models nested in the model, where
cutting one at an inner layer differs per backbone).

The map explains the logit, not the sigmoid: the sigmoid's slope p(1-p) is ~0 for a confident
prediction, and its gradients would underflow to nothing exactly where a model is surest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

DIAGNOSIS_OUTPUT = "label"


def find_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """The layer called `name` in `model` or in any model nested in it (a backbone's inner layer)."""
    for layer in model.layers:
        if layer.name == name:
            return layer
        if isinstance(layer, keras.Model):
            with contextlib.suppress(ValueError):
                return find_layer(layer, name)
    raise ValueError(f"model {model.name!r} has no layer {name!r} (at any depth)")


@contextlib.contextmanager
def _offset_and_logit(target: keras.layers.Layer, output: keras.layers.Layer,
                      state: dict[str, Any]) -> Iterator[None]:
    """While inside: `target` stores its activations in state["activations"] and returns them
    plus state["offset"]; `output` (the sigmoid diagnosis layer) returns its logit."""
    original_call, original_activation = target.call, output.activation

    def call(*args: Any, **kwargs: Any) -> Any:
        activations = original_call(*args, **kwargs)
        state["activations"] = activations
        return activations + state["offset"]

    target.call = call
    output.activation = keras.activations.linear
    try:
        yield
    finally:
        del target.call  # the instance attribute goes; the class's call is back
        output.activation = original_activation


def diagnosis_gradients(model: keras.Model, images: np.ndarray, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """The target layer's activations A (batch, h, w, channels) for `images` and the gradient of
    each image's diagnosis logit with respect to A, through the backend's own autograd."""
    target = find_layer(model, layer)
    output = find_layer(model, DIAGNOSIS_OUTPUT)
    shape = (len(images), *tuple(target.output.shape)[1:])
    state: dict[str, Any] = {}
    backend = keras.backend.backend()
    with _offset_and_logit(target, output, state):
        logit_sum: Callable[[Any], Any]
        if backend == "tensorflow":
            import tensorflow as tf

            x = tf.convert_to_tensor(images, dtype="float32")
            offset = tf.zeros(shape, dtype=target.compute_dtype)
            with tf.GradientTape() as tape:
                tape.watch(offset)
                state["offset"] = offset
                logit = _diagnosis(model, x)
                total = tf.reduce_sum(tf.cast(logit, "float32"))
            gradients = tape.gradient(total, offset)
        elif backend == "jax":
            import jax
            import jax.numpy as jnp

            x = jnp.asarray(images, dtype="float32")

            def logit_sum(offset: Any) -> Any:
                state["offset"] = offset
                logit = _diagnosis(model, x)
                return jnp.sum(logit.astype("float32")), state["activations"]

            gradients, activations = jax.grad(logit_sum, has_aux=True)(jnp.zeros(shape, dtype=target.compute_dtype))
            state["activations"] = activations
        elif backend == "torch":
            import torch

            # keras.ops puts both on the device Keras computes on
            x = keras.ops.convert_to_tensor(images, dtype="float32")
            offset = keras.ops.zeros(shape, dtype=target.compute_dtype).requires_grad_(True)
            state["offset"] = offset
            logit = _diagnosis(model, x)
            (gradients,) = torch.autograd.grad(logit.float().sum(), offset)
        else:
            raise ValueError(f"Grad-CAM needs the gradient of backend {backend!r}, which crowdskin does not know")
    return (np.asarray(keras.ops.convert_to_numpy(state["activations"]), dtype=np.float32),
            np.asarray(keras.ops.convert_to_numpy(gradients), dtype=np.float32))


def _diagnosis(model: keras.Model, images: Any) -> Any:
    outputs = model(images, training=False)
    return outputs[DIAGNOSIS_OUTPUT] if isinstance(outputs, dict) else outputs


def class_activation_maps(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM: ReLU(sum_k alpha_k A_k), alpha_k the spatial mean of the gradient of channel k;
    (batch, h, w) at the target layer's resolution, in the logit's units (not normalised)."""
    alpha = gradients.mean(axis=(1, 2), keepdims=True)
    return np.maximum((alpha * activations).sum(axis=-1), 0.0)


def gradcam(model: keras.Model, images: np.ndarray, layer: str, batch: int = 64) -> np.ndarray:
    """Grad-CAM maps (batch, h, w) of the diagnosis output for 0-255 `images` (n, H, W, 3)."""
    maps = []
    for start in range(0, len(images), batch):
        activations, gradients = diagnosis_gradients(model, images[start:start + batch], layer)
        maps.append(class_activation_maps(activations, gradients))
    return np.concatenate(maps) if maps else np.zeros((0, 0, 0), dtype=np.float32)
