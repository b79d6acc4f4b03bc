"""crowdskin.train.annotators: the crowd layers and their masked losses on every Keras backend.

Each installed backend runs in its own process (a backend is fixed at keras' first import) and
evaluates the layers and losses on the arrays below; the expected values are computed here by hand.
On the default backend the same process also fits a crowd-layer model to simulated votes, whose
workers' confusion matrices are known: the fitted matrices must rank the workers as the true ones
do, and agree with crowd-kit's torch CrowdLayer fitted to the same votes.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import spearmanr

from crowdskin.train.backend import BACKENDS, DEFAULT, installed

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# Two images, three workers: worker 1 skipped image 0 and worker 2 skipped image 1 (answer NaN).
ANSWERS = np.array([[1.0, np.nan, 0.0], [0.0, 1.0, np.nan]])
ANSWERED = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
# Image 1's worker 0 is predicted 1 exactly, against an answer of 0: only the clipping keeps it finite.
PREDICTED = np.array([[0.8, 0.3, 0.4], [1.0, 0.6, 0.9]])
LOSS_WEIGHTS = [1.0, 2.0, 0.5]
# WorkerConfusion with rate 4: the logits T_a, rows the true class, columns the answer.
RATE = 4.0
LOGITS = np.array([[[2.0, -1.0], [0.5, 1.5]], [[0.0, 0.0], [0.0, 0.0]], [[-1.0, 1.0], [3.0, -2.0]]])
PROBABILITY = np.array([[0.0], [0.25], [1.0]])
# AnnotatorAffine with rate 4.
SCALE = np.array([1.5, -0.5, 2.0])
BIAS = np.array([0.1, 0.0, -1.0])
SCORE = np.array([[0.0], [2.0], [-1.5]])

# The simulated crowd: each worker's probability of answering the true class, whichever it is.
# Workers 1 and 4 are spammers; the order is mixed so that no test relies on it.
WORKER_ACCURACY = np.array([0.85, 0.5, 0.65, 0.95, 0.5, 0.75])
SPAMMERS = {1, 4}

# Runs in the backend's own process. Prints one JSON line.
IN_BACKEND = r"""
import json, sys, tempfile
import numpy as np
args = json.loads(sys.argv[1])
from crowdskin.train.backend import select
select(args["backend"], threads=1)
import keras
from crowdskin.train.annotators import (AnnotatorAffine, MaskedAnnotatorCrossentropy, MaskedAnnotatorMSE,
                                        WorkerConfusion)
case = np.load(args["case"])
rate = float(case["rate"])
weights = case["loss_weights"].tolist()
y_true = np.concatenate([case["answers"], case["answered"]], axis=1).astype("float32")
y_pred = case["predicted"].astype("float32")
nothing = np.concatenate([np.full((2, 3), np.nan), np.zeros((2, 3))], axis=1).astype("float32")
number = lambda value: float(keras.ops.convert_to_numpy(value))
result = {"backend": keras.backend.backend(),
          "crossentropy": number(MaskedAnnotatorCrossentropy(weights)(y_true, y_pred)),
          "mse": number(MaskedAnnotatorMSE(weights)(y_true, y_pred)),
          "no_answer": [number(MaskedAnnotatorCrossentropy(weights)(nothing, y_pred)),
                        number(MaskedAnnotatorMSE(weights)(nothing, y_pred))]}

confusion = WorkerConfusion(3, rate=rate)
confusion.build((None, 1))
confusion.set_weights([(case["logits"] / rate).astype("float32")])
result["confusion_output"] = keras.ops.convert_to_numpy(confusion(case["probability"].astype("float32"))).tolist()
result["confusion_matrices"] = confusion.confusion().tolist()
fresh = WorkerConfusion(2, diagonal=0.8, rate=7.0)
fresh.build((None, 1))
result["fresh_matrices"] = fresh.confusion().tolist()

affine = AnnotatorAffine(3, rate=rate)
affine.build((None, 1))
affine.set_weights([(case["scale"] / rate).astype("float32"), (case["bias"] / rate).astype("float32")])
result["affine_output"] = keras.ops.convert_to_numpy(affine(case["score"].astype("float32"))).tolist()
result["affine_parameters"] = [affine.scale().tolist(), affine.bias().tolist()]

# Both layers in one model, trained a few steps on answers with NaN where unanswered, saved and loaded.
keras.utils.set_random_seed(0)
features = keras.Input((2,))
probability = keras.layers.Dense(1, activation="sigmoid", name="diagnosis")(features)
score = keras.layers.Dense(1, name="score")(features)
model = keras.Model(features, {"votes": WorkerConfusion(3, diagonal=0.8, rate=rate, name="votes")(probability),
                               "ratings": AnnotatorAffine(3, rate=rate, name="ratings")(score)})
model.compile(optimizer=keras.optimizers.Adam(1e-2), loss={"votes": MaskedAnnotatorCrossentropy(weights),
                                                           "ratings": MaskedAnnotatorMSE(weights)})
inputs = np.random.default_rng(0).normal(size=(8, 2)).astype("float32")
targets = np.tile(y_true, (4, 1))
before = model.get_layer("votes").confusion()
history = model.fit(inputs, {"votes": targets, "ratings": targets}, batch_size=4, epochs=2, verbose=0)
result["fit_losses"] = history.history["loss"]
result["matrices_moved"] = float(np.abs(model.get_layer("votes").confusion() - before).max())
path = tempfile.mkdtemp() + "/annotators.keras"
model.save(path)
loaded = keras.models.load_model(path)
saved, reloaded = model.predict(inputs, verbose=0), loaded.predict(inputs, verbose=0)
result["reload_difference"] = max(float(np.abs(saved[name] - reloaded[name]).max()) for name in saved)
result["reloaded_configs"] = [loaded.get_layer(name).get_config() for name in ("votes", "ratings")]
result["reloaded_loss"] = number(loaded.compute_loss(x=inputs, y={"votes": targets, "ratings": targets},
                                                     y_pred=reloaded))
result["saved_loss"] = number(model.compute_loss(x=inputs, y={"votes": targets, "ratings": targets}, y_pred=saved))

if args.get("crowd"):
    crowd = np.load(args["crowd"])
    keras.utils.set_random_seed(0)
    features = keras.Input((2,))
    # A zero start: a random one that happens to point against the truth can make the matrices
    # learn the classes swapped faster than the classifier turns round.
    diagnosis = keras.layers.Dense(1, activation="sigmoid", kernel_initializer="zeros", name="diagnosis")(features)
    layer = WorkerConfusion(crowd["answers"].shape[1], diagonal=0.9, rate=20.0, name="votes")
    model = keras.Model(features, layer(diagnosis))
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=MaskedAnnotatorCrossentropy([1.0] * crowd["answers"].shape[1]))
    y = np.concatenate([crowd["answers"], crowd["answered"]], axis=1).astype("float32")
    # 300 items in batches of 30 for 30 epochs: 300 steps.
    model.fit(crowd["features"], y, batch_size=30, epochs=30, verbose=0)
    diagnosed = keras.ops.convert_to_numpy(keras.Model(features, diagnosis)(crowd["features"]))[:, 0]
    result["recovered"] = layer.confusion().tolist()
    result["accuracy"] = float(((diagnosed > 0.5) == crowd["truth"]).mean())
print("RESULT " + json.dumps(result))
"""


def simulate_crowd(seed: int = 0, n_items: int = 300, answer_rate: float = 0.6) -> dict[str, np.ndarray]:
    """Items with 2-D Gaussian features whose class follows a logistic rule, and each worker's answers:
    the true class with the worker's accuracy, the other class otherwise, on about 60 % of the items."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n_items, 2))
    truth = (rng.random(n_items) < 1.0 / (1.0 + np.exp(-3.0 * (features[:, 0] - 0.5 * features[:, 1])))).astype(int)
    correct = rng.random((n_items, len(WORKER_ACCURACY))) < WORKER_ACCURACY
    answers = np.where(correct, truth[:, None], 1 - truth[:, None]).astype(float)
    answered = rng.random(answers.shape) < answer_rate
    answers[~answered] = np.nan
    return {"features": features.astype(np.float32), "truth": truth, "answers": answers,
            "answered": answered.astype(float)}


def true_confusion() -> np.ndarray:
    return np.array([[[accuracy, 1 - accuracy], [1 - accuracy, accuracy]] for accuracy in WORKER_ACCURACY])


def recovery_backend() -> str | None:
    """The default backend when installed, else the first installed one."""
    present = [backend for backend in BACKENDS if installed(backend)]
    return DEFAULT if DEFAULT in present else (present[0] if present else None)


@pytest.fixture(scope="module")
def crowd() -> dict[str, np.ndarray]:
    return simulate_crowd()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, crowd) -> dict[str, dict]:
    """Each installed backend's values; the recovery backend's also holds its fitted matrices."""
    directory = tmp_path_factory.mktemp("annotators")
    case = directory / "case.npz"
    np.savez(case, answers=ANSWERS, answered=ANSWERED, predicted=PREDICTED, loss_weights=np.array(LOSS_WEIGHTS),
             rate=RATE, logits=LOGITS, probability=PROBABILITY, scale=SCALE, bias=BIAS, score=SCORE)
    crowd_path = directory / "crowd.npz"
    np.savez(crowd_path, **crowd)
    results = {}
    for backend in BACKENDS:
        if not installed(backend):
            continue
        args = {"backend": backend, "case": str(case),
                "crowd": str(crowd_path) if backend == recovery_backend() else None}
        done = subprocess.run([sys.executable, "-c", IN_BACKEND, json.dumps(args)], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"{backend}: {done.stderr[-3000:]}"
        [line] = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        result = json.loads(line[len("RESULT "):])
        assert result["backend"] == backend
        results[backend] = result
    return results


def _backend_run(runs: dict[str, dict], backend: str) -> dict:
    if not installed(backend):
        pytest.skip(f"{backend} is not installed (`make install BACKEND={backend}`)")
    return runs[backend]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_masked_losses_match_a_hand_computation(runs, backend):
    """Break: dividing by the batch size or the weights' sum, weighting a NaN answer by 0 instead of
    blanking it, or leaving a prediction of exactly 1 unclipped."""
    run = _backend_run(runs, backend)
    epsilon = 1e-7
    # The model clips in float32, where 1 - 1e-7 rounds to 1 - 1.19e-7.
    low, high = float(np.float32(epsilon)), float(np.float32(1 - epsilon))
    crossentropy = squared = 0.0
    count = 0
    for image in range(2):
        for worker in range(3):
            if not ANSWERED[image, worker]:
                continue
            answer, predicted = ANSWERS[image, worker], PREDICTED[image, worker]
            clipped = min(max(predicted, low), high)
            crossentropy += LOSS_WEIGHTS[worker] * -(answer * math.log(clipped) + (1 - answer) * math.log(1 - clipped))
            squared += LOSS_WEIGHTS[worker] * (answer - predicted) ** 2
            count += 1
    assert count == 4
    assert run["crossentropy"] == pytest.approx(crossentropy / count, rel=1e-5)
    assert run["mse"] == pytest.approx(squared / count, rel=1e-5)
    assert run["no_answer"] == [0.0, 0.0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_worker_confusion_matches_a_hand_computation(runs, backend):
    """Break: a column-wise softmax, the rate left out of the forward pass, or C[0, 0] in place of C[0, 1]."""
    run = _backend_run(runs, backend)
    expected_matrices = np.zeros((3, 2, 2))
    expected_output = np.zeros((3, 3))
    for worker in range(3):
        for true_class in range(2):
            row = np.exp(LOGITS[worker, true_class])
            expected_matrices[worker, true_class] = row / row.sum()
        for item in range(3):
            p = PROBABILITY[item, 0]
            answers_one = (1 - p) * expected_matrices[worker, 0, 1] + p * expected_matrices[worker, 1, 1]
            expected_output[item, worker] = answers_one
    np.testing.assert_allclose(run["confusion_matrices"], expected_matrices, rtol=1e-5)
    np.testing.assert_allclose(run["confusion_output"], expected_output, rtol=1e-5)
    # A fresh layer starts with `diagonal` on every diagonal, whatever the rate.
    np.testing.assert_allclose(run["fresh_matrices"], [[[0.8, 0.2], [0.2, 0.8]]] * 2, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_annotator_affine_matches_a_hand_computation(runs, backend):
    """Break: the rate applied to the scale but not the bias, or the score broadcast the wrong way."""
    run = _backend_run(runs, backend)
    expected = [[SCALE[worker] * SCORE[item, 0] + BIAS[worker] for worker in range(3)] for item in range(3)]
    np.testing.assert_allclose(run["affine_output"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run["affine_parameters"], [SCALE, BIAS], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_model_with_both_layers_trains_on_nan_answers_and_loads_back(runs, backend):
    """Break: a NaN answer reaching the gradient, a config without the rate, or a loss that cannot be rebuilt."""
    run = _backend_run(runs, backend)
    assert all(math.isfinite(loss) for loss in run["fit_losses"])
    assert run["matrices_moved"] > 1e-3
    assert run["reload_difference"] < 1e-6
    votes, ratings = run["reloaded_configs"]
    assert (votes["n_annotators"], votes["diagonal"], votes["rate"]) == (3, 0.8, RATE)
    assert (ratings["n_annotators"], ratings["rate"]) == (3, RATE)
    assert math.isfinite(run["saved_loss"])
    assert run["reloaded_loss"] == pytest.approx(run["saved_loss"], rel=1e-5)


def test_reliability_is_the_prior_weighted_diagonal():
    """Break: the diagonal's plain mean whatever the prior, or the prior's classes taken in reverse."""
    from crowdskin.train.annotators import reliability

    confusion = np.array([[[0.9, 0.1], [0.3, 0.7]], [[0.5, 0.5], [0.5, 0.5]]])
    np.testing.assert_allclose(reliability(confusion), [0.8, 0.5])
    np.testing.assert_allclose(reliability(confusion, prior=[0.25, 0.75]), [0.25 * 0.9 + 0.75 * 0.7, 0.5])
    with pytest.raises(ValueError, match="prior"):
        reliability(confusion, prior=[1.0])


def _check_ranking(recovered: np.ndarray, label: str) -> None:
    from crowdskin.train.annotators import reliability

    found, truth = reliability(recovered), reliability(true_confusion())
    assert spearmanr(found, truth).statistic >= 0.8, (label, found)
    assert set(np.argsort(found)[:2]) == SPAMMERS, (label, found)
    # Measured over 20 simulated crowds: 0.05 to 0.12 for crowdskin (the best worker's 0.95 comes out
    # near 1: the matrices also absorb the diagnosis' own uncertainty), 0.02 to 0.07 for crowd-kit.
    assert np.abs(found - truth).mean() <= 0.15, (label, found)


def test_the_crowd_layer_recovers_who_the_spammers_are(runs):
    """Break: a column-wise softmax (the answers no longer drawn from the true class's row), or a NaN
    answer reaching the loss."""
    backend = recovery_backend()
    if backend is None:
        pytest.skip("no Keras backend installed")
    run = runs[backend]
    recovered = np.asarray(run["recovered"])
    np.testing.assert_allclose(recovered.sum(axis=-1), 1.0, rtol=1e-6)
    assert run["accuracy"] > 0.75  # the diagnosis itself is learnt, not just the matrices
    _check_ranking(recovered, "crowdskin")


def _fit_crowd_kit(votes: dict[str, np.ndarray], steps: int = 300, batch_items: int = 30) -> np.ndarray:
    """crowd-kit's CrowdLayer (MW) on a linear classifier, trained with torch's Adam on the same votes
    and in the same batches of items as the Keras model; returns its implied confusion matrices."""
    import torch
    from crowdkit.learning import CrowdLayer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        n_items, n_workers = votes["answers"].shape
        item, worker = np.nonzero(votes["answered"])
        answer = torch.tensor(votes["answers"][item, worker].astype(np.int64))
        features = torch.tensor(votes["features"])[torch.tensor(item)]
        worker = torch.tensor(worker)
        # The same zero start as the Keras model's, for the same reason.
        classifier = torch.nn.Linear(2, 2)
        torch.nn.init.zeros_(classifier.weight)
        torch.nn.init.zeros_(classifier.bias)
        crowd_layer = CrowdLayer(2, n_workers, conn_type="mw")
        optimizer = torch.optim.Adam([*classifier.parameters(), *crowd_layer.parameters()], lr=1e-2)
        order = np.random.default_rng(0)
        for step in range(steps):
            start = step * batch_items % n_items
            if start == 0:
                chosen_items = order.permutation(n_items)
            rows = torch.tensor(np.flatnonzero(np.isin(item, chosen_items[start:start + batch_items])))
            probabilities = torch.softmax(classifier(features[rows]), dim=-1)
            loss = torch.nn.functional.cross_entropy(crowd_layer(probabilities, worker[rows]), answer[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        weight = crowd_layer.weight.detach().double().numpy()
    finally:
        torch.set_num_threads(threads)
    # The answer logits are W_r @ probabilities: for an item surely of class k, softmax(W_r[:, k]).
    columns = np.swapaxes(weight, 1, 2)
    columns = np.exp(columns - columns.max(axis=-1, keepdims=True))
    return columns / columns.sum(axis=-1, keepdims=True)


def test_crowd_kit_s_crowd_layer_finds_the_same_workers(runs, crowd):
    """The reference implementation, fitted to the same votes in the same batches, ranks the workers as
    crowdskin's layer does, with diagonals within 0.1 on average: a layer that learnt the classes
    swapped (diagonals near 1 minus crowd-kit's) would not."""
    try:
        import torch  # noqa: F401
        from crowdkit.learning import CrowdLayer  # noqa: F401
    except ImportError:
        pytest.skip("torch is not installed: crowd-kit's CrowdLayer needs it; pip install torch to run the cross-check")
    backend = recovery_backend()
    if backend is None:
        pytest.skip("no Keras backend installed")
    from crowdskin.train.annotators import reliability

    ours = np.asarray(runs[backend]["recovered"])
    theirs = _fit_crowd_kit(crowd)
    _check_ranking(theirs, "crowd-kit")
    assert spearmanr(reliability(ours), reliability(theirs)).statistic >= 0.8, (ours, theirs)
    diagonals = np.abs(np.diagonal(ours, axis1=1, axis2=2) - np.diagonal(theirs, axis1=1, axis2=2))
    # Measured over 20 simulated crowds: 0.03 to 0.08.
    assert diagonals.mean() <= 0.1, (ours, theirs)
