"""docs/reliability.md names, for each bad input and fault, the test that holds it: every such
test must exist, so that a renamed or deleted test cannot leave the table pointing at nothing."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reliability.md"
# `tests/x.py::name` sets the file; a later `::name` or `name` on the same row means that file.
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`|`::(\w+)`|`(test_\w+)`")


def _test_cells() -> list[str]:
    """Each table row's last cell, where its tests are named ("same": the row above's)."""
    cells = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("| ") and not line.startswith(("| ---", "| bad input")):
            cells.append(line.rstrip().rstrip("|").rsplit("|", 1)[-1].strip())
    return cells


def _defined(name: str, files: list[Path]) -> bool:
    return any(re.search(rf"^\s*def {name}\b", f.read_text(encoding="utf-8"), re.M) for f in files)


def test_every_row_names_a_test_that_exists() -> None:
    every_test_file = sorted((REPO / "tests").glob("test_*.py"))
    missing, untested = [], []
    cells = _test_cells()
    for cell in cells:
        if cell.startswith("same"):
            continue
        references, current = 0, None
        for match in REFERENCE.finditer(cell):
            file, name, same_file_name, bare_name = match.groups()
            if file:
                current = REPO / file
                references += 1
                if not current.is_file():
                    missing.append(file)
            name = name or same_file_name or bare_name
            if name:
                references += 1
                files = [current] if current is not None and current.is_file() else every_test_file
                if not _defined(name, files):
                    missing.append(f"{current.relative_to(REPO) if current else 'tests/*'}::{name}")
        if not references:
            untested.append(cell)
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"
    assert not untested, f"docs/reliability.md rows without a test: {untested}"
    assert len(cells) >= 40
