"""The warm training worker's failure paths: a server killed mid-job, a dead server's leftovers, a
server that cannot start, a failing job, two clients racing to start a server. Each server gets a
short idle timeout and its socket under tmp_path; a fixture makes sure none outlives its test."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from crowdskin.train.worker import WorkerUnavailableError, submit
from test_train_tf import _epochs_backed_up, _request, _running, _until
from workflow_runner import fault_test

pytestmark = [
    pytest.mark.slow,
    fault_test,  # about 40 s of killed servers: `make test-faults`, and CI
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # Keras 3.15 on numpy 2.4: np.array(copy=False)
]
IDLE = 0.3  # seconds a server waits for work before it exits


def _servers(worker_log: Path) -> list[int]:
    """Pids of the servers that logged to `worker_log`, in start order."""
    text = worker_log.read_text() if worker_log.exists() else ""
    return [int(pid) for pid in re.findall(r"serving on .* \(pid (\d+)\)", text)]


def _children(worker_log: Path) -> list[int]:
    text = worker_log.read_text() if worker_log.exists() else ""
    return [int(pid) for pid in re.findall(r"child (\d+): ", text)]


@pytest.fixture
def worker_log(tmp_path):
    """The servers' shared log; after the test, every server (and job child) it names must have exited."""
    path = tmp_path / "worker.log"
    yield path
    pids = _servers(path) + _children(path)
    deadline = time.monotonic() + IDLE + 10
    while (left := [pid for pid in pids if _running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:  # do not leak a process into the next test, then fail this one
        os.kill(pid, signal.SIGKILL)
    assert not left, f"worker processes still running after the test: {left}"


def _ok(request: dict) -> None:
    job = Path(request["out_dir"])
    assert (job / "metrics.json").exists() and (job / "predictions.parquet").exists()


def test_server_killed_mid_job_fails_the_client_promptly_and_a_rerun_resumes(tmp_path, worker_log):
    """SIGKILLs the server while its child trains: the client's submit must return non-zero within
    seconds, the orphaned child must die too (not train on beside the re-run, into the same
    directory), and the re-run, on a fresh server, resumes from the checkpoint and finishes.
    Catches: a client that waits forever on a dead server (the EOF check in submit's recv loop
    replaced by `continue`), and a job child that outlives its server (no PR_SET_PDEATHSIG in
    worker._child)."""
    epochs = 8  # still training when the server is killed, the resume stays short
    request = _request(tmp_path, epochs=epochs)
    job, sock = tmp_path / "job", tmp_path / "w.sock"
    (tmp_path / "request.json").write_text(json.dumps(request))
    # A client process, not a thread: a client that hangs can be killed.
    client = subprocess.Popen([sys.executable, "-c", (
        "import json, sys; from pathlib import Path; from crowdskin.train.worker import submit; "
        f"sys.exit(submit(json.loads(Path({str(tmp_path / 'request.json')!r}).read_text()), "
        f"path=Path({str(sock)!r}), server_log={str(worker_log)!r}, idle_timeout={IDLE}))")])
    try:
        [child] = _until(lambda: _children(worker_log), "child in the worker log", timeout=120)
        _until(lambda: _epochs_backed_up(job) >= 1 or client.poll() is not None, "first checkpoint", timeout=120)
        assert client.poll() is None and _running(child) and not (job / "metrics.json").exists()
        [server] = _servers(worker_log)
        os.kill(server, signal.SIGKILL)
        killed = time.monotonic()
        code = client.wait(timeout=15)
    finally:
        client.kill()
        client.wait()
    assert code != 0 and time.monotonic() - killed < 15
    _until(lambda: not _running(child), f"end of the orphaned child {child}", timeout=10)
    assert not (job / "metrics.json").exists()

    # The dead server left its socket file behind; the re-run starts a new server and resumes.
    assert sock.exists()
    assert submit(request, path=sock, server_log=worker_log, idle_timeout=IDLE) == 0
    assert len(set(_servers(worker_log))) == 2
    _ok(request)
    assert pd.read_csv(job / "history.csv")["epoch"].tolist() == list(range(1, epochs + 1))
    assert "resuming from checkpoint" in Path(request["log"]).read_text()


def test_stale_socket_and_lock_of_a_dead_server_are_replaced(tmp_path, worker_log):
    """A socket file nobody listens on (what a SIGKILLed server leaves) and its lock file: the next
    submit starts one fresh server, which takes the path over, and the job succeeds.
    Catches: a server that does not remove a stale socket before bind (the unlink in serve removed:
    bind fails with EADDRINUSE, submit raises WorkerUnavailableError)."""
    request, sock = _request(tmp_path), tmp_path / "w.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock))
    dead.close()  # the file stays, refusing connections
    Path(f"{sock}.lock").write_text("")
    assert submit(request, path=sock, server_log=worker_log, idle_timeout=IDLE) == 0
    assert len(_servers(worker_log)) == 1
    _ok(request)


def test_a_working_directory_made_again_under_its_path_runs_its_jobs(tmp_path, worker_log, monkeypatch):
    """A scratch run deletes its working directory and makes it again under the same path while the
    server of the first run still idles: the server's own working directory is the deleted one, and a
    job of relative paths must run in the new one. Catches: the child not moving to its client's
    working directory (the job's log cannot even be opened: exit 1)."""
    workdir, sock = tmp_path / "run", tmp_path / "w.sock"

    def relative_request() -> dict:
        workdir.mkdir()
        request = _request(workdir)
        monkeypatch.chdir(workdir)
        relative = {k: os.path.relpath(v, workdir) for k, v in request["inputs"].items()}
        return {**request, "inputs": relative, "out_dir": "job", "log": "job.log"}

    assert submit(relative_request(), path=sock, server_log=worker_log, idle_timeout=20) == 0
    monkeypatch.chdir(tmp_path)
    shutil.rmtree(workdir)
    request = relative_request()
    assert submit(request, path=sock, server_log=worker_log, idle_timeout=20) == 0
    assert len(_servers(worker_log)) == 1  # the same server, still warm
    assert (workdir / "job" / "metrics.json").exists() and (workdir / "job.log").exists()
    os.kill(_servers(worker_log)[0], signal.SIGTERM)


def test_server_that_dies_at_start_raises_worker_unavailable(tmp_path, worker_log):
    """A server that cannot start (a backend it cannot select: it exits before binding) and one that
    does not come up within the start timeout: submit raises WorkerUnavailableError promptly, so the
    job script runs the job in its own process, and the slow server is not left behind.
    Catches: a start loop that ignores the server's exit (the `process.poll()` check removed: it
    waits out the whole start timeout) and a timed-out server left running (`process.kill()` removed)."""
    request, sock = _request(tmp_path), tmp_path / "w.sock"
    broken = {**request, "settings": {**request["settings"], "backend": "no-such-backend"}}
    started = time.monotonic()
    with pytest.raises(WorkerUnavailableError, match="exited at start"):
        submit(broken, path=sock, server_log=worker_log, idle_timeout=IDLE, start_timeout=20)
    assert time.monotonic() - started < 10  # a server's imports take a few seconds, not the timeout
    assert "no-such-backend" in worker_log.read_text()

    before = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    started = time.monotonic()
    with pytest.raises(WorkerUnavailableError, match="did not start within"):
        submit(request, path=sock, server_log=worker_log, idle_timeout=IDLE, start_timeout=0.3)
    assert time.monotonic() - started < 5
    spawned = {int(p) for p in os.listdir("/proc") if p.isdigit()} - before
    # The killed server may stay a zombie until this process reaps it; it must not run on.
    _until(lambda: not [pid for pid in spawned if _running(pid) and "crowdskin.train.worker" in _cmdline(pid)],
           "end of the server that did not start in time", timeout=5)
    assert not _servers(worker_log) and not sock.exists()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def test_failing_job_returns_non_zero_and_logs_its_error(tmp_path, worker_log):
    """A request whose input does not exist fails inside the forked child: submit returns its
    non-zero exit code and the job's own log holds the error, naming the missing file.
    Catches: a failure reported as success (the child's `code = 1` default set to 0, or the
    server's reply sending 0)."""
    request, sock = _request(tmp_path), tmp_path / "w.sock"
    missing = tmp_path / "no-such-folds.parquet"
    request["inputs"]["folds"] = str(missing)
    assert submit(request, path=sock, server_log=worker_log, idle_timeout=IDLE) != 0
    text = Path(request["log"]).read_text()
    assert "job failed" in text and missing.name in text
    assert not (Path(request["out_dir"]) / "metrics.json").exists()


def test_two_clients_starting_a_server_at_once_share_one(tmp_path, worker_log):
    """Two clients submit at the same moment with no server running: exactly one server starts
    and both jobs succeed.
    Catches: a start without the lock (the flock in submit removed: both clients start a server,
    the second takes over the socket path and two 'serving on' lines appear)."""
    requests = [_request(tmp_path / name) for name in ("a", "b") if (tmp_path / name).mkdir() is None]
    sock, gate = tmp_path / "w.sock", threading.Barrier(2)

    def client(request: dict) -> int:
        gate.wait()
        return submit(request, path=sock, server_log=worker_log, idle_timeout=IDLE)

    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(client, requests, timeout=180))
    assert codes == [0, 0]
    assert len(_servers(worker_log)) == 1
    for request in requests:
        _ok(request)
