"""File operations shared by stages: atomic, and never a second copy where a link will do."""

from __future__ import annotations

import os
import shutil
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
