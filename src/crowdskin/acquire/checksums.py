"""SHA-256 helpers and `sha256sum`-format checksum lists."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_checksum_list(path: str | Path) -> dict[str, str]:
    """Parse `<sha256>  <relative path>` lines (the output of `sha256sum`)."""
    entries: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            raise ValueError(f"{path}: line {number}: expected '<sha256>  <path>', got {line!r}")
        entries[name.strip()] = digest.lower()
    return entries


def write_checksum_list(root: str | Path, files: list[str], path: str | Path) -> None:
    root = Path(root)
    lines = [f"{sha256_file(root / name)}  {name}" for name in sorted(files)]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
