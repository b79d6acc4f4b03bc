"""Pretrained weights: `none`, `imagenet` (a local file, never downloaded), or a file path.

`imagenet` is resolved to the file keras.applications would download, looked up in the Keras cache
(or `execution.train.weights_dir`); when it is absent the job stops at once with the file name, the place to
put it and its URL. There is no silent fallback to random weights.
"""

from __future__ import annotations

import os
from pathlib import Path

from crowdskin.train.backbones import BACKBONES


class WeightsError(FileNotFoundError):
    """The configured weights are not on disk; the message says which file to put where."""


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def resolve_weights(spec: str, backbone: str, weights_dir: str | Path | None = None) -> Path | None:
    """The weights file to load into the base, or None for random initialisation (`none`)."""
    if spec == "none":
        return None
    if spec == "imagenet":
        entry = BACKBONES[backbone]
        if entry.imagenet_file is None:
            raise WeightsError(f"no ImageNet weights known for backbone {backbone!r}")
        name = entry.imagenet_file
        directory = Path(weights_dir) if weights_dir else keras_cache_dir()
        path = directory / name
        if not path.is_file():
            raise WeightsError(
                f"train.weights is 'imagenet' but {path} does not exist. Put {name} (from {entry.imagenet_url}) "
                f"into {directory}, or set execution.train.weights_dir to the directory that has it, or use "
                f"train.weights: none for random initialisation. Jobs never download weights."
            )
        return path
    path = Path(spec)
    if not path.is_file():
        raise WeightsError(f"train.weights names {path}, which does not exist (backbone {backbone})")
    return path
