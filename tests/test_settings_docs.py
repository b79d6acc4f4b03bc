"""Every setting documented from one source: each schema property has a description, and
docs/usage.md is what the generator makes of the schemas."""

from __future__ import annotations

from pathlib import Path

import pytest

from crowdskin.config import SCHEMA_DIR
from crowdskin.settings_docs import REGENERATE, settings, undescribed, usage_markdown

SCHEMA_FILES = sorted(path.name for path in SCHEMA_DIR.glob("*.schema.yaml"))


@pytest.mark.parametrize("schema_file", SCHEMA_FILES)
def test_every_setting_has_a_description(schema_file):
    """Nested objects, the objects of a list (`url_lists[].name`) and properties that `$ref` a
    `$defs` entry included (the entry's description counts for them)."""
    missing = [line for line in undescribed(SCHEMA_DIR) if line.startswith(f"{schema_file}: ")]
    assert not missing, "properties without a description:\n  " + "\n  ".join(missing)


def test_the_walk_reaches_nested_list_and_ref_properties(tmp_path: Path):
    """Fails if the description check stops looking inside list items, nested objects or `$ref`s."""
    (tmp_path / "config.schema.yaml").write_text(
        "type: object\n"
        "properties:\n"
        "  stage: {$ref: stage.schema.yaml}\n"
        "  top: {type: integer, description: described}\n")
    (tmp_path / "stage.schema.yaml").write_text(
        "description: the stage\n"
        "$defs:\n"
        "  relpath: {type: string}\n"
        "  described_path: {type: string, description: a path}\n"
        "type: object\n"
        "properties:\n"
        "  entries:\n"
        "    description: a list\n"
        "    type: array\n"
        "    items:\n"
        "      type: object\n"
        "      properties:\n"
        "        dir: {$ref: '#/$defs/relpath'}\n"
        "        csv: {$ref: '#/$defs/described_path'}\n"
        "        named: {$ref: '#/$defs/relpath', description: its own}\n"
        "  nested:\n"
        "    type: object\n"
        "    properties:\n"
        "      inner: {type: number}\n")
    assert undescribed(tmp_path) == [
        "stage.schema.yaml: entries[].dir", "stage.schema.yaml: nested", "stage.schema.yaml: nested.inner"]
    assert [s.path for s in settings(tmp_path)][:2] == ["stage", "top"]
    assert "stage.entries[].csv" in [s.path for s in settings(tmp_path)]


def test_usage_md_is_generated_from_the_schemas(repo):
    usage = repo / "docs" / "usage.md"
    assert usage.read_text(encoding="utf-8") == usage_markdown(SCHEMA_DIR), (
        f"docs/usage.md is not what the schemas say: regenerate it with `{REGENERATE}`")


def test_usage_md_lists_every_setting_with_its_default():
    text = usage_markdown(SCHEMA_DIR)
    for setting in settings(SCHEMA_DIR):
        assert f"| `{setting.path}` |" in text
    assert "| `train.backbones` | list of one of " in text and "`smallcnn`" in text  # the registry's names
    assert "| `crowd.mturk.first_hit_min_s` | number (>= 0) | `60` |" in text


def test_the_generator_answers_help_and_writes_no_file_named_after_it(tmp_path, monkeypatch, capsys):
    """Catches a command line read as a bare path: `--help` once wrote the page to a file of that
    name in the checkout."""
    from crowdskin.settings_docs import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and "the file to write" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    assert main([str(tmp_path / "usage.md")]) == 0
    assert (tmp_path / "usage.md").read_text(encoding="utf-8") == usage_markdown(SCHEMA_DIR)
