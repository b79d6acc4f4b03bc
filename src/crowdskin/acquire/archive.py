"""Safe archive extraction.

Refuses entries that would land outside the destination (`../`, absolute paths, links), caps the
total decompressed size while streaming (headers can lie), and caps image sizes in pixels, so a
hostile or broken archive cannot fill the disk or exhaust memory downstream; every image is
decoded in full before it is kept.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from crowdskin.acquire.manifest import Member
from crowdskin.pixels import ImageRefusedError, decode_check

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
_CHUNK = 1 << 20


class UnsafeArchiveError(ValueError):
    """The archive has an entry that must not be extracted; the message names archive and entry."""


def checked_member_path(archive: str | Path, name: str) -> PurePosixPath:
    """The member's relative path, or UnsafeArchiveError for absolute or escaping paths."""
    normalised = name.replace("\\", "/")
    path = PurePosixPath(normalised)
    if path.is_absolute() or (len(normalised) > 1 and normalised[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: entry {name!r} has an absolute path")
    if ".." in path.parts:
        raise UnsafeArchiveError(f"{archive}: entry {name!r} points outside the destination ('..')")
    return path


def _target_name(name: str, members: Sequence[Member]) -> str | None:
    if not members:
        return name
    for member in members:
        target = member.target(name)
        if target is not None:
            return target
    return None


class _Budget:
    def __init__(self, archive: str | Path, max_bytes: int) -> None:
        self.archive, self.max_bytes, self.used = archive, max_bytes, 0

    def take(self, n: int, entry: str) -> None:
        self.used += n
        if self.used > self.max_bytes:
            raise UnsafeArchiveError(
                f"{self.archive}: decompressed size exceeds the cap of {self.max_bytes} bytes at entry {entry!r}"
            )


def _write_stream(src: IO[bytes], dest: Path, budget: _Budget, entry: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(_CHUNK):
                budget.take(len(chunk), entry)
                out.write(chunk)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_image_pixels(path: Path, max_pixels: int, archive: str | Path = "") -> None:
    """Decode an image file in full before it is accepted (header and pixels, within the cap);
    one that is empty, not an image, truncated or too large is deleted and refused, naming it."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return
    try:
        decode_check(path, max_pixels)
    except ImageRefusedError as error:
        path.unlink(missing_ok=True)
        raise UnsafeArchiveError(f"{archive}: {error}") from None


@contextmanager
def _rar_as_tree(archive: Path) -> Iterator[Path]:
    tool = shutil.which("bsdtar")
    if tool is None:
        raise RuntimeError(f"{archive}: extracting RAR archives needs bsdtar "
                           "(Debian: apt-get install libarchive-tools)")
    names = subprocess.run([tool, "-tf", str(archive)], check=True, capture_output=True, text=True).stdout
    for name in names.splitlines():
        checked_member_path(archive, name)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([tool, "-xf", str(archive), "-C", tmp], check=True, capture_output=True)
        yield Path(tmp)


def safe_extract(
    archive: str | Path,
    dest: str | Path,
    *,
    kind: str,
    members: Sequence[Member] = (),
    max_bytes: int = 20 * 10**9,
    max_image_pixels: int = 10**8,
) -> list[str]:
    """Extract `archive` (zip, tar, tar.gz, rar) into `dest`; returns the written paths relative to dest.

    With `members`, only matching entries are written, renamed by the first matching rule.
    Each file is written under a temporary name and renamed, so `dest` never holds half files.
    """
    archive, dest = Path(archive), Path(dest)
    budget = _Budget(archive, max_bytes)
    written: list[str] = []

    def place(name: str, opener) -> None:  # type: ignore[no-untyped-def]
        relative = checked_member_path(archive, name)
        target = _target_name(str(relative), members)
        if target is None:
            return
        target_path = checked_member_path(archive, target)
        out = dest / target_path
        with opener() as src:
            _write_stream(src, out, budget, name)
        check_image_pixels(out, max_image_pixels, archive)
        written.append(str(target_path))

    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                checked_member_path(archive, info.filename)
                if info.is_dir():
                    continue
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UnsafeArchiveError(f"{archive}: entry {info.filename!r} is a symbolic link")
                place(info.filename, lambda info=info: zf.open(info))
    elif kind in ("tar", "tar.gz"):
        with tarfile.open(archive, "r:*") as tf:
            for info in tf.getmembers():
                checked_member_path(archive, info.name)
                if info.isdir():
                    continue
                if not info.isfile():
                    raise UnsafeArchiveError(f"{archive}: entry {info.name!r} is a link or device, not a file")
                place(info.name, lambda info=info: tf.extractfile(info))
    elif kind == "rar":
        with _rar_as_tree(archive) as tree:
            for path in sorted(p for p in tree.rglob("*") if p.is_file() and not p.is_symlink()):
                place(path.relative_to(tree).as_posix(),
                      lambda path=path: open(path, "rb"))  # noqa: SIM115 - an opener: place() closes it in a with
    else:
        raise ValueError(f"{archive}: unknown archive type {kind!r}")
    return written
