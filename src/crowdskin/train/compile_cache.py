"""A persistent compilation cache shared by the training jobs of one program (backbone, input size,
precision, batch) on one machine or a shared filesystem (`execution.train.compile_cache`).

Every job of a backbone compiles the same train and predict programs; the cache keeps each
compiled program on disk, so the first job of a backbone compiles and the others load. A cached
program is the program the compiler would build again (each backend keys it on the program, the
compiler version, the device and the compiler flags), so the cache changes no result: it is an
execution setting, and moving or deleting it re-runs nothing.

What is cached, in a folder per backend under the setting's folder:

- jax (`<folder>/jax`): every jitted program (JAX's persistent compilation cache), always;
- tensorflow (`<folder>/tensorflow`): XLA clusters (`TF_XLA_FLAGS=--tf_xla_persistent_cache_directory`),
  with `train.xla: true`;
- torch (`<folder>/torch`): Inductor's FX graph and AOT autograd caches (`TORCHINDUCTOR_CACHE_DIR`)
  and Triton's kernels, with `train.xla: true` (torch.compile).

Several jobs may write one folder at once. JAX's own file cache writes an entry in place
(`Path.write_bytes` after an existence check, with no lock unless a size limit is set): a job that
reads an entry while another still writes it gets a truncated program (JAX warns and compiles
again), and a writer killed mid-write leaves a truncated entry that is never rewritten. So entries
are written here to a temporary file in the same folder and renamed into place (atomic on POSIX
filesystems, NFS included): a reader sees a whole entry or none, and two writers of one key both
rename a whole, equal program. TensorFlow's XLA cache and Inductor's are written by their own
code (both meant to write a temporary file and rename it; not tested here beyond one job after
another).
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# JAX's own entry names (<key>-cache), so JAX's file cache reads a folder written here and the reverse.
_JAX_ENTRY_SUFFIX = "-cache"


def backend_folder(directory: str | Path, backend: str) -> Path:
    """Each backend's entries in a folder of its own: they never share keys or formats."""
    return Path(directory).expanduser().resolve() / backend


def cache_environment(backend: str, directory: str | Path, *, xla: bool, environ: dict[str, str]) -> dict[str, str]:
    """The environment variables that turn on the persistent cache of TensorFlow's XLA or torch.compile,
    merged into `environ`'s existing flags; nothing for JAX (configured in-process) or without
    compilation. Must be in os.environ before the backend compiles its first program."""
    if not xla or backend == "jax":
        return {}
    folder = backend_folder(directory, backend)
    if backend == "tensorflow":
        flags = environ.get("TF_XLA_FLAGS", "")
        if "tf_xla_persistent_cache_directory" in flags:  # the user's own setting wins
            return {}
        return {"TF_XLA_FLAGS": f"{flags} --tf_xla_persistent_cache_directory={folder}".strip()}
    if backend == "torch":
        return {"TORCHINDUCTOR_CACHE_DIR": str(folder / "inductor"), "TRITON_CACHE_DIR": str(folder / "triton"),
                "TORCHINDUCTOR_FX_GRAPH_CACHE": "1", "TORCHINDUCTOR_AUTOGRAD_CACHE": "1"}
    raise ValueError(f"unknown backend {backend!r}")


def _atomic_jax_cache(folder: Path) -> Any:
    from jax._src.compilation_cache_interface import CacheInterface

    class AtomicFileCache(CacheInterface):
        """JAX's file cache layout, each entry renamed into place whole (see the module's docstring)."""

        def __init__(self, path: Path) -> None:
            self._path = path
            path.mkdir(parents=True, exist_ok=True)

        def get(self, key: str) -> bytes | None:
            try:
                return (self._path / f"{key}{_JAX_ENTRY_SUFFIX}").read_bytes()
            except FileNotFoundError:
                return None

        def put(self, key: str, value: bytes) -> None:
            target = self._path / f"{key}{_JAX_ENTRY_SUFFIX}"
            if target.exists():
                return
            handle, temporary = tempfile.mkstemp(dir=self._path, prefix=f".{key}.", suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(value)
                os.replace(temporary, target)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
                raise

    return AtomicFileCache(folder)


def enable_jax(directory: str | Path) -> Path:
    """Turn on JAX's persistent compilation cache in `directory`/jax, with atomic entry writes, for
    every program (JAX by default skips programs that compile in under a second: most of a CPU job's).
    Call before the process's first compilation; a later call with another folder moves the cache."""
    import jax
    from jax._src import compilation_cache as jax_cache

    folder = backend_folder(directory, "jax")
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    try:
        jax_cache.reset_cache()
        with jax_cache._cache_initialized_mutex:
            jax_cache._cache = _atomic_jax_cache(folder)
            jax_cache._cache_initialized = True
    except (AttributeError, ImportError) as error:  # a JAX whose cache internals moved: its own writer
        log.warning("JAX's compilation cache is written by JAX itself (not atomically): %s", error)
        jax_cache.reset_cache()
    return folder


def disable_jax() -> None:
    """No persistent cache for the next compilations of this process (an earlier job's folder, in
    tests that run several jobs in one process, is not this job's)."""
    import jax
    from jax._src import compilation_cache as jax_cache

    if jax.config.jax_compilation_cache_dir is not None:
        jax.config.update("jax_compilation_cache_dir", None)
        jax_cache.reset_cache()


def enable(backend: str, directory: str | Path | None, *, xla: bool) -> Path | None:
    """Turn on `backend`'s persistent compilation cache in `directory` (None: off). Returns the
    backend's folder, or None where nothing is cached (off, or a backend that does not compile)."""
    if not directory:
        if backend == "jax":
            disable_jax()
        return None
    environment = cache_environment(backend, directory, xla=xla, environ=dict(os.environ))
    if backend != "jax" and not environment:
        return None
    folder = backend_folder(directory, backend)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # the cache changes no result: a job goes on compiling without it
        log.warning("compile cache %s cannot be used (%s): this job compiles without it", folder, error)
        if backend == "jax":
            disable_jax()
        return None
    if backend == "jax":
        enable_jax(directory)
    os.environ.update(environment)
    log.info("persistent compilation cache: %s", folder)
    return folder


@dataclass
class JaxCompileCounts:
    """What JAX reports of its compilations (jax.monitoring), in one process."""

    programs: int = 0  # backend compilations asked for, compiled or loaded from the cache
    backend_compile_seconds: float = 0.0  # XLA compiling, or loading from the cache on a hit
    trace_seconds: float = 0.0  # Python to jaxpr: never cached
    lower_seconds: float = 0.0  # jaxpr to StableHLO: never cached
    cache_hits: int = 0
    cache_writes: int = 0  # programs compiled and written (JAX's `cache_misses` event)

    def minus(self, before: JaxCompileCounts) -> JaxCompileCounts:
        return JaxCompileCounts(**{name: value - getattr(before, name) for name, value in asdict(self).items()})

    def as_dict(self) -> dict[str, float | int]:
        return {name: round(value, 3) if isinstance(value, float) else value for name, value in asdict(self).items()}


_EVENTS = {"/jax/compilation_cache/cache_hits": "cache_hits", "/jax/compilation_cache/cache_misses": "cache_writes"}
_DURATIONS = {"/jax/core/compile/backend_compile_duration": "backend_compile_seconds",
              "/jax/core/compile/jaxpr_trace_duration": "trace_seconds",
              "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_seconds"}
_counts = JaxCompileCounts()
_listening = False
_lock = threading.Lock()


def _on_event(event: str, **_: Any) -> None:
    if event in _EVENTS:
        with _lock:
            setattr(_counts, _EVENTS[event], getattr(_counts, _EVENTS[event]) + 1)


def _on_duration(event: str, duration: float, **_: Any) -> None:
    if event in _DURATIONS:
        with _lock:
            setattr(_counts, _DURATIONS[event], getattr(_counts, _DURATIONS[event]) + duration)
            if event == "/jax/core/compile/backend_compile_duration":
                _counts.programs += 1


def jax_counts() -> JaxCompileCounts:
    """The process's counts so far (listening from the first call on): a job takes the difference."""
    global _listening
    import jax.monitoring

    with _lock:
        if not _listening:
            jax.monitoring.register_event_listener(_on_event)
            jax.monitoring.register_event_duration_secs_listener(_on_duration)
            _listening = True
        return JaxCompileCounts(**asdict(_counts))


def epoch_compile_seconds(epoch_seconds: list[float]) -> float | None:
    """The first epoch's time beyond a steady epoch's (the median of the later ones): what compiling
    the train and validation programs cost. None with one epoch (nothing steady to compare with)."""
    if len(epoch_seconds) < 2:
        return None
    return max(0.0, epoch_seconds[0] - statistics.median(epoch_seconds[1:]))
