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


def _write(path, text):
    path.write_text(text)
    return path


def _error_line(message: str, key: str) -> str:
    return next(line for line in message.splitlines() if f"'{key}'" in line)


def test_each_bad_value_names_the_layer_that_set_it(tmp_path):
    """Three layers set values; each error names the one whose value won (later files and the
    overrides win), not the list of every file given."""
    base = _write(tmp_path / "base.yaml", "seed: 1\nsynthetic: {n_images: 40, image_size: 64}\n")
    mine = _write(tmp_path / "mine.yaml", "synthetic: {n_images: many}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(base, mine, overrides={"synthetic": {"image_size": "big"}, "seed": "x"})
    message = str(caught.value)
    assert f"(set in {mine})" in _error_line(message, "synthetic.n_images")
    assert "(set in the overrides)" in _error_line(message, "synthetic.image_size")
    assert "(set in the overrides)" in _error_line(message, "seed")
    assert str(base) not in _error_line(message, "synthetic.n_images")


def test_an_unknown_key_is_named_in_full_with_its_file_and_the_nearest_known_key(tmp_path):
    typo = _write(tmp_path / "typo.yaml", "synthetic: {n_imgs: 3}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(typo)
    line = _error_line(str(caught.value), "synthetic.n_imgs")
    assert f"(set in {typo})" in line and "unknown key" in line and "did you mean 'n_images'" in line


@pytest.mark.parametrize(("written", "spelling"), [("1e-3", "1.0e-3"), ("5E4", "5.0e+4"), ("-2e+5", "-2.0e+5"),
                                                    ("2.5e4", "2.5e+4")])
def test_a_number_yaml_read_as_text_gets_the_spelling_it_reads_as_a_number(tmp_path, written, spelling):
    """YAML 1.1 reads an exponent without a dot and a signed exponent as a string."""
    path = _write(tmp_path / "lr.yaml", f"train: {{learning_rate: {written}}}\n")
    assert isinstance(yaml.safe_load(path.read_text())["train"]["learning_rate"], str)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    line = _error_line(str(caught.value), "train.learning_rate")
    assert f"write {spelling}" in line and f"(set in {path})" in line
    assert yaml.safe_load(spelling) == pytest.approx(float(written))
    if float(written) > 0:  # learning_rate > 0: the negative spelling is checked by YAML alone
        assert load_config(_write(tmp_path / "fixed.yaml", f"train: {{learning_rate: {spelling}}}\n"))


def test_an_integer_yaml_read_as_text_gets_its_digits():
    with pytest.raises(ConfigError, match=r"'download.max_bytes'.*write 20000000000\b"):
        validate_config({"download": {"max_bytes": "2e10"}})


@pytest.mark.parametrize("name", ["mlflow", "MLflow"])
def test_a_run_name_taken_by_a_shared_folder_of_results_is_refused(name):
    with pytest.raises(ConfigError, match=rf"at 'run_name'.*{name}.*reserved.*results/mlflow/"):
        validate_config({"run_name": name})


@pytest.mark.parametrize(("values", "lesions", "positives", "folds"), [
    ({"synthetic": {"n_images": 12}}, 12, 4, 5),
    ({"synthetic": {"n_images": 60}, "split": {"n_folds": 30}}, 60, 21, 30),
])
def test_too_few_synthetic_lesions_for_the_folds_are_refused_before_any_job(values, lesions, positives, folds):
    """The generator's counts are known from its settings: the run stops at start-up with the counts
    and what to change, rather than reporting an AUC of 2-lesion test folds."""
    config = {**values, "synthetic": {"enabled": True, **values["synthetic"]}}
    with pytest.raises(ConfigError) as caught:
        validate_config(config)
    message = str(caught.value)
    assert f"{lesions} lesions ({positives} positive" in message and f"{folds} folds" in message
    assert "split.min_positives_per_fold" in message and "synthetic.n_images" in message


@pytest.mark.parametrize("layers", [
    ["config.yaml"], ["config.yaml", "paper.yaml"], ["config.yaml", "annotators.yaml"],
    ["config.yaml", "shortcut.yaml"], ["config.yaml", "example-study.yaml"],
    ["config.yaml", ".test/config.yaml"], ["config.yaml", ".test/shortcut.yaml"],
    ["config.yaml", "shortcut.yaml", ".test/shortcut.yaml"],
    ["config.yaml", "example-study.yaml", ".test/example-study.yaml"],
])
def test_shipped_configs_pass_the_start_up_checks(repo, layers):
    paths = [repo / name if name.startswith(".test") else repo / "config" / name for name in layers]
    assert load_config(*paths, overrides={"mirror": None})["split"]["min_positives_per_fold"] >= 1


def test_one_section_is_validated_on_its_own_without_the_run_checks():
    """A section read outside a run (the example study's generator) is not refused for the folds of
    a run it is not part of."""
    from crowdskin.config import section

    assert section("synthetic", {"enabled": True, "n_images": 8})["n_images"] == 8
