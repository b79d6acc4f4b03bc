"""Loading and validating workflow configuration.

The schema is split by stage: `workflow/schemas/config.schema.yaml` (shipped in the package as
`crowdskin/schemas/`) holds the top level and refers
to one file per stage section (`$ref: automated.schema.yaml`), so each stage owns its own keys.
Validation fills in schema defaults, rejects unknown keys, and checks that every value declared
with `format: existing-path` names a file or directory that exists.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

# The package's own data, found beside this module so that an installed wheel reads its copies and a
# checkout (or an editable install) the files being edited. In the checkout `schemas` and `configs`
# are symlinks, `schemas -> ../../workflow/schemas` and `configs -> ../../config`: the schemas stay in
# workflow/schemas/ (where the Snakemake workflow catalog expects them and where they are edited) and
# the configs in config/ (which `snakedeploy deploy-workflow` copies for a user), one copy each, while
# the wheel's build follows the links and ships the files (package-data in pyproject.toml).
PACKAGE_DIR = Path(__file__).parent
SCHEMA_DIR = PACKAGE_DIR / "schemas"
CONFIG_DIR = PACKAGE_DIR / "configs"
MAIN_SCHEMA = "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key and the config file."""


def _load_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _registry_names() -> dict[str, list[str]]:
    """What `x-registry: NAME` in a schema stands for: the names the package registers."""
    from crowdskin.train.backbones import BACKBONES

    return {"backbones": sorted(BACKBONES)}


def _with_registry_enums(node: Any, names: Mapping[str, list[str]]) -> Any:
    """Each `{x-registry: NAME}` of a schema gets `enum`: the registry's names, so that adding a
    backbone is an entry of its registry and nothing in the schemas."""
    if isinstance(node, dict):
        node = {key: _with_registry_enums(value, names) for key, value in node.items()}
        if "x-registry" in node:
            node["enum"] = list(names[node["x-registry"]])
        return node
    if isinstance(node, list):
        return [_with_registry_enums(value, names) for value in node]
    return node


def _registry(schema_dir: Path) -> Registry:
    resources = []
    names = _registry_names()
    for path in sorted(schema_dir.glob("*.schema.yaml")):
        contents = _with_registry_enums(_load_yaml(path), names)
        # No `$schema` in the sub-schemas: jsonschema would switch to the plain validator class
        # there and stop filling in defaults.
        contents.pop("$schema", None)
        resources.append((path.name, Resource(contents, specification=DRAFT202012)))
    return Registry().with_resources(resources)


_format_checker = jsonschema.FormatChecker()


@_format_checker.checks("existing-path", raises=FileNotFoundError)
def _existing_path(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not Path(value).exists():
        raise FileNotFoundError(f"no such file or directory: {value}")
    return True


def with_defaults(validator_class: type) -> type:
    """A validator that also writes each property's `default` into the instance (as Snakemake's)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # type: ignore[no-untyped-def]
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate_config(
    config: Mapping[str, Any], *, source: str = "config", schema_dir: Path = SCHEMA_DIR
) -> dict[str, Any]:
    """Return a validated copy of `config` with defaults filled in.

    Raises ConfigError naming the offending key (and `source`, the config file) on an unknown key,
    a wrong type, or a path that does not exist.
    """
    registry = _registry(schema_dir)
    schema = registry.contents(MAIN_SCHEMA)
    validator_class = with_defaults(jsonschema.Draft202012Validator)
    instance = copy.deepcopy(dict(config))
    validator = validator_class(schema, registry=registry, format_checker=_format_checker)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{source}: invalid configuration"]
        for error in errors:
            detail = f" ({error.cause})" if error.cause else ""
            lines.append(f"  - at '{_where(error)}': {error.message}{detail}")
        raise ConfigError("\n".join(lines))
    return instance


def section(name: str, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One section (`crowd`, `train`, ...) validated with every schema default filled in.

    The schemas are the only home of defaults; package code and tests that need a section's
    settings outside a workflow run get them here rather than writing defaults of their own.
    """
    return validate_config({name: dict(values or {})}, source=f"{name} section")[name]


def packaged_config(name: str) -> Path:
    """One of the project's config files (config/<name>: `config.yaml`, `paper.yaml`,
    `real-sample.yaml`, ...) as shipped in the package, for code that reads one outside a workflow
    run (benchmarks) and must work from an installed wheel as from a checkout."""
    path = CONFIG_DIR / name
    if not path.is_file():
        known = sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no config {name!r} in the package ({CONFIG_DIR}); it has {known}")
    return path


def load_config(*paths: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge YAML files (later ones win, as `snakemake --configfile a b`) and validate."""
    merged: dict[str, Any] = {}
    for path in paths:
        deep_update(merged, _load_yaml(Path(path)) or {})
    if overrides:
        deep_update(merged, dict(overrides))
    return validate_config(merged, source=", ".join(str(p) for p in paths) or "config")


def deep_update(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict update, as Snakemake merges config files."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base
