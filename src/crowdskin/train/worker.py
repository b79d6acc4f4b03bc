"""A warm worker: TensorFlow, Keras and MLflow imported once, each job run in a forked child.

Why: a default run has ~200 tiny jobs and each new process spends ~5-8 s CPU importing
TensorFlow and MLflow, more than the training itself; on 2 cores that alone breaks the 10-minute
budget. Snakemake still schedules one job per (task, backbone, fold) with its own threads, log and
outputs; the job's script only hands the request to this process and waits for the exit code.

- One server per working directory, code version and Keras backend (socket name includes all
  three: the backend is fixed when the server imports keras), started by the first job of each,
  exiting after `idle_timeout` seconds without work. A code change gets a new server.
- The server is single-threaded (a select loop) and has run no backend op, so forking it is
  safe: each child initialises its own runtime and thread pools.
- If the job's client dies (Snakemake killed it), the server kills the child: a killed job
  behaves as when it runs in its own process, and resumes from its checkpoint.
- If the server dies (SIGKILL, OOM), the kernel kills its children (PR_SET_PDEATHSIG): the client
  sees the connection close and fails, and no orphan trains on beside the re-run.
- Opt-in (`execution.train.warm_worker`), local runs only: under Slurm each job is its own process.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
# What the server imports before forking, or its children run; a change to any of these files needs
# a new server.
_PACKAGE = Path(__file__).resolve().parents[1]
PRELOADED_SOURCES = [*Path(__file__).resolve().parent.glob("*.py"), *(_PACKAGE / "explain").glob("*.py"),
                     _PACKAGE / "config.py"]
# The modules whose `run_request` a request may name as its `entry`: a training job (the default)
# or the explanation stage's job, which needs Keras as training does.
ENTRIES = ("crowdskin.train.job", "crowdskin.explain.job")


class WorkerUnavailableError(RuntimeError):
    """No worker could be reached or started; the caller runs the job in its own process."""


def code_fingerprint() -> str:
    digest = hashlib.sha256(sys.executable.encode())
    for path in sorted(PRELOADED_SOURCES):
        stat = path.stat()
        digest.update(f"{path}:{stat.st_mtime_ns}:{stat.st_size}".encode())
    return digest.hexdigest()[:12]


def socket_path(workdir: str | Path = ".", backend: str = "tensorflow") -> Path:
    # AF_UNIX paths are limited to ~100 bytes, so the socket lives in the temp dir, named by a hash.
    key = hashlib.sha256(f"{Path(workdir).resolve()}|{code_fingerprint()}|{backend}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"crowdskin-train-{os.getuid()}-{key}.sock"


def _connect(path: Path) -> socket.socket | None:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(str(path))
    except OSError:
        client.close()
        return None
    return client


def submit(request: dict[str, Any], *, path: Path | None = None, server_log: str | Path | None = None,
           idle_timeout: float = 30.0, start_timeout: float = 120.0) -> int:
    """Run `request` in the warm worker of its backend (starting it if needed); returns the job's exit code."""
    backend = request.get("backend") or request.get("settings", {}).get("backend") or "tensorflow"
    path = path or socket_path(backend=backend)
    client = _connect(path)
    if client is None:
        with open(f"{path}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one job starts the server, the others wait for it
            client = _connect(path)
            if client is None:
                client = _start_server(path, server_log, idle_timeout, start_timeout, backend)
    # The job runs where its client runs: a working directory deleted and made again (a scratch run)
    # under the same path is another directory than the one the server started in.
    request = {**request, "cwd": os.getcwd()}
    with client:
        client.sendall(json.dumps(request).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = client.recv(4096)
            if not chunk:
                # The server died mid-job: report failure; a re-run resumes from the checkpoint.
                log.error("the training worker closed the connection before the job finished")
                return 1
            reply += chunk
    return int(json.loads(reply)["exit"])


def _start_server(path: Path, server_log: str | Path | None, idle_timeout: float,
                  start_timeout: float, backend: str = "tensorflow") -> socket.socket:
    output = open(server_log, "a") if server_log else subprocess.DEVNULL  # noqa: SIM115 - the detached server's stdout
    process = subprocess.Popen(
        [sys.executable, "-m", "crowdskin.train.worker", str(path), str(idle_timeout), backend],
        stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise WorkerUnavailableError(f"the training worker exited at start with code {process.returncode}")
        client = _connect(path)
        if client is not None:
            return client
        time.sleep(0.1)
    process.kill()
    raise WorkerUnavailableError(f"the training worker did not start within {start_timeout:.0f} s")


def _preload(backend: str = "tensorflow") -> None:
    from crowdskin.train.backend import select

    select(backend)  # before keras' first import, below
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot
    import mlflow.store.tracking.sqlalchemy_store
    import mlflow.tracking  # noqa: F401 - preloaded for the jobs, like the imports above

    import crowdskin.explain.gradcam
    import crowdskin.explain.job
    import crowdskin.train.job
    import crowdskin.train.models  # imports keras and its backend
    import crowdskin.train.pipeline
    import crowdskin.train.runtime  # noqa: F401 - preloaded for the jobs, like the imports above


def _die_with(server: int) -> None:
    """Have the kernel SIGKILL this child when its server dies (Linux; elsewhere a no-op).

    Why: a server killed mid-job (SIGKILL, OOM) closes its client's connection, so the client
    reports failure, but the orphaned child trained on and wrote the job's outputs, racing the
    re-run of the same job in the same directory. Like a killed client, a dead server kills the job.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != server:  # the server died before prctl took effect
        os._exit(1)


def _child(request: dict[str, Any], listener: socket.socket, connections: list[socket.socket],
           server: int) -> None:
    _die_with(server)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    listener.close()
    for connection in connections:
        connection.close()
    code = 1
    try:
        import importlib

        from crowdskin.train.job import log_to

        if request.get("cwd"):
            os.chdir(request["cwd"])
        log_to(request.get("log"))
        entry = request.get("entry", ENTRIES[0])
        if entry not in ENTRIES:
            raise ValueError(f"the warm worker runs {', '.join(ENTRIES)}, not {entry!r}")
        importlib.import_module(entry).run_request(request)
        code = 0
    except BaseException:  # everything goes to the job's log, then the exit code
        logging.getLogger("crowdskin.train").exception("job failed")
    finally:
        logging.shutdown()
        os._exit(code)


def serve(path: Path, idle_timeout: float = 30.0, backend: str = "tensorflow") -> None:
    """Accept requests on `path` until idle for `idle_timeout` seconds."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    _preload(backend)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)  # /tmp is shared: only this user may hand the worker jobs
    listener.listen(64)
    server = os.getpid()
    log.info("serving on %s (pid %d)", path, server)
    buffers: dict[socket.socket, bytes] = {}
    running: dict[int, socket.socket] = {}
    idle_since = time.monotonic()
    closing = False  # idle: the socket file is gone, the jobs already queued on it still run
    try:
        while True:
            readable, _, _ = select.select([listener, *buffers], [], [], 0.05)
            for ready in readable:
                if ready is listener:
                    connection, _ = listener.accept()
                    buffers[connection] = b""
                    continue
                data = ready.recv(65536)
                if not data:  # the client went away: its job must not run on unobserved
                    for pid, owner in list(running.items()):
                        if owner is ready:
                            log.info("client of child %d disconnected; terminating it", pid)
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(pid, signal.SIGKILL)
                    del buffers[ready]
                    ready.close()
                    continue
                buffers[ready] += data
                if buffers[ready].endswith(b"\n") and ready not in running.values():
                    request = json.loads(buffers[ready])
                    pid = os.fork()
                    if pid == 0:
                        _child(request, listener, list(buffers), server)
                    running[pid] = ready
                    log.info("child %d: %s/%s/fold%s", pid, request.get("task"), request.get("backbone"),
                             request.get("fold"))
            while running:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                owner = running.pop(pid)
                code = os.waitstatus_to_exitcode(status)
                if owner in buffers:
                    with contextlib.suppress(OSError):
                        owner.sendall(json.dumps({"exit": code}).encode() + b"\n")
                    del buffers[owner]
                    owner.close()
            if buffers or running:
                idle_since = time.monotonic()
            elif closing or time.monotonic() - idle_since > idle_timeout:
                if closing and not _pending_connection(listener):
                    log.info("idle for %.0f s; exiting", idle_timeout)
                    return
                # A job may connect just as the idle time runs out: its connection waits in the
                # listen queue, and exiting now would close it unanswered (the job fails). So the
                # socket file goes first (later jobs start a new worker), then what is queued runs.
                if not closing:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                    closing = True
    finally:
        if not closing:  # once closing, the path may already be a newer worker's socket
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _pending_connection(listener: socket.socket) -> bool:
    readable, _, _ = select.select([listener], [], [], 0)
    return bool(readable)


if __name__ == "__main__":
    serve(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 30.0,
          sys.argv[3] if len(sys.argv) > 3 else "tensorflow")
