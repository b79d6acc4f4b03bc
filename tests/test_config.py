"""Config validation: defaults, unknown keys, wrong types and missing paths are caught at start-up."""

from __future__ import annotations

import pytest
import yaml

from crowdskin.config import ConfigError, load_config, validate_config


@pytest.mark.parametrize("name", ["config.yaml", "real-sample.yaml", "paper.yaml"])
def test_shipped_configs_validate(repo, name, request):
    """Only real-sample.yaml needs ../shared (its mirror must exist), so only it skips without it.
    Fails if the schema stops filling in download.retries."""
    overrides = {"mirror": str(request.getfixturevalue("shared_data"))} if name == "real-sample.yaml" else None
    config = load_config(repo / "config" / "config.yaml", repo / "config" / name, overrides=overrides)
    assert config["synthetic"]["n_images"] >= 8
    assert config["download"]["retries"] == 4  # filled in from the schema's default


def test_default_config_fills_nested_defaults(repo):
    config = validate_config(yaml.safe_load((repo / "config" / "config.yaml").read_text()))
    assert config["synthetic"]["mturk"]["n_workers"] == 12
    assert config["mirror"] is None


def test_unknown_key_is_named(repo):
    with pytest.raises(ConfigError, match=r"synthetic.*'n_imgs'"):
        validate_config({"synthetic": {"n_imgs": 3}}, source="my.yaml")


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"at 'synthetic.n_images'.*not of type 'integer'"):
        validate_config({"synthetic": {"n_images": "many"}})


def test_missing_path_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=rf"at 'mirror'.*no such file or directory: {missing}"):
        validate_config({"mirror": str(missing)})


def test_error_names_the_config_file():
    with pytest.raises(ConfigError, match="^experiment.yaml: invalid configuration"):
        validate_config({"seed": "x"}, source="experiment.yaml")
