"""Downloads (resume, retry, checksum, atomicity), safe extraction, mirrors and URL lists.

The HTTP tests talk to a server on 127.0.0.1 started by the test itself: no network.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crowdskin.acquire.archive import UnsafeArchiveError, safe_extract
from crowdskin.acquire.checksums import write_checksum_list
from crowdskin.acquire.fetch import (
    ChecksumError,
    DownloadError,
    DownloadSettings,
    download,
    download_report,
    fetch_from_mirror,
    write_marker,
)
from crowdskin.acquire.manifest import Member, Source
from crowdskin.acquire.url_list import fetch_url_list
from crowdskin.config import section

PAYLOAD = bytes(range(256)) * 400  # 100 KiB
FAST = DownloadSettings(**{**section("download"), "retries": 3, "backoff_s": 0.0, "timeout_s": 5})


class _Handler(BaseHTTPRequestHandler):
    calls: dict[str, int] = {}
    ranges: list[str | None] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        count = self.calls[self.path] = self.calls.get(self.path, 0) + 1
        self.ranges.append(self.headers.get("Range"))
        if self.path == "/missing.jpg":
            self.send_error(404, "Not Found")
            return
        if self.path == "/flaky.bin" and count <= 2:
            self.send_error(503, "Service Unavailable")
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].rstrip("-"))
        body = PAYLOAD[start:]
        if self.path.endswith(".png"):
            buffer = io.BytesIO()
            Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buffer, format="PNG")
            body = buffer.getvalue()
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path == "/cut.bin" and count == 1:
            self.wfile.write(body[: len(body) // 2])  # the connection drops half-way
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture()
def server():
    _Handler.calls, _Handler.ranges = {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_download_verifies_checksum(server, tmp_path):
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    assert download(f"{server}/file.bin", tmp_path / "f.bin", sha256=digest, settings=FAST) == digest
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_no_file(server, tmp_path):
    with pytest.raises(ChecksumError, match="does not match"):
        download(f"{server}/file.bin", tmp_path / "f.bin", sha256="0" * 64, settings=FAST)
    assert not (tmp_path / "f.bin").exists()
    assert not (tmp_path / "f.bin.part").exists()


def test_interrupted_download_resumes_with_range(server, tmp_path):
    download(f"{server}/cut.bin", tmp_path / "c.bin", settings=FAST, sleep=lambda s: None)
    assert (tmp_path / "c.bin").read_bytes() == PAYLOAD
    assert _Handler.ranges[0] is None and _Handler.ranges[1] == f"bytes={len(PAYLOAD) // 2}-"


def test_transient_errors_are_retried_with_backoff(server, tmp_path):
    waits: list[float] = []
    settings = DownloadSettings(**{**section("download"), "retries": 4, "backoff_s": 1.5, "timeout_s": 5})
    download(f"{server}/flaky.bin", tmp_path / "x.bin", settings=settings, sleep=waits.append)
    assert waits == [1.5, 3.0]
    assert (tmp_path / "x.bin").read_bytes() == PAYLOAD


def test_permanent_error_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{server}/missing.jpg", tmp_path / "m.jpg", settings=FAST, sleep=lambda s: None)
    assert _Handler.calls["/missing.jpg"] == 1


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def test_archive_with_parent_entry_is_refused(tmp_path):
    archive = _zip(tmp_path / "evil.zip", {"ok.txt": b"x", "../escape.txt": b"y"})
    with pytest.raises(UnsafeArchiveError, match=r"'\.\./escape\.txt'.*outside"):
        safe_extract(archive, tmp_path / "out", kind="zip")
    assert not (tmp_path / "escape.txt").exists()


def test_absolute_and_link_entries_are_refused(tmp_path):
    with pytest.raises(UnsafeArchiveError, match="absolute"):
        safe_extract(_zip(tmp_path / "abs.zip", {"/etc/x": b"x"}), tmp_path / "out", kind="zip")
    tar_path = tmp_path / "link.tar"
    with tarfile.open(tar_path, "w") as tf:
        info = tarfile.TarInfo("link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(UnsafeArchiveError, match="link"):
        safe_extract(tar_path, tmp_path / "out", kind="tar")


def test_decompressed_size_is_capped(tmp_path):
    archive = _zip(tmp_path / "bomb.zip", {"big.bin": b"\0" * 10_000})
    with pytest.raises(UnsafeArchiveError, match="exceeds the cap"):
        safe_extract(archive, tmp_path / "out", kind="zip", max_bytes=1000)
    assert not any((tmp_path / "out").rglob("big.bin"))


def test_image_pixels_are_capped(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(buffer, format="PNG")
    archive = _zip(tmp_path / "img.zip", {"a.png": buffer.getvalue()})
    with pytest.raises(UnsafeArchiveError, match="10000 pixels"):
        safe_extract(archive, tmp_path / "out", kind="zip", max_image_pixels=9999)


def test_members_are_selected_and_renamed(tmp_path):
    jpeg = _jpeg()
    archive = _zip(tmp_path / "repo.zip", {"top/data/batch/ISIC_1_resized.jpg": jpeg, "top/README": b"r"})
    written = safe_extract(archive, tmp_path / "out", kind="zip",
                           members=[Member(r"top/data/batch/(ISIC_\d+)_resized\.jpg", r"thumbnails/\1.jpg")])
    assert written == ["thumbnails/ISIC_1.jpg"]
    assert (tmp_path / "out/thumbnails/ISIC_1.jpg").read_bytes() == jpeg


def _jpeg(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)  # noise: a JPEG stream long enough to cut in the middle
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize(("data", "why"), [
    (b"", "empty file"),
    (b"<html><body>Access denied</body></html>", "not a decodable image"),
    (_jpeg()[: len(_jpeg()) // 2], "cannot decode its pixels"),
])
def test_archive_image_that_does_not_decode_is_refused_by_name(tmp_path, data, why):
    archive = _zip(tmp_path / "set.zip", {"set/README": b"r", "set/ISIC_9.jpg": data})
    with pytest.raises(UnsafeArchiveError, match=rf"set\.zip: .*ISIC_9\.jpg.*{why}"):
        safe_extract(archive, tmp_path / "out", kind="zip")
    assert not (tmp_path / "out/set/ISIC_9.jpg").exists()


def _mirror(tmp_path: Path) -> tuple[Path, Source, Path]:
    mirror = tmp_path / "mirror"
    (mirror / "set").mkdir(parents=True)
    for i in range(3):
        (mirror / "set" / f"f{i}.txt").write_text(f"content {i}")
    checksums = tmp_path / "checksums"
    checksums.mkdir()
    write_checksum_list(mirror / "set", [f"f{i}.txt" for i in range(3)], checksums / "set.sha256")
    return mirror, Source(name="set", dest="set", checksums="set.sha256"), checksums


def test_mirror_files_are_verified_and_placed(tmp_path):
    mirror, source, checksums = _mirror(tmp_path)
    records = fetch_from_mirror(source, mirror, tmp_path / "raw", checksums)
    assert [r.status for r in records] == ["verified"] * 3
    assert (tmp_path / "raw/set/f1.txt").read_text() == "content 1"


def test_corrupted_mirror_file_is_detected(tmp_path):
    mirror, source, checksums = _mirror(tmp_path)
    (mirror / "set" / "f2.txt").write_text("bit rot")
    with pytest.raises(ChecksumError, match=r"f2\.txt: SHA-256 .* does not match"):
        fetch_from_mirror(source, mirror, tmp_path / "raw", checksums)


def test_url_list_with_a_dead_link_finishes_and_reports_it(server, tmp_path):
    csv = tmp_path / "list.csv"
    csv.write_text(f"url,label\n{server}/a.png,1\n{server}/missing.jpg,0\n{server}/b.png,0\n")
    labels, records = fetch_url_list(csv, "can", tmp_path / "raw", settings=FAST)
    assert list(labels.status) == ["ok", "failed", "ok"]
    assert "HTTP 404" in labels.reason[1]
    assert (tmp_path / "raw/url_lists/can/images/b.png").is_file()
    write_marker(tmp_path / "m.json", "url_list:can", "download", records)
    report = download_report([tmp_path / "m.json"])
    dead = report[report.status == "failed"]
    assert len(dead) == 1 and "missing.jpg" in dead.file.iloc[0] and "404" in dead.reason.iloc[0]


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height 1-bit pixels and holds almost none: Pillow refuses such a
    header as a decompression bomb before reading any pixel."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


class _HostileHandler(BaseHTTPRequestHandler):
    """Serves the files of a hostile URL list and counts every request."""

    calls: dict[str, int] = {}
    bodies: dict[str, bytes] = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.calls[self.path] = self.calls.get(self.path, 0) + 1
        if self.path == "/redirect.jpg":
            self.send_response(302)
            self.send_header("Location", self.bodies["redirect-target"].decode())
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.bodies[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def hostile_server(tmp_path):
    secret = tmp_path / "outside" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(_png(7))  # a valid image: only where it lies makes it a refusal
    _HostileHandler.calls = {}
    _HostileHandler.bodies = {
        "redirect-target": secret.as_uri().encode(),
        "/empty.jpg": b"",
        "/error-page.jpg": b"<!doctype html><html><body><h1>404 Not Found</h1></body></html>",
        "/bomb.png": _png_header_only(60000, 60000),
        "/a/img.png": _png(10),
        "/b/img.png": _png(200),
        "/good.png": _png(50),
    }
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _HostileHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", secret
    httpd.shutdown()


def test_hostile_url_list_is_refused_row_by_row(hostile_server, tmp_path):
    server, secret = hostile_server
    assert len(_png_header_only(60000, 60000)) < 100  # 3.6 gigapixels in a few bytes
    csv = tmp_path / "list.csv"
    csv.write_text("url,label\n"
                   f"{secret.as_uri()},1\n"
                   "ftp://127.0.0.1:9/x.png,1\n"
                   f"{server}/redirect.jpg,0\n"
                   f"{server}/empty.jpg,0\n"
                   f"{server}/error-page.jpg,0\n"
                   f"{server}/bomb.png,1\n"
                   f"{server}/a/img.png,1\n"
                   f"{server}/b/img.png,0\n"
                   f"{server}/good.png,0\n")
    raw = tmp_path / "raw"
    labels, records = fetch_url_list(csv, "hostile", raw, settings=FAST)
    by_url = labels.set_index("url")
    status, reason = by_url["status"], by_url["reason"]
    assert status[secret.as_uri()] == "refused" and "scheme 'file' is not allowed" in reason[secret.as_uri()]
    assert status["ftp://127.0.0.1:9/x.png"] == "refused" and "scheme 'ftp'" in reason["ftp://127.0.0.1:9/x.png"]
    assert status[f"{server}/redirect.jpg"] == "refused" and "redirect to 'file:" in reason[f"{server}/redirect.jpg"]
    assert _HostileHandler.calls["/redirect.jpg"] == 1, "a refused redirect must not be retried"
    assert status[f"{server}/empty.jpg"] == "invalid" and "empty file" in reason[f"{server}/empty.jpg"]
    page = f"{server}/error-page.jpg"
    assert status[page] == "invalid" and "not a decodable image" in reason[page]
    assert status[f"{server}/bomb.png"] == "invalid" and "pixels" in reason[f"{server}/bomb.png"]
    for url in (f"{server}/empty.jpg", f"{server}/error-page.jpg", f"{server}/bomb.png"):
        assert reason[url].startswith(url) and f"images/{url.rsplit('/', 1)[1]}" in reason[url]
    ok = labels[labels.status == "ok"]
    assert list(ok.url) == [f"{server}/a/img.png", f"{server}/b/img.png", f"{server}/good.png"]
    assert list(ok.image_id) == ["img", "img_2", "good"] and ok.file.is_unique
    assert (labels.file[labels.status != "ok"] == "").all()
    images = raw / "url_lists/hostile/images"
    # each URL became its own file, the second same-named one did not replace the first
    assert np.asarray(Image.open(raw / ok.file.iloc[0]))[0, 0, 0] == 10
    assert np.asarray(Image.open(raw / ok.file.iloc[1]))[0, 0, 0] == 200
    # nothing from outside the raw folder was copied, and no refused or invalid file is left
    assert sorted(p.name for p in images.iterdir()) == ["good.png", "img.png", "img_2.png"]
    assert not any(p.read_bytes() == secret.read_bytes() for p in raw.rglob("*") if p.is_file())
    assert [r.status for r in records].count("failed") == 6


def test_url_list_duplicate_ids_in_the_id_column_are_refused(hostile_server, tmp_path):
    server, _ = hostile_server
    csv = tmp_path / "list.csv"
    csv.write_text(f"url,label,lesion\n{server}/a/img.png,1,L1\n{server}/b/img.png,0,L1\n{server}/good.png,0,l 2\n")
    labels, _ = fetch_url_list(csv, "ids", tmp_path / "raw", settings=FAST, id_column="lesion")
    assert list(labels.status) == ["ok", "refused", "ok"]
    assert "duplicate image id 'L1'" in labels.reason[1] and "row 1" in labels.reason[1]
    assert _HostileHandler.calls.get("/b/img.png", 0) == 0, "a refused row is never downloaded"


def test_download_refuses_a_scheme_outside_the_allow_list(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"x")
    with pytest.raises(DownloadError, match="scheme 'file' is not allowed"):
        download((tmp_path / "x.bin").as_uri(), tmp_path / "copy.bin", settings=FAST)
    assert not (tmp_path / "copy.bin").exists()
