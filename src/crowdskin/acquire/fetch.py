"""Fetching one manifest source, from the network or from a local mirror.

Every fetched file ends up under `resources/raw/<dest>` (the mirror layout) and in a marker file
(`resources/raw/.fetched/<source>.json`) that records how it was obtained and its checksum; the
marker is what Snakemake tracks, and the download report is the union of the markers.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from crowdskin.acquire.archive import check_image_pixels, safe_extract
from crowdskin.acquire.checksums import read_checksum_list, sha256_file
from crowdskin.acquire.manifest import Source
from crowdskin.files import link_or_copy

REPORT_COLUMNS = ["source", "file", "status", "reason", "bytes", "sha256"]
_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download failed for good (after retries, or with a permanent HTTP error)."""


class RefusedURLError(DownloadError):
    """A URL (or a redirect's target) whose scheme is not allowed: refused before it is opened."""


class ChecksumError(RuntimeError):
    """A file's SHA-256 is not the one the manifest expects; the message names the file."""


@dataclass
class FileRecord:
    source: str
    file: str
    status: str  # verified | unverified | failed
    reason: str = ""
    bytes: int = 0
    sha256: str = ""


@dataclass(frozen=True)
class DownloadSettings:
    """The config's `download` section (defaults in config.schema.yaml)."""

    retries: int
    backoff_s: float
    timeout_s: float
    max_bytes: int
    max_image_pixels: int
    allowed_schemes: tuple[str, ...] = ("http", "https")


def check_scheme(url: str, allowed: Iterable[str], what: str = "URL") -> None:
    """RefusedURLError unless the URL's scheme is in `allowed` (as curl's --proto): a list from a
    stranger must not read local files (file://) or reach other protocols."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    allowed = tuple(s.lower() for s in allowed)
    if scheme not in allowed:
        raise RefusedURLError(f"{what} {url!r}: scheme {scheme!r} is not allowed (allowed: {', '.join(allowed)})")


class _SchemeCheckingRedirects(urllib.request.HTTPRedirectHandler):
    """urllib follows redirects itself; this refuses one to a scheme outside the allow-list before
    it is followed, as a final answer rather than an error worth retrying."""

    def __init__(self, url: str, allowed: tuple[str, ...]) -> None:
        self.url, self.allowed = url, allowed

    def http_error_302(self, req, fp, code, msg, headers):  # type: ignore[no-untyped-def]
        # urllib rejects a redirect to file:// itself, but as an HTTPError with the 3xx code,
        # which reads as transient; the target is checked here first.
        location = headers.get("location") or headers.get("uri")
        if location:
            try:
                check_scheme(urllib.parse.urljoin(req.full_url, location), self.allowed, f"{self.url}: redirect to")
            except RefusedURLError:
                fp.close()
                raise
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def download(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    settings: DownloadSettings,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Download `url` to `dest`; returns the file's SHA-256.

    Resumable: bytes already in `<dest>.part` are kept and the rest asked for with an HTTP Range
    request. Transient failures (connection errors, 5xx, 408, 429) are retried with exponential
    back-off; the file appears under its final name only when complete and verified. A URL, or a
    redirect, whose scheme is not in `settings.allowed_schemes` is refused (RefusedURLError) and
    never retried.
    """
    check_scheme(url, settings.allowed_schemes)
    opener = urllib.request.build_opener(_SchemeCheckingRedirects(url, tuple(settings.allowed_schemes)))
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error: Exception | None = None
    for attempt in range(settings.retries + 1):
        if attempt:
            sleep(settings.backoff_s * 2 ** (attempt - 1))
        have = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": "crowdskin", **({"Range": f"bytes={have}-"} if have else {})}
        try:
            request = urllib.request.Request(url, headers=headers)
            with opener.open(request, timeout=settings.timeout_s) as resp:
                resumed = have and resp.status == 206
                expected = resp.headers.get("Content-Length")
                received = 0
                with open(part, "ab" if resumed else "wb") as out:
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        received += len(chunk)
                # read(n) reports a dropped connection as a short read, not an error
                if expected is not None and received < int(expected):
                    raise http.client.IncompleteRead(b"", int(expected) - received)
            break
        except urllib.error.HTTPError as error:
            if error.code == 416 and have:  # the .part file already holds everything
                break
            last_error = error
            if 400 <= error.code < 500 and error.code not in (408, 429):
                raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
        except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as error:
            last_error = error
    else:
        raise DownloadError(f"{url}: failed after {settings.retries + 1} attempts: {last_error}")
    digest = sha256_file(part)
    if sha256 and digest != sha256.lower():
        part.unlink()
        raise ChecksumError(f"{url}: SHA-256 {digest} does not match the expected {sha256}")
    os.replace(part, dest)
    return digest


def mirror_files(source: Source, mirror: Path, checksum_dir: Path) -> list[tuple[str, str | None]]:
    """(path relative to `dest`, expected SHA-256 or None) for every file the source has in the mirror."""
    root = mirror / source.dest
    if source.is_file:
        return [("", source.sha256)]
    if source.checksums:
        expected = read_checksum_list(checksum_dir / source.checksums)
        return sorted(expected.items())
    if not root.is_dir():
        raise FileNotFoundError(f"mirror {mirror}: source {source.name} expects the folder {source.dest}")
    return [(p.relative_to(root).as_posix(), None) for p in sorted(root.rglob("*")) if p.is_file()]


def fetch_from_mirror(source: Source, mirror: Path, raw_root: Path, checksum_dir: Path) -> list[FileRecord]:
    """Verify the source's files in `mirror` against their checksums and place them under raw_root."""
    records: list[FileRecord] = []
    problems: list[str] = []
    for relative, expected in mirror_files(source, mirror, checksum_dir):
        src = mirror / source.dest / relative if relative else mirror / source.dest
        name = f"{source.dest}/{relative}" if relative else source.dest
        if not src.is_file():
            problems.append(f"{src}: missing from the mirror")
            continue
        digest = sha256_file(src)
        if expected and digest != expected:
            problems.append(f"{src}: SHA-256 {digest} does not match the expected {expected} (corrupted?)")
            continue
        link_or_copy(src, raw_root / name)
        records.append(FileRecord(source.name, name, "verified" if expected else "unverified",
                                  "" if expected else "no checksum known", src.stat().st_size, digest))
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ChecksumError(f"source {source.name}: {len(problems)} file(s) failed verification:\n  {shown}{more}")
    return records


def fetch_from_network(source: Source, raw_root: Path, downloads: Path, settings: DownloadSettings) -> list[FileRecord]:
    if not source.url:
        raise DownloadError(
            f"source {source.name} has no download URL (it is a curated sample): "
            f"set `mirror:` to a folder that has {source.dest}"
        )
    suffix = {"none": "", "zip": ".zip", "tar": ".tar", "tar.gz": ".tar.gz", "rar": ".rar"}[source.archive]
    if source.is_file:
        target = raw_root / source.dest
        digest = download(source.url, target, sha256=source.sha256, settings=settings)
        check_image_pixels(target, settings.max_image_pixels, source.url)
        return [FileRecord(source.name, source.dest, "verified" if source.sha256 else "unverified",
                           "" if source.sha256 else "no checksum known", target.stat().st_size, digest)]
    archive = downloads / f"{source.name}{suffix}"
    digest = download(source.url, archive, sha256=source.sha256, settings=settings)
    status = "verified" if source.sha256 else "unverified"
    records = [FileRecord(source.name, str(archive), status, "" if source.sha256 else "no checksum known",
                          archive.stat().st_size, digest)]
    written = safe_extract(archive, raw_root / source.dest, kind=source.archive, members=source.members,
                           max_bytes=settings.max_bytes, max_image_pixels=settings.max_image_pixels)
    records += [FileRecord(source.name, f"{source.dest}/{w}", "extracted", "",
                           (raw_root / source.dest / w).stat().st_size, "")
                for w in written]
    return records


def write_marker(path: str | Path, source: str, mode: str, records: Iterable[FileRecord]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"source": source, "mode": mode, "files": [asdict(r) for r in records]}
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def download_report(markers: Iterable[str | Path]) -> pd.DataFrame:
    rows = []
    for marker in markers:
        rows += json.loads(Path(marker).read_text(encoding="utf-8"))["files"]
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)
