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

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "crowd.schema.yaml"


def _fill_defaults(validator_class: type) -> type:
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # type: ignore[no-untyped-def]
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def crowd_settings(section: Mapping[str, Any] | None = None, *, schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Validated copy of the ``crowd:`` section with defaults; raises ValueError naming the key."""
    with open(schema_path, encoding="utf-8") as fh:
        schema = yaml.safe_load(fh)
    schema.pop("$schema", None)
    instance = copy.deepcopy(dict(section or {}))
    validator = _fill_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        where = lambda e: "crowd." + ".".join(str(p) for p in e.absolute_path)  # noqa: E731
        raise ValueError("invalid crowd configuration:\n" + "\n".join(f"  - at '{where(e)}': {e.message}" for e in errors))
    return instance
