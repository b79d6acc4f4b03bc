"""The persistent compilation cache (`execution.train.compile_cache`): the jobs of one program
compile it once, the cache changes no result, and several jobs may fill one folder at once.

JAX is the backend measured here (installed in the venv; TensorFlow's XLA cache and torch.compile's
are environment variables, checked as such)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from crowdskin.train.backend import installed
from crowdskin.train.compile_cache import cache_environment, epoch_compile_seconds
from test_train_backends import _request

needs_jax = pytest.mark.skipif(not installed("jax"), reason="JAX is not installed: `make install BACKEND=jax`")


def test_tensorflow_and_torch_caches_are_environment_variables_only_when_they_compile(tmp_path):
    """Catches a cache flag that drops the user's own TF_XLA_FLAGS, overrides their cache folder,
    or turns a cache on for a backend that compiles nothing (TensorFlow or torch without xla)."""
    folder = (tmp_path / "cache").resolve()
    user_flags = {"TF_XLA_FLAGS": "--tf_xla_auto_jit=2"}
    assert cache_environment("tensorflow", tmp_path / "cache", xla=True, environ=user_flags) == {
        "TF_XLA_FLAGS": f"--tf_xla_auto_jit=2 --tf_xla_persistent_cache_directory={folder / 'tensorflow'}"}
    assert cache_environment("tensorflow", folder, xla=True,
                             environ={"TF_XLA_FLAGS": "--tf_xla_persistent_cache_directory=/mine"}) == {}
    torch = cache_environment("torch", folder, xla=True, environ={})
    assert torch["TORCHINDUCTOR_CACHE_DIR"] == str(folder / "torch" / "inductor")
    assert torch["TORCHINDUCTOR_FX_GRAPH_CACHE"] == "1" and torch["TRITON_CACHE_DIR"].startswith(str(folder / "torch"))
    assert cache_environment("tensorflow", folder, xla=False, environ={}) == {}
    assert cache_environment("torch", folder, xla=False, environ={}) == {}
    assert cache_environment("jax", folder, xla=True, environ={}) == {}  # configured in the process instead


def test_compile_time_is_the_first_epoch_beyond_a_steady_one():
    assert epoch_compile_seconds([12.0, 2.0, 3.0, 2.5]) == pytest.approx(9.5)
    assert epoch_compile_seconds([2.0, 2.5]) == 0.0  # a first epoch no slower than the next compiled nothing
    assert epoch_compile_seconds([5.0]) is None


@needs_jax
def test_a_jax_entry_is_renamed_into_place_whole(tmp_path, monkeypatch):
    """Catches JAX's in-place write: a writer killed (here: failing) mid-entry must leave no entry
    that later jobs would read truncated, and no temporary file behind."""
    import os

    from crowdskin.train.compile_cache import _atomic_jax_cache

    cache = _atomic_jax_cache(tmp_path)
    cache.put("k1", b"program")
    assert cache.get("k1") == b"program" and cache.get("k2") is None
    cache.put("k1", b"other")  # an entry is written once: a second writer of the key keeps the first
    assert cache.get("k1") == b"program"

    def killed(source, target):
        raise OSError("killed mid-write")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(OSError):
        cache.put("k2", b"half")
    assert cache.get("k2") is None and sorted(path.name for path in tmp_path.iterdir()) == ["k1-cache"]


def _job(request: Path, directory: Path, cache: Path | None, **changes) -> tuple[Path, subprocess.Popen]:
    """The request's job (with `changes`) in a fresh process, with its own outputs and log and the
    given cache folder."""
    job = json.loads(request.read_text()) | changes
    directory.mkdir()
    job |= {"out_dir": str(directory / "job"), "log": str(directory / "job.log"),
            "execution": {"compile_cache": str(cache) if cache else None}}
    (directory / "request.json").write_text(json.dumps(job))
    process = subprocess.Popen([sys.executable, "-m", "crowdskin.train.job", str(directory / "request.json")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return directory, process


def _finished(directory: Path, process: subprocess.Popen) -> dict:
    output, _ = process.communicate(timeout=600)
    log = (directory / "job.log").read_text()
    assert process.returncode == 0, (output + log)[-3000:]
    # JAX reports a cache entry it cannot read or write as a warning, then compiles again.
    assert "persistent compilation cache entry" not in log, log[-3000:]
    return json.loads((directory / "job" / "metrics.json").read_text())


@needs_jax
@pytest.mark.slow
def test_later_jax_jobs_of_a_program_load_it_and_train_the_same(tmp_path):
    """Two jobs fill one cache folder at once (no error, no half-written entry), a third job of the
    same (backbone, size, batch) loads every program from it, and its predictions and history equal
    those of a job without the cache. Catches: no cache (the third job compiles again), a cache that
    skips CPU-size programs (JAX's default threshold is one second of compiling), a concurrent
    writer's error, or a cached program that trains differently. Then another fold's job, with
    other class weights, loads them all too: a fold-specific constant compiled into a program (the
    class weights once were) would make each fold compile its own."""
    request = _request(tmp_path / "inputs", "jax")
    cache = tmp_path / "compile-cache"
    started = [_job(request, tmp_path / name, folder)
               for name, folder in (("cold_a", cache), ("cold_b", cache), ("uncached", None))]
    cold_a, cold_b, uncached = (_finished(*job) for job in started)
    warm = _finished(*_job(request, tmp_path / "warm", cache))

    entries = list((cache / "jax").iterdir())
    assert entries and all(path.name.endswith("-cache") for path in entries)  # no temporary file left
    assert uncached["compile"]["cache"] is None and uncached["compile"]["jax"]["cache_hits"] == 0
    cold, warm_counts = cold_a["compile"]["jax"], warm["compile"]["jax"]
    assert cold["cache_writes"] + cold_b["compile"]["jax"]["cache_writes"] >= len(entries) > 0
    # Every program the warm job compiles is in the folder: it writes none and hits each one.
    assert warm_counts["cache_writes"] == 0 and warm_counts["cache_hits"] == warm_counts["programs"] > 0
    assert warm["compile"]["cache"] == str((cache / "jax").resolve())

    for name in ("predictions.parquet",):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "warm/job" / name),
                                      pd.read_parquet(tmp_path / "uncached/job" / name), check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "warm/job/history.csv"),
                                  pd.read_csv(tmp_path / "uncached/job/history.csv"), check_exact=True)
    assert "compile:" in (tmp_path / "warm/job.log").read_text()  # the job's own log says what compiling cost

    other_fold = _finished(*_job(request, tmp_path / "other_fold", cache, fold=1))
    assert other_fold["class_weight"] != warm["class_weight"]
    counts = other_fold["compile"]["jax"]
    assert counts["cache_writes"] == 0 and counts["cache_hits"] == counts["programs"] > 0


@pytest.mark.slow
def test_tensorflow_xla_jobs_of_a_program_load_it(tmp_path):
    """With `train.xla`, TensorFlow keeps its XLA clusters in the folder: the second job of the
    program writes no entry of its own (it loads each one). Catches TF_XLA_FLAGS set too late or
    not at all (no entry), or a cache key that changes per job. Its scores are not compared: two
    TensorFlow XLA runs of one job differ without the cache too (non-deterministic kernels)."""
    request = _request(tmp_path / "inputs", "tensorflow")
    job = json.loads(request.read_text())
    # Not deterministic: with op determinism on, TensorFlow writes no XLA entry here at all.
    job["settings"] |= {"xla": True, "deterministic": False}
    request.write_text(json.dumps(job))
    cache = tmp_path / "compile-cache"
    first = _finished(*_job(request, tmp_path / "first", cache))
    entries = {path.name: path.stat().st_mtime_ns for path in (cache / "tensorflow").iterdir()}
    second = _finished(*_job(request, tmp_path / "second", cache))
    assert entries and {path.name: path.stat().st_mtime_ns for path in (cache / "tensorflow").iterdir()} == entries
    assert first["compile"]["cache"] == second["compile"]["cache"] == str((cache / "tensorflow").resolve())
    assert first["compile"]["jax"] is None


@needs_jax
def test_a_job_without_a_folder_does_not_use_an_earlier_jobs_cache(tmp_path):
    """Catches a folder set by one job of a process (tests run several in one) left on for the next
    job, which asked for none."""
    probe = ("import sys; from crowdskin.train.compile_cache import enable; import jax; "
             "enable('jax', sys.argv[1], xla=True); enable('jax', None, xla=True); "
             "jax.jit(lambda x: x * 2)(1.0).block_until_ready(); print(jax.config.jax_compilation_cache_dir)")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "cache")], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "None" and not list((tmp_path / "cache" / "jax").iterdir())


def test_a_cache_folder_that_cannot_be_made_is_named_and_the_job_compiles_without_it(tmp_path, caplog):
    """Catches a job that fails (or silently runs uncached) because of a cache folder it cannot
    make: the cache changes no result, so the job goes on without it and its log names the folder."""
    from crowdskin.train.compile_cache import enable

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with caplog.at_level("WARNING"):
        assert enable("tensorflow", blocker / "cache", xla=True) is None
    assert str(blocker / "cache") in caplog.text and "without" in caplog.text
