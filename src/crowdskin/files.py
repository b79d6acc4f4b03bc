"""File operations shared by stages: atomic, and never a second copy where a link will do."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path


def link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link when possible (no second copy of a large file), else copy; atomic either way."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def unwritable_reason(directory: str | Path) -> str | None:
    """Why no file can be created under `directory` (or where it would be created), or None.

    Checked by creating and removing a temporary file in it or, where it does not exist yet, in its
    nearest existing parent: permission bits alone would say yes to root on a read-only mount.
    """
    existing = Path(directory)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return f"{existing}: {error.strerror or error}"
    return None
