"""The dataset manifest (workflow/manifest.yaml): where each raw source comes from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ARCHIVE_TYPES = ("none", "zip", "tar", "tar.gz", "rar")


@dataclass(frozen=True)
class Member:
    """Archive members whose path matches `pattern` are written to `dest`/<`to` with groups>."""

    pattern: str
    to: str

    def target(self, member_name: str) -> str | None:
        match = re.fullmatch(self.pattern, member_name)
        return match.expand(self.to) if match else None


@dataclass(frozen=True)
class Source:
    name: str
    dest: str  # folder or file under resources/raw, the mirror layout
    description: str = ""
    url: str | None = None
    sha256: str | None = None
    archive: str = "none"
    members: tuple[Member, ...] = ()
    checksums: str | None = None  # per-file list, relative to dest, for mirror verification
    licence: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_file(self) -> bool:
        """A single file (dest is that file) rather than a folder of files (which has a checksum list or an archive)."""
        return self.archive == "none" and not self.members and self.checksums is None


def load_manifest(path: str | Path) -> dict[str, Source]:
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    sources: dict[str, Source] = {}
    for name, entry in raw.get("sources", {}).items():
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: source {name}: expected a mapping of fields, got {entry!r}")
        entry = dict(entry)
        archive = str(entry.pop("archive", "none"))
        if archive not in ARCHIVE_TYPES:
            raise ValueError(f"{path}: source {name}: archive must be one of {ARCHIVE_TYPES}, got {archive!r}")
        members = []
        for i, m in enumerate(entry.pop("members", []) or [], start=1):
            if not isinstance(m, dict) or not {"pattern", "to"} <= m.keys():
                raise ValueError(f"{path}: source {name}: member {i} must be a mapping with 'pattern' and 'to', "
                                 f"got {m!r}")
            members.append(Member(m["pattern"], m["to"]))
        known = {k: entry.pop(k) for k in ("dest", "description", "url", "sha256", "checksums", "licence")
                 if k in entry}
        if "dest" not in known:
            raise ValueError(f"{path}: source {name}: missing 'dest'")
        sources[name] = Source(name=name, archive=archive, members=tuple(members), extra=entry, **known)
    return sources
