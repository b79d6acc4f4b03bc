"""Keras 3 layers that model each annotator's answers on top of a model's diagnosis, and their losses.

Crowd labels are noisy in a way that differs per annotator: a careful worker mostly agrees with the
truth, a spammer answers at random. Rather than averaging the answers into one target, the model
predicts each annotator's answer through a layer of that annotator's own, and the layer's parameters
say how reliable each one is:

- `WorkerConfusion`: Rodrigues & Pereira's crowd layer ("Deep Learning from Crowds", AAAI 2018), the
  MW variant with one matrix per worker, in the probability form of Tanno et al. ("Learning from
  noisy labels by regularized estimation of annotator confusion", CVPR 2019): the answer is drawn
  from the row of the annotator's confusion matrix that the true class picks.
- `AnnotatorAffine`: a scale and a bias per annotator on a shared score, for numeric annotations.

Their targets travel as one row per image `[answer_1 .. answer_A, answered_1 .. answered_A]`: an
image that an annotator did not see has answered 0 and any answer (NaN included), and counts in no
loss. Both losses average over the answers of the batch, so a batch with few answers weighs as much
per answer as a full one. Everything is `keras.ops`, so the layers train on every Keras backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops


def _check_rate(rate: float) -> float:
    rate = float(rate)
    if not rate > 0:
        raise ValueError(f"rate must be positive, not {rate}")
    return rate


def _check_annotators(n_annotators: int) -> int:
    if int(n_annotators) != n_annotators or n_annotators < 1:
        raise ValueError(f"n_annotators must be a positive integer, not {n_annotators!r}")
    return int(n_annotators)


@keras.saving.register_keras_serializable(package="crowdskin")
class WorkerConfusion(keras.layers.Layer):
    """Each annotator's probability of answering 1, from the model's probability that the image is class 1.

    Annotator a has a 2 x 2 confusion matrix C_a[true class, answer], the row-wise softmax of a
    logits matrix T_a, so every row is a distribution over the answers whatever T_a holds. Input
    (B, 1): the diagnosis sigmoid p; output (B, A): (1 - p) C_a[0, 1] + p C_a[1, 1], the chance that
    annotator a answers 1 when the image is class 1 with probability p.

    The matrices start near the identity, `diagonal` on each diagonal: the model first trusts every
    annotator alike and learns who deserves less. Starting at the identity itself would put the
    logits at infinity; starting uniform would leave the classes interchangeable, so that the
    network could learn the diagnosis upside down with inverted matrices.

    `rate` is the learning-rate gain of the matrices: the variable stores T / rate and the forward
    pass multiplies it back, so the layer computes the same function while the gradient on the
    variable is `rate` times larger. Adam's step is about the learning rate whatever the gradient's
    size, so T moves `rate` times faster than the network's weights. Without it, at Adam's default
    learning rate of 1e-3 and a couple of hundred steps, a logit moves by at most about 0.2: never far
    enough from the start to tell a spammer (diagonal 0.5) from a careful worker. The other side of
    a fast-moving matrix: when the diagnosis head starts out pointing against the truth, the matrices
    can swap the classes before the head has turned round (on simulated crowds, a random start did so
    about half the time, at rate 5 as at 20). Start the head at zero, or from a model trained on the
    majority vote.
    """

    def __init__(self, n_annotators: int, *, diagonal: float = 0.9, rate: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_annotators = _check_annotators(n_annotators)
        self.diagonal = float(diagonal)
        if not 0.0 < self.diagonal < 1.0:
            raise ValueError(f"diagonal must lie strictly between 0 and 1, not {self.diagonal}")
        self.rate = _check_rate(rate)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if input_shape[-1] != 1:
            raise ValueError(f"WorkerConfusion takes the probability of class 1, shape (batch, 1), not {input_shape}")
        start = np.zeros((self.n_annotators, 2, 2), np.float32)
        start[:, [0, 1], [0, 1]] = math.log(self.diagonal / (1.0 - self.diagonal)) / self.rate

        def near_identity(shape: tuple[int, ...], dtype: Any = None) -> Any:
            return ops.cast(ops.convert_to_tensor(start), dtype or "float32")

        # The stored logits are T / rate; see the class docstring.
        self.scaled_logits = self.add_weight(shape=(self.n_annotators, 2, 2), initializer=near_identity,
                                             name="scaled_logits")

    def call(self, probability: Any) -> Any:
        confusion = ops.softmax(self.rate * self.scaled_logits, axis=-1)
        probability = ops.cast(probability, confusion.dtype)
        return (1.0 - probability) * confusion[:, 0, 1] + probability * confusion[:, 1, 1]

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], self.n_annotators)

    def confusion(self) -> np.ndarray:
        """The current matrices, shape (A, 2, 2): rows the true class, columns the answer; rows sum to 1."""
        logits = self.rate * ops.convert_to_numpy(self.scaled_logits).astype(np.float64)
        logits -= logits.max(axis=-1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=-1, keepdims=True)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_annotators": self.n_annotators, "diagonal": self.diagonal,
                "rate": self.rate}


@keras.saving.register_keras_serializable(package="crowdskin")
class AnnotatorAffine(keras.layers.Layer):
    """Each annotator's reading of a shared score: scale_a x s + bias_a.

    Input (B, 1): the score s that all annotators judge; output (B, A). An annotator who rates
    everything higher gets a bias, one who spreads the scale wider gets a larger scale, and the shared
    score is left to what they agree on. The scales start at 1 and the biases at 0: every annotator
    reads the score as it is until the answers say otherwise.

    `rate`: the learning-rate gain of the scales and biases, stored divided by it, for the reason
    `WorkerConfusion` gives: under Adam they move `rate` times faster than the network's weights.
    """

    def __init__(self, n_annotators: int, *, rate: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_annotators = _check_annotators(n_annotators)
        self.rate = _check_rate(rate)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if input_shape[-1] != 1:
            raise ValueError(f"AnnotatorAffine takes one shared score, shape (batch, 1), not {input_shape}")
        # The stored parameters are scale / rate and bias / rate; see the class docstring.
        self.scaled_scale = self.add_weight(shape=(self.n_annotators,),
                                            initializer=keras.initializers.Constant(1.0 / self.rate),
                                            name="scaled_scale")
        self.scaled_bias = self.add_weight(shape=(self.n_annotators,), initializer="zeros", name="scaled_bias")

    def call(self, score: Any) -> Any:
        score = ops.cast(score, self.scaled_scale.dtype)
        return self.rate * self.scaled_scale * score + self.rate * self.scaled_bias

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], self.n_annotators)

    def scale(self) -> np.ndarray:
        """Each annotator's scale, shape (A,)."""
        return self.rate * ops.convert_to_numpy(self.scaled_scale).astype(np.float64)

    def bias(self) -> np.ndarray:
        """Each annotator's bias, shape (A,)."""
        return self.rate * ops.convert_to_numpy(self.scaled_bias).astype(np.float64)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_annotators": self.n_annotators, "rate": self.rate}


class _MaskedAnnotatorLoss(keras.losses.Loss):
    """The per-answer error, weighted per annotator, summed over the answers given and divided by their number.

    y_true (B, 2A): the answers, then whether each was given; y_pred (B, A). The division is by the
    number of answers, not by the sum of their weights, so the weights say how much one annotator
    counts against another while the loss keeps its scale when all weights are 1.
    """

    def __init__(self, weights: Sequence[float], name: str, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.weights = [float(weight) for weight in weights]
        if not self.weights:
            raise ValueError("weights needs one entry per annotator, and there is none")

    def error(self, answer: Any, prediction: Any) -> Any:
        raise NotImplementedError

    def call(self, y_true: Any, y_pred: Any) -> Any:
        n_annotators = len(self.weights)
        y_true = ops.cast(y_true, "float32")
        answer, answered = y_true[:, :n_annotators], y_true[:, n_annotators:]
        prediction = ops.cast(y_pred, "float32")
        # An unanswered entry's answer may be NaN, and 0 x NaN is NaN: blank it, not just weight it 0.
        answer = ops.where(answered > 0, answer, ops.zeros_like(answer))
        weight = ops.convert_to_tensor(np.asarray(self.weights, np.float32))
        total = ops.sum(weight * answered * self.error(answer, prediction))
        # max(count, 1): with no answer in the batch the sum is 0, and so is the loss.
        return total / ops.maximum(ops.sum(answered), 1.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "weights": list(self.weights)}


@keras.saving.register_keras_serializable(package="crowdskin")
class MaskedAnnotatorCrossentropy(_MaskedAnnotatorLoss):
    """Binary cross-entropy of each given answer against the predicted chance of that annotator answering 1.

    `weights`: one per annotator (their expertise weights); all 1 weighs every answer alike. The
    probabilities are clipped to [epsilon, 1 - epsilon] as Keras' binary cross-entropy does, so a
    confident wrong prediction costs a large loss rather than an infinite one.
    """

    def __init__(self, weights: Sequence[float], name: str = "masked_annotator_crossentropy", **kwargs: Any) -> None:
        super().__init__(weights, name=name, **kwargs)

    def error(self, answer: Any, prediction: Any) -> Any:
        epsilon = keras.config.epsilon()
        prediction = ops.clip(prediction, epsilon, 1.0 - epsilon)
        return -(answer * ops.log(prediction) + (1.0 - answer) * ops.log(1.0 - prediction))


@keras.saving.register_keras_serializable(package="crowdskin")
class MaskedAnnotatorMSE(_MaskedAnnotatorLoss):
    """Squared error of each given answer, for numeric annotations (an `AnnotatorAffine` output).

    `weights`: one per annotator, as in `MaskedAnnotatorCrossentropy`.
    """

    def __init__(self, weights: Sequence[float], name: str = "masked_annotator_mse", **kwargs: Any) -> None:
        super().__init__(weights, name=name, **kwargs)

    def error(self, answer: Any, prediction: Any) -> Any:
        return ops.square(answer - prediction)


def reliability(confusion: np.ndarray, prior: Sequence[float] | None = None) -> np.ndarray:
    """Per annotator, the probability that their answer is the true class: sum_k prior_k C_a[k, k].

    `confusion` (A, K, K) as `WorkerConfusion.confusion` gives it; `prior` the classes' frequencies,
    uniform by default, so that an annotator who always answers the majority class does not look
    reliable just because one class is common. A spammer scores 1 / K, a perfect annotator 1.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    if confusion.ndim != 3 or confusion.shape[1] != confusion.shape[2]:
        raise ValueError(f"confusion must have shape (annotators, classes, classes), not {confusion.shape}")
    n_classes = confusion.shape[1]
    prior = np.full(n_classes, 1.0 / n_classes) if prior is None else np.asarray(prior, dtype=np.float64)
    if prior.shape != (n_classes,):
        raise ValueError(f"prior needs one entry per class ({n_classes}), not shape {prior.shape}")
    return np.einsum("k,akk->a", prior, confusion)
