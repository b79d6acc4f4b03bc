"""Loading and validating workflow configuration.

The schema is split by stage: `workflow/schemas/config.schema.yaml` (shipped in the package as
`crowdskin/schemas/`) holds the top level and refers
to one file per stage section (`$ref: automated.schema.yaml`), so each stage owns its own keys.
Validation fills in schema defaults, rejects unknown keys, and checks that every value declared
with `format: existing-path` names a file or directory that exists.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
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


# One source of settings, in the order they are merged (later ones win): where they come from, as
# the user would recognise it (a config file, "--config on the command line"), and its values.
ConfigLayer = tuple[str, Mapping[str, Any]]
# A problem found in a config: the key (a path into the merged config) and what is wrong.
Problem = tuple[tuple[str | int, ...], str]

# A number in exponent form that YAML 1.1 (PyYAML, Snakemake) reads as a string: it takes a float
# only with a dot in the mantissa and a sign in the exponent (`1.0e-3`, not `1e-3` nor `1.0e3`).
_EXPONENT_NUMBER = re.compile(r"^([-+]?)(\d+)(?:\.(\d*))?[eE]([-+]?)(\d+)$")


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


def _dotted(path: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def yaml_number_spelling(text: str, types: Sequence[str]) -> str | None:
    """How to write `text`, a number in exponent form that YAML read as a string, so that YAML reads
    it as a number of one of the schema's `types`: `1e-3` -> `1.0e-3`, `5E4` -> `5.0e+4`, and for an
    integer-only setting its digits (`2e10` -> `20000000000`). None for any other text."""
    match = _EXPONENT_NUMBER.match(text.strip())
    if not match:
        return None
    sign, whole, fraction, exponent_sign, exponent = match.groups()
    if "number" in types:
        return f"{sign}{whole}.{fraction or '0'}e{exponent_sign or '+'}{exponent}"
    value = Decimal(text.strip())
    if "integer" in types and value == value.to_integral_value():
        return str(int(value))
    return None


def _lookup(values: Any, path: Sequence[str | int]) -> tuple[bool, Any]:
    for part in path:
        held = (part in values) if isinstance(values, Mapping) else (
            isinstance(values, list) and isinstance(part, int) and 0 <= part < len(values))
        if not held:
            return False, None
        values = values[part]
    return True, values


def _origin(path: Sequence[str | int], merged: Mapping[str, Any], layers: Sequence[ConfigLayer]) -> str | None:
    """The layer whose value is the merged one at `path`: the last to set it. A value that no layer
    holds as merged (set by a workflow that includes this one as a module, or filled in from the
    schema) has none rather than a wrong one."""
    found, value = _lookup(merged, path)
    for name, layer in reversed(layers):
        held, layer_value = _lookup(layer, path)
        # A section (a mapping) is merged key by key from every layer: the last to name it is
        # where to look; a value or a list is replaced whole, so the layer holds it as merged.
        if held and (isinstance(layer_value, Mapping) or (found and layer_value == value)):
            return name
    return None


def _schema_problems(error: jsonschema.ValidationError) -> list[Problem]:
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        known = list(error.schema.get("properties", {}))
        problems = []
        for key in error.instance:
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; {_dotted(path)} takes {known}"
            problems.append(((*path, key), f"unknown key {key!r}{hint}"))
        if problems:
            return problems
    message = error.message + (f" ({error.cause})" if error.cause else "")
    if error.validator == "type" and isinstance(error.instance, str):
        types = [error.validator_value] if isinstance(error.validator_value, str) else list(error.validator_value)
        spelling = yaml_number_spelling(error.instance, types)
        if spelling is not None:
            message += (f": YAML reads {error.instance} as text (a number in exponent form needs a dot "
                        f"and a signed exponent); write {spelling}")
    return [(path, message)]


def _reserved_run_names() -> dict[str, str]:
    """Folders of results/ beside the run folders (results/<run_name>/), which a run must not take."""
    from crowdskin.train.tracking import DEFAULT_DB

    return {DEFAULT_DB.parent.name: f"{DEFAULT_DB.parent.as_posix()}/ holds the MLflow store that every run shares"}


def _run_problems(config: Mapping[str, Any], layers: Sequence[ConfigLayer]) -> list[Problem]:
    """What the schema cannot say: names that collide, and settings that cannot work together."""
    problems: list[Problem] = []
    run_name = str(config["run_name"])
    for reserved, why in _reserved_run_names().items():
        # casefold: on a case-insensitive file system `MLflow` is the same folder
        if run_name.casefold() == reserved.casefold():
            problems.append((("run_name",), f"{run_name!r} is reserved: {why}; choose another run_name"))
    synthetic, split = config["synthetic"], config["split"]
    if synthetic["enabled"]:
        problems += _synthetic_fold_problems(synthetic, split, int(config["seed"]), config, layers)
    return problems


def _synthetic_fold_problems(
    synthetic: Mapping[str, Any], split: Mapping[str, Any], seed: int,
    merged: Mapping[str, Any], layers: Sequence[ConfigLayer],
) -> list[Problem]:
    """The generator's lesions are known from its settings, so folds too few of them cannot fill
    stop the run at start-up rather than at the split stage after the data is drawn."""
    from crowdskin.synthetic import abnormal_count
    from crowdskin.train.splits import SplitError, check_fold_counts

    def fold_check(n_images: int) -> None:
        check_fold_counts(
            n_images, abnormal_count(n_images, synthetic["abnormal_fraction"], seed), scheme=split["scheme"],
            n_folds=split["n_folds"], min_positives_per_fold=split["min_positives_per_fold"])

    try:
        fold_check(synthetic["n_images"])
    except SplitError as error:
        # The fewest lesions that would do, where a few times more would.
        enough = next((n for n in range(synthetic["n_images"] + 1, 20 * synthetic["n_images"] + 1000)
                       if _passes(fold_check, n)), None)
        more = f"; or set synthetic.n_images: {enough} or more" if enough else ""
        folds_origin = _origin(("split", "n_folds"), merged, layers)
        where = f", set in {folds_origin}" if folds_origin else ""
        return [(("synthetic", "n_images"),
                 f"too few lesions for the folds (split.n_folds: {split['n_folds']}{where}); the synthetic data "
                 f"(n_images: {synthetic['n_images']}, abnormal_fraction: {synthetic['abnormal_fraction']}) "
                 f"draws {error}{more}")]
    return []


def _passes(check: Any, value: int) -> bool:
    from crowdskin.train.splits import SplitError

    try:
        check(value)
    except SplitError:
        return False
    return True


def validate_config(
    config: Mapping[str, Any], *, source: str = "config", layers: Sequence[ConfigLayer] = (),
    run_checks: bool = True, schema_dir: Path = SCHEMA_DIR,
) -> dict[str, Any]:
    """Return a validated copy of `config` with defaults filled in.

    Raises ConfigError naming each offending key, and where `layers` (the sources merged into
    `config`, in merge order) are given, the one that set it; `source` names them all. Refused: an
    unknown key, a wrong type (with the spelling YAML reads as a number, where it read one as text),
    a path that does not exist, and where `run_checks` (the config of a whole run) a reserved
    run_name and synthetic data too small for its folds.
    """
    registry = _registry(schema_dir)
    schema = registry.contents(MAIN_SCHEMA)
    validator_class = with_defaults(jsonschema.Draft202012Validator)
    instance = copy.deepcopy(dict(config))
    validator = validator_class(schema, registry=registry, format_checker=_format_checker)
    problems = [problem for error in validator.iter_errors(instance) for problem in _schema_problems(error)]
    if not problems and run_checks:
        problems = _run_problems(instance, layers)
    if problems:
        lines = [f"{source}: invalid configuration"]
        for path, message in sorted(problems, key=lambda problem: [str(p) for p in problem[0]]):
            origin = _origin(path, config, layers)
            lines.append(f"  - at '{_dotted(path)}'{f' (set in {origin})' if origin else ''}: {message}")
        raise ConfigError("\n".join(lines))
    return instance


def section(name: str, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One section (`crowd`, `train`, ...) validated with every schema default filled in.

    The schemas are the only home of defaults; package code and tests that need a section's
    settings outside a workflow run get them here rather than writing defaults of their own.
    """
    return validate_config({name: dict(values or {})}, source=f"{name} section", run_checks=False)[name]


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
    layers: list[ConfigLayer] = [(str(path), _load_yaml(Path(path)) or {}) for path in paths]
    if overrides:
        layers.append(("the overrides", dict(overrides)))
    merged: dict[str, Any] = {}
    for _, values in layers:
        deep_update(merged, values)
    return validate_config(merged, source=", ".join(str(p) for p in paths) or "config", layers=layers)


def deep_update(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict update, as Snakemake merges config files."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base
