"""The crowd section of the configuration, with every default of crowd.schema.yaml filled in.

`crowdskin.config.validate_config` validates the whole configuration at start-up; this helper
re-applies the crowd schema's defaults to the section alone so that the stage's code does not
depend on how defaults propagate through the `$ref` of the top-level schema, and so that tests
and the CLI get the same values as a workflow run.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from crowdskin.config import SCHEMA_DIR, with_defaults

SCHEMA_PATH = SCHEMA_DIR / "crowd.schema.yaml"


def crowd_settings(section: Mapping[str, Any] | None = None, *, schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Validated copy of the ``crowd:`` section with defaults; raises ValueError naming the key."""
    with open(schema_path, encoding="utf-8") as fh:
        schema = yaml.safe_load(fh)
    schema.pop("$schema", None)
    instance = copy.deepcopy(dict(section or {}))
    validator = with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        where = lambda e: "crowd." + ".".join(str(p) for p in e.absolute_path)  # noqa: E731
        raise ValueError("invalid crowd configuration:\n" + "\n".join(f"  - at '{where(e)}': {e.message}" for e in errors))
    return instance
