"""The split/train sections of the config with every schema default filled in.

Rules and scripts read settings through here rather than `config["train"][key]`, so a section
written as `train: {}` still gets every default, whatever the top-level validation did with it.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from crowdskin.config import SCHEMA_DIR, ConfigError, with_defaults


@cache
def _validator(section: str) -> Any:
    with open(Path(SCHEMA_DIR) / f"{section}.schema.yaml", encoding="utf-8") as fh:
        schema = yaml.safe_load(fh)
    schema.pop("$schema", None)
    return with_defaults(jsonschema.Draft202012Validator)(schema)


def section(config: dict[str, Any], name: str) -> dict[str, Any]:
    """`config[name]` (split or train) validated against its schema, defaults filled in."""
    instance = copy.deepcopy(config.get(name) or {})
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        where = lambda e: ".".join([name, *map(str, e.absolute_path)])  # noqa: E731
        raise ConfigError("\n".join(f"at '{where(e)}': {e.message}" for e in errors))
    return instance


def split_seed(config: dict[str, Any]) -> int:
    seed = section(config, "split")["seed"]
    return int(config.get("seed", 42) if seed is None else seed)
