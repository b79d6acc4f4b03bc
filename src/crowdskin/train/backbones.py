"""The backbones a job can train: one `Backbone` entry in `BACKBONES` per name.

An entry holds everything the workflow knows about a backbone: how to build it, how its ImageNet
weights expect pixels, the smallest input it accepts and the ImageNet weights file. Adding a
backbone is adding an entry; `tests/test_train.py` fails until the config schema's backbone enums
(`workflow/schemas/train.schema.yaml`) list the same names.

This module never imports keras: `common.smk`, `tasks` and `weights` read it while Snakemake
builds the DAG, where importing keras and its backend would cost seconds. Builder and
preprocessing are therefore dotted import paths, imported on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class Backbone:
    """One backbone. `builder` has keras.applications' signature (`include_top`, `weights`,
    `input_shape`) and returns the convolutional base; `preprocessing` maps 0-255 pixels to what
    the backbone's ImageNet weights expect (`train.preprocess: backbone`)."""

    name: str
    builder: str  # dotted path, e.g. "keras.applications.VGG16"
    preprocessing: str  # dotted path, e.g. "keras.applications.vgg16.preprocess_input"
    min_input_size: int  # the smallest square side the builder accepts with include_top=False
    # Grad-CAM's target: the last convolutional feature map, whose resolution the maps have
    # (crowdskin.explain); a layer of the base, found at any depth of the trained model.
    gradcam_layer: str
    imagenet_file: str | None = None  # the include_top=False file, as keras.applications names it
    imagenet_folder: str | None = None  # the URL keras.applications downloads it from, less the file name
    builder_options: tuple[tuple[str, Any], ...] = ()  # extra keyword arguments of the builder

    @property
    def imagenet_url(self) -> str | None:
        return f"{self.imagenet_folder}{self.imagenet_file}" if self.imagenet_file and self.imagenet_folder else None

    def build(self, input_size: int, weights: str | Path | None = None) -> Any:
        """The convolutional base (a keras.Model) for square `input_size` inputs; imports keras."""
        return _resolve(self.builder)(include_top=False, weights=str(weights) if weights else None,
                                      input_shape=(input_size, input_size, 3), **dict(self.builder_options))

    def preprocess(self, images: Any) -> Any:
        """0-255 images as the ImageNet weights expect them; imports keras."""
        return _resolve(self.preprocessing)(images)


@cache
def _resolve(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _keras_application(name: str, builder: str, module: str, min_input_size: int, gradcam_layer: str,
                       imagenet_file: str, folder: str) -> Backbone:
    """A keras.applications base with its module's own preprocess_input."""
    return Backbone(name, f"keras.applications.{builder}", f"keras.applications.{module}.preprocess_input",
                    min_input_size, gradcam_layer, imagenet_file, f"{KERAS_APPLICATIONS_URL}{folder}/")


# Minimum input sizes are the `min_size` each keras.applications builder passes to
# imagenet_utils.obtain_input_shape; smaller inputs are refused by Keras itself.
BACKBONES: dict[str, Backbone] = {
    backbone.name: backbone
    for backbone in (
        # Three convolution blocks that learn the synthetic default in seconds on a CPU
        # (crowdskin.train.models.small_cnn); three 2x2 poolings leave 2 px of a 16 px input.
        Backbone("smallcnn", "crowdskin.train.models.small_cnn", "crowdskin.train.models.scale_to_unit", 16,
                 "block3_conv"),
        # The study's three.
        _keras_application("vgg16", "VGG16", "vgg16", 32, "block5_conv3",
                           "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg16"),
        _keras_application("resnet50", "ResNet50", "resnet50", 32, "conv5_block3_out",
                           "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "resnet"),
        _keras_application("inceptionv3", "InceptionV3", "inception_v3", 75, "mixed10",
                           "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", "inception_v3"),
        # Two that recent dermatology work uses.
        _keras_application("densenet121", "DenseNet121", "densenet", 32, "relu",
                           "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5", "densenet"),
        # EfficientNetV2 normalises inside the model by default (include_preprocessing=True: x / 255,
        # then ImageNet's mean and sd), so its preprocess_input does nothing. Left on, a base behind
        # `train.preprocess: rescale` would divide by 255 twice. Built without it, the base takes
        # what every other backbone takes: x / 255 with `rescale` (the study's), or with `backbone`
        # the same normalisation its weights were trained with (models.imagenet_standardize). Those
        # two layers hold no weights, so the ImageNet file loads into the base without them.
        Backbone("efficientnetv2b0", "keras.applications.EfficientNetV2B0",
                 "crowdskin.train.models.imagenet_standardize", 32, "top_activation", "efficientnetv2-b0_notop.h5",
                 f"{KERAS_APPLICATIONS_URL}efficientnet_v2/", (("include_preprocessing", False),)),
    )
}
