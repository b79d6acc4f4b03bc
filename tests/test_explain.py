"""crowdskin.explain: Grad-CAM through each backend's autograd, and the relevance mass.

A model whose answer is known by construction reads one quadrant of the image: its map's mass must
lie there. Each backend runs in its own process (a backend is fixed at keras' first import); on the
same weights their maps must agree. A backend that is not installed is skipped with the command
that installs it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from crowdskin.explain.relevance import region_at, relevance_mass, upsample
from crowdskin.train.backbones import BACKBONES
from crowdskin.train.backend import BACKENDS, installed

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# Builds the quadrant model and a smallcnn with seeded weights in this process's backend, prints
# both models' maps on seeded images as one JSON line.
IN_BACKEND = r"""
import json, sys
import numpy as np
from crowdskin.train.backend import select
select(sys.argv[1])
import keras
from crowdskin.explain.gradcam import gradcam
from crowdskin.train.backbones import BACKBONES
from crowdskin.train.models import build_model

size = 32
# Two branches see one quadrant each: top right (rows < 16, columns >= 16) and bottom left. The
# diagnosis reads only the first branch's channels, so only the top right explains the output; a
# map that ignored the gradients would split its mass, a transposed map would land bottom left.
def quadrant(rows, cols):
    mask = np.zeros((1, size, size, 1), np.float32)
    mask[:, rows, cols] = 1
    return keras.layers.Lambda(lambda t, m=mask: keras.ops.multiply(t, keras.ops.convert_to_tensor(m)))

image = keras.Input((size, size, 3))
top_right = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(
    quadrant(slice(0, 16), slice(16, 32))(image))
bottom_left = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_b")(
    quadrant(slice(16, 32), slice(0, 16))(image))
features = keras.layers.Concatenate(name="features")([top_right, bottom_left])
base = keras.Model(image, features, name="base")  # nested, as a backbone is in crowdskin's models
outer = keras.Input((size, size, 3))
pooled = keras.layers.GlobalAveragePooling2D()(base(outer))
quadrant_model = keras.Model(outer, {"label": keras.layers.Dense(1, activation="sigmoid", name="label")(pooled)})
rng = np.random.default_rng(0)
for layer in ("conv_a", "conv_b"):
    conv = base.get_layer(layer)
    conv.set_weights([np.abs(rng.normal(size=conv.kernel.shape)).astype("float32") / 10, np.zeros(4, "float32")])
quadrant_model.get_layer("label").set_weights([np.array([[1.0]] * 4 + [[0.0]] * 4, "float32"), np.zeros(1, "float32")])
images = rng.uniform(0, 255, (6, size, size, 3)).astype("float32")
result = {"backend": keras.backend.backend(), "quadrant": gradcam(quadrant_model, images, "features").tolist()}

model = build_model("smallcnn", size)
weights = np.random.default_rng(1)
model.set_weights([weights.normal(0, 0.2, w.shape).astype("float32") for w in model.get_weights()])
result["smallcnn"] = gradcam(model, images, BACKBONES["smallcnn"].gradcam_layer).tolist()
print("RESULT " + json.dumps(result))
"""


@pytest.fixture(scope="module")
def maps() -> dict[str, dict[str, np.ndarray]]:
    results = {}
    for backend in BACKENDS:
        if not installed(backend):
            continue
        done = subprocess.run([sys.executable, "-c", IN_BACKEND, backend], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"{backend}: {done.stderr[-3000:]}"
        [line] = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        result = json.loads(line[len("RESULT "):])
        assert result["backend"] == backend
        results[backend] = {name: np.asarray(value) for name, value in result.items() if name != "backend"}
    return results


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_map_lies_on_the_quadrant_the_model_reads(maps, backend):
    """Break: alpha from the activations instead of the gradients, or a transposed map."""
    if not installed(backend):
        pytest.skip(f"{backend} is not installed (`make install BACKEND={backend}`)")
    quadrant = maps[backend]["quadrant"]
    assert quadrant.shape == (6, 32, 32)
    top_right = np.zeros((6, 32, 32))
    top_right[:, :16, 16:] = 1
    # One pixel of the convolution's border reaches past the quadrant: mass there is allowed.
    share = relevance_mass(quadrant, top_right)
    assert (share > 0.95).all(), share
    assert quadrant[:, 17:, :15].max() == 0


def test_the_backends_agree_on_the_same_weights(maps):
    """Break: the torch or JAX branch differentiating the sigmoid instead of the logit."""
    present = sorted(maps)
    if len(present) < 2:
        pytest.skip(f"only {present} installed: `make install BACKEND=jax` (or torch) adds another")
    reference = maps[present[0]]["smallcnn"]
    assert reference.max() > 0
    for backend in present[1:]:
        other = maps[backend]["smallcnn"]
        assert np.corrcoef(reference.ravel(), other.ravel())[0, 1] > 0.999, backend
        np.testing.assert_allclose(other, reference, rtol=1e-3, atol=1e-4 * reference.max())


def test_relevance_mass_is_the_share_inside_the_region():
    """Break: dividing by the region's area instead of the map's total."""
    maps = np.array([[[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]], [[3.0, -5.0], [1.0, 0.0]]])
    left = np.zeros((3, 4, 4))
    left[:, :, :2] = 1
    share = relevance_mass(maps, left)
    assert share[0] == pytest.approx(0.5)
    assert np.isnan(share[1])  # nothing raised the score: no share
    assert 0.5 < share[2] <= 1.0  # the negative right half does not count
    constant = upsample(np.ones((1, 2, 2)), 8)
    assert constant.shape == (1, 8, 8) and np.allclose(constant, 1)


def test_a_region_is_squashed_as_the_images_are():
    """Break: nearest-neighbour squashing that keeps no share of a boundary pixel."""
    mask = np.zeros((128, 64), np.uint8)
    mask[:, :32] = 255
    region = region_at(mask, 32)
    assert region.shape == (32, 32)
    assert region[:, :16].min() == pytest.approx(1.0) and region[:, 16:].max() == pytest.approx(0.0)
    odd = region_at(np.pad(np.full((3, 3), 255, np.uint8), ((0, 5), (0, 5))), 4)
    assert 0 < odd[1, 1] < 1


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_names_a_spatial_gradcam_layer(name):
    """Break: a backbone entry naming a layer its base lacks, or one pooled to 1 x 1 at 224 px."""
    from crowdskin.explain.gradcam import find_layer
    from crowdskin.train.models import build_model

    backbone = BACKBONES[name]
    size = 224
    layer = find_layer(build_model(name, size), backbone.gradcam_layer)
    height, width = tuple(layer.output.shape)[1:3]
    assert height == width and height >= 2, (name, layer.output.shape)
