"""Every GPU measurement in one call: a cut-down paper grid through the real job code, jobs sharing
one GPU, and where a ResNet50 step's time goes. Writes JSON files into one folder.

    bash benchmarks/gpu.sh                                   # the GPU machine: wheels, then this
    python -m crowdskin.train.bench_gpu --out DIR            # the same without the wheel install
    python -m crowdskin.train.bench_gpu --tiny --out DIR     # same code path on CPU in about a minute

Each training job is `python -m crowdskin.train.job REQUEST.json`, the process a Snakemake job
runs, with a request built as the rule builds it (`job_settings` of config/paper.yaml's `train`) on a
synthetic cache of random pixels. Changed for the cut-down only: epochs, steps and validation steps
(fewer, in the study's 2:1 ratio), `weights: none` (no network for ImageNet weights; the same
FLOPs), and the MLflow run is left pending as under Slurm (`SLURM_JOB_ID` set), so no MLflow
install is needed. Timings come from the jobs' own logs: Keras' per-epoch lines, JAX's compile
log (`JAX_LOG_COMPILES=1`), and metrics.json.

Parts, in order, each skipped with the reason when the time budget (`--budget-s`) runs short:
- grid: one task (baseline) x the paper's backbones x `--folds` folds, one job at a time. Per
  backbone, fold 0 starts on an empty compilation cache (cold) and later folds find it filled by
  fold 0 (warm). Without the compilation-cache setting every job compiles (and the JSON says so).
- share: 1, 2, 3, 4 ResNet50 jobs at once on the one GPU (separate processes, `jobs_per_gpu` set
  as the workflow sets it, so JAX allocates on demand), total images/s and memory per job.
- projection: the 195-job paper grid's time on one GPU from the grid and share parts.
- profile: a jax.profiler trace of ResNet50 steps at the study's batch: GPU busy time against wall.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Packages whose versions every result names (read from metadata: the driver never imports jax,
# which would take GPU memory the jobs measure).
VERSIONED = ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "keras", "numpy", "pandas", "torch")


@dataclass(frozen=True)
class Profile:
    """What one call measures. `paper`: the study's settings on a GPU; `tiny`: the same code path
    on CPU in about a minute."""

    name: str
    backbones: tuple[str, ...]
    size: int | None  # None: config/paper.yaml's input size per backbone
    batch: int | None  # None: config/paper.yaml's batch
    precision: str | None  # None: config/paper.yaml's mixed_precision
    images: int
    folds: int
    epochs: int
    steps: int
    share_backbone: str
    share_jobs: tuple[int, ...]
    share_epochs: int
    share_steps: int
    profile_steps: int
    budget_s: float
    threads: int


PROFILES = {
    # About 2,200 lesions (ISIC 2017 + PH2): every job predicts all of its fold's images, so the
    # predict time is the real one's. 20 steps x 3 epochs: one epoch compiles, two are steady.
    "paper": Profile(name="paper", backbones=("vgg16", "resnet50", "inceptionv3"), size=None, batch=None,
                     precision=None, images=2200, folds=2, epochs=3, steps=20, share_backbone="resnet50",
                     share_jobs=(1, 2, 3, 4), share_epochs=5, share_steps=40, profile_steps=20, budget_s=540,
                     threads=4),
    "tiny": Profile(name="tiny", backbones=("smallcnn",), size=32, batch=4, precision="false", images=40, folds=2,
                    epochs=2, steps=2, share_backbone="smallcnn", share_jobs=(1, 2), share_epochs=2, share_steps=2,
                    profile_steps=2, budget_s=300, threads=1),
}
TASK = "baseline"
MODULE = "crowdskin.train.bench_gpu"  # not __name__: that is "__main__" under `python -m`
PARTS = ("grid", "share", "projection", "profile")


# -- the jobs' logs ------------------------------------------------------------------------------

EPOCH_LINE = re.compile(r"^\s*(\d+)/(\d+) - (\d+)s - (\d+)(us|ms|s)/step")
XLA_COMPILE = re.compile(r"Finished XLA compilation of (\S+) in ([0-9.]+) sec")
READY = re.compile(r"Keras on \w+ ready after ([0-9.]+) s")
PREDICT = re.compile(r"\bpredict ([0-9.]+) s")
GPUS = re.compile(r"\w+: (\d+) GPU\(s\), \d+ thread\(s\), policy (\w+)")
UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def parse_job_log(text: str) -> dict[str, Any]:
    """Timings a job's log holds: each epoch's seconds (Keras' verbose=2 line: steps x time per
    step, finer than its whole seconds; validation included), XLA compilations (with
    JAX_LOG_COMPILES=1; a persistent-cache hit is logged inside the same timer, so a hit counts as
    a fast compilation), cache hits and misses, backend start-up and predict seconds."""
    epochs: list[float] = []
    compiles: list[tuple[str, float]] = []
    result: dict[str, Any] = {"ready_s": None, "predict_s": None, "gpus": None, "policy": None}
    hits = misses = 0
    for line in text.splitlines():
        if match := EPOCH_LINE.match(line):
            steps, per_step, unit = int(match[2]), int(match[4]), match[5]
            # Whichever rounds less: steps x "30ms/step" (to 0.5 ms a step), or the epoch's whole
            # seconds when a step takes a second or more ("2s/step" may be 1.55 s).
            epochs.append(float(match[3]) if unit == "s" else steps * per_step * UNIT_SECONDS[unit])
        elif match := XLA_COMPILE.search(line):
            compiles.append((match[1], float(match[2])))
        elif "compilation cache hit" in line.lower():
            hits += 1
        elif "compilation cache miss" in line.lower():
            misses += 1
        elif match := READY.search(line):
            result["ready_s"] = float(match[1])
        elif match := PREDICT.search(line):
            result["predict_s"] = float(match[1])
        if match := GPUS.search(line):
            result["gpus"], result["policy"] = int(match[1]), match[2]
    steady = statistics.median(epochs[1:]) if len(epochs) > 1 else None
    slowest = sorted(compiles, key=lambda item: -item[1])[:5]
    return {
        **result, "epoch_seconds": [round(s, 3) for s in epochs],
        "first_epoch_s": round(epochs[0], 3) if epochs else None,
        "steady_epoch_s": round(steady, 3) if steady is not None else None,
        # The measure of compilation: the first epoch minus a steady one.
        "compile_s": round(epochs[0] - steady, 3) if steady is not None else None,
        "xla_compile_s": round(sum(s for _, s in compiles), 3), "xla_compilations": len(compiles),
        "xla_slowest": [{"function": name, "s": round(s, 3)} for name, s in slowest],
        "cache_hits": hits, "cache_misses": misses,
    }


# -- the environment and the optional settings ---------------------------------------------------

def _run_text(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def gpu_info() -> dict[str, Any]:
    """Device name, driver, CUDA and memory from nvidia-smi; nulls (with the reason) without one."""
    if shutil.which("nvidia-smi") is None:
        return {"gpu": None, "gpus": [], "driver": None, "cuda": None,
                "reason": "nvidia-smi not found: no NVIDIA GPU here"}
    rows = _run_text(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits"])
    header = _run_text(["nvidia-smi"]) or ""
    cuda = re.search(r"CUDA Version:\s*([0-9.]+)", header)
    gpus = [dict(zip(("name", "driver", "memory_total_mib"), (part.strip() for part in row.split(",")), strict=False))
            for row in (rows or "").splitlines() if row.strip()]
    return {"gpu": gpus[0]["name"] if gpus else None, "gpus": gpus, "driver": gpus[0]["driver"] if gpus else None,
            "cuda": cuda[1] if cuda else None}


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def optional_settings() -> dict[str, str | None]:
    """The settings this script measures only where this version of the project has them: the
    compilation cache (a folder) and steps per execution, each as its dotted place in the config
    (`execution.train.compile_cache`), or None where this version lacks it."""
    from crowdskin.config import section

    execution, train = section("execution")["train"], section("train")
    cache_keys = sorted(key for key in execution if "compil" in key and "cache" in key)
    steps = ("execution.train.steps_per_execution" if "steps_per_execution" in execution
             else "train.steps_per_execution" if "steps_per_execution" in train else None)
    return {"compile_cache": f"execution.train.{cache_keys[0]}" if cache_keys else None, "steps_per_execution": steps}


def execution_extra(features: dict[str, str | None], *, compile_cache: Path, steps_per_execution: int | None
                    ) -> dict[str, Any]:
    """What a request's `execution` gets of the optional settings that live under execution.train
    (the rule passes those as resources, never as params: they change no result)."""
    extra: dict[str, Any] = {}
    if features["compile_cache"]:
        extra[features["compile_cache"].rsplit(".", 1)[1]] = str(compile_cache)
    place = features["steps_per_execution"]
    if steps_per_execution is not None and place and place.startswith("execution."):
        extra[place.rsplit(".", 1)[1]] = steps_per_execution
    return extra


def environment(argv: list[str], profile: Profile, features: dict[str, str | None]) -> dict[str, Any]:
    commit = _run_text(["git", "rev-parse", "HEAD"])
    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": os.environ.get("BENCH_GPU_COMMAND") or shlex.join([sys.executable, "-m", MODULE, *argv]),
        "profile": asdict(profile), **gpu_info(), "versions": versions(),
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "git_commit": commit.strip() if commit else None,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("XLA_", "JAX_", "CUDA_VISIBLE", "KERAS_"))},
        "optional_settings": features,
    }


# -- the synthetic inputs and one job's request --------------------------------------------------

@dataclass
class Study:
    """The inputs a training job reads, as the workflow's upstream rules write them."""

    root: Path
    train: dict[str, Any]
    inputs_by_size: dict[int, dict[str, str]] = field(default_factory=dict)


def study_settings(profile: Profile, *, steps_per_execution: int | None, features: dict[str, str | None]
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """config/paper.yaml's `train` section, cut down to the profile, and the whole config."""
    from crowdskin.config import load_config, packaged_config

    config = load_config(packaged_config("config.yaml"), packaged_config("paper.yaml"))
    train = dict(config["train"])
    train.update(weights="none", backbones=list(profile.backbones))
    if profile.size is not None:
        train["input_size"] = profile.size
        train["input_size_by_backbone"] = {}
    if profile.batch is not None:
        train["batch_size"] = profile.batch
    if profile.precision is not None:
        train["mixed_precision"] = {"false": False, "true": True}.get(profile.precision, profile.precision)
    place = features["steps_per_execution"]
    if steps_per_execution is not None and place and place.startswith("train."):
        train[place.rsplit(".", 1)[1]] = steps_per_execution
    return train, config


def make_study(root: Path, train: dict[str, Any], profile: Profile) -> Study:
    """images.parquet, folds.parquet and experiment.json; caches are made per input size on demand."""
    from crowdskin.train.splits import make_folds

    root.mkdir(parents=True, exist_ok=True)
    n = profile.images
    ids = [f"B{i:05d}" for i in range(n)]
    # About a fifth abnormal, as in ISIC 2017 + PH2.
    images = pd.DataFrame({"image_id": ids, "dataset": "bench", "image_path": "synthetic.png",
                           "abnormal": pd.array([int(i % 5 == 0) for i in range(n)], dtype="Int8"),
                           "group_id": pd.NA})
    images.to_parquet(root / "images.parquet")
    make_folds(images.assign(abnormal=images["abnormal"].astype(int)), scheme="kfold", n_folds=5,
               seed=0).to_parquet(root / "folds.parquet")
    (root / "experiment.json").write_text(json.dumps({"tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
                                                      "experiment": "bench-gpu"}))
    return Study(root=root, train=train)


def study_inputs(study: Study, size: int) -> dict[str, str]:
    """The job's inputs at `size` px, writing that size's cache of random pixels the first time."""
    if size not in study.inputs_by_size:
        from crowdskin.train.cache import write_cache

        ids = pd.read_parquet(study.root / "images.parquet")["image_id"].tolist()
        rng = np.random.default_rng(size)
        array = rng.integers(0, 255, (len(ids), size, size, 3), dtype=np.uint8)
        index = pd.DataFrame({"image_id": ids, "row": np.arange(len(ids)),
                              "reason": pd.array([None] * len(ids), dtype="string")})
        array_path, index_path = study.root / f"images_{size}px.npy", study.root / f"images_{size}px.parquet"
        write_cache(array, index, array_path, index_path)
        study.inputs_by_size[size] = {
            "images": str(study.root / "images.parquet"), "folds": str(study.root / "folds.parquet"),
            "cache_array": str(array_path), "cache_index": str(index_path),
            "experiment": str(study.root / "experiment.json")}
    return study.inputs_by_size[size]


def job_request(study: Study, *, backbone: str, fold: int, epochs: int, steps: int, out_dir: Path, threads: int,
                jobs_per_gpu: int = 1, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request as workflow/scripts/train_job.py builds it from the rule's params and resources.
    `extra`: the optional execution settings (`execution_extra`)."""
    from crowdskin.train.settings import job_settings
    from crowdskin.train.tasks import task_grid

    train = {**study.train, "epochs": epochs, "steps_per_epoch": steps, "validation_steps": max(1, steps // 2)}
    task = {t.name: t for t in task_grid(train)}[TASK]
    settings = job_settings(train, task, backbone)
    execution: dict[str, Any] = {"weights_dir": None, "warm_worker": False, "jobs_per_gpu": jobs_per_gpu}
    execution.update(extra or {})
    return {"task": TASK, "backbone": backbone, "fold": fold, "settings": settings, "seed": 0,
            "split_scheme": "kfold", "threads": threads, "out_dir": str(out_dir / "job"),
            "log": str(out_dir / "job.log"), "save_model": True, "check": False,
            "inputs": study_inputs(study, settings["input_size"]), "execution": execution}


def job_environment() -> dict[str, str]:
    # JAX's compile log gives each job's compile seconds; SLURM_JOB_ID leaves the MLflow run pending
    # in metrics.json as the paper grid's Slurm jobs do, so no MLflow is needed on the GPU machine.
    return {**os.environ, "JAX_LOG_COMPILES": "1", "SLURM_JOB_ID": os.environ.get("SLURM_JOB_ID", "bench-gpu"),
            "PYTHONUNBUFFERED": "1"}


# -- running jobs ------------------------------------------------------------------------------------

class MemorySampler:
    """Peak GPU memory while jobs run, from nvidia-smi every `interval` s: per process where the
    driver lists processes, and the device's total used memory above what was in use at start."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.available = shutil.which("nvidia-smi") is not None
        self.per_pid: dict[int, float] = {}
        self.baseline_mib: float | None = None
        self.peak_mib: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _used(self) -> float | None:
        text = _run_text(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"])
        return float(text.splitlines()[0]) if text and text.strip() else None

    def _sample(self) -> None:
        used = self._used()
        if used is not None:
            self.peak_mib = max(self.peak_mib or 0.0, used)
        apps = _run_text(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])
        for row in (apps or "").splitlines():
            parts = [part.strip() for part in row.split(",")]
            if len(parts) == 2 and parts[0].isdigit() and parts[1].replace(".", "", 1).isdigit():
                self.per_pid[int(parts[0])] = max(self.per_pid.get(int(parts[0]), 0.0), float(parts[1]))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> MemorySampler:
        if self.available:
            self.baseline_mib = self._used()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.available:
            self._stop.set()
            self._thread.join()

    def summary(self, pids: list[int]) -> dict[str, Any]:
        if not self.available:
            return {"memory": None, "memory_reason": "nvidia-smi not found"}
        above = None if self.peak_mib is None or self.baseline_mib is None else self.peak_mib - self.baseline_mib
        return {"device_peak_above_start_mib": above,
                "device_peak_above_start_per_job_mib": None if above is None else round(above / len(pids), 1),
                "per_process_peak_mib": {str(pid): self.per_pid[pid] for pid in pids if pid in self.per_pid} or None}


@dataclass
class Budget:
    seconds: float
    started: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.started)


def run_jobs(requests: list[dict[str, Any]], *, budget: Budget) -> list[dict[str, Any]]:
    """Start every request's job at once, each its own process; wait for all (or the budget)."""
    processes = []
    for request in requests:
        directory = Path(request["log"]).parent
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "request.json"
        path.write_text(json.dumps(request, indent=1))
        output = open(directory / "process.out", "w")  # noqa: SIM115 - closed below
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "crowdskin.train.job", str(path)], stdout=output,
                                   stderr=subprocess.STDOUT, env=job_environment())
        processes.append((request, process, output, started))
    # Polled rather than waited for in turn: each job's wall time ends when that job ends.
    ended: dict[int, tuple[int | str, float]] = {}
    while len(ended) < len(processes):
        for index, (_, process, _, started) in enumerate(processes):
            if index not in ended and process.poll() is not None:
                ended[index] = (process.returncode, time.perf_counter() - started)
        if len(ended) < len(processes) and budget.left() <= 0:
            for index, (_, process, _, started) in enumerate(processes):
                if index not in ended:
                    process.kill()
                    process.wait()
                    ended[index] = ("killed: time budget spent", time.perf_counter() - started)
        time.sleep(0.2)
    results = []
    for index, (request, process, output, _) in enumerate(processes):
        output.close()
        returncode, wall = ended[index]
        results.append(job_result(request, returncode, wall, pid=process.pid))
    return results


def job_result(request: dict[str, Any], returncode: int | str, wall: float, *, pid: int) -> dict[str, Any]:
    directory = Path(request["log"]).parent
    log = Path(request["log"]).read_text(errors="replace") if Path(request["log"]).is_file() else ""
    settings = request["settings"]
    parsed = parse_job_log(log)
    result: dict[str, Any] = {
        "backbone": request["backbone"], "fold": request["fold"], "pid": pid, "returncode": returncode,
        "wall_s": round(wall, 2), "input_size": settings["input_size"], "batch": settings["batch_size"],
        "epochs": settings["epochs"], "steps_per_epoch": settings["steps_per_epoch"],
        "validation_steps": settings["validation_steps"], "mixed_precision": settings["mixed_precision"],
        "jobs_per_gpu": request["execution"]["jobs_per_gpu"], **parsed,
    }
    steady = parsed["steady_epoch_s"]
    # Training images per second of a steady epoch, its validation steps included.
    result["images_per_s"] = round(settings["batch_size"] * settings["steps_per_epoch"] / steady, 1) if steady else None
    metrics_path = Path(request["out_dir"]) / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        result.update(job_seconds=metrics.get("job_seconds"), train_seconds=metrics.get("train_seconds"),
                      test_auc=metrics.get("test_auc"))
    if returncode != 0:
        process_out = directory / "process.out"
        tail = process_out.read_text(errors="replace")[-1500:] if process_out.is_file() else ""
        result["error_tail"] = (log[-1500:] + "\n" + tail).strip()
    return result


# -- the parts ---------------------------------------------------------------------------------------

def part_grid(study: Study, profile: Profile, *, work: Path, budget: Budget, compile_cache: Path | None,
              extra: dict[str, Any]) -> dict[str, Any]:
    """One job at a time: per backbone, fold 0 on an empty compilation cache, later folds warm."""
    jobs = []
    skipped = []
    # Without a cache a later fold compiles as the first did: one fold per backbone saves the time.
    folds = profile.folds if compile_cache is not None else 1
    # A folder given with --compile-cache may hold programs of an earlier call: then no job is cold.
    starts_empty = compile_cache is None or not compile_cache.exists() or not any(compile_cache.iterdir())
    for backbone in profile.backbones:
        for fold in range(folds):
            if budget.left() < 30:
                skipped.append({"backbone": backbone, "fold": fold, "reason": "time budget spent"})
                continue
            request = job_request(study, backbone=backbone, fold=fold, epochs=profile.epochs, steps=profile.steps,
                                  out_dir=work / "grid" / backbone / f"fold{fold}", threads=profile.threads,
                                  extra=extra)
            [result] = run_jobs([request], budget=budget)
            result["cache"] = ("off" if compile_cache is None else "cold" if fold == 0 and starts_empty else "warm")
            jobs.append(result)
    return {"part": "grid", "task": TASK, "compile_cache": str(compile_cache) if compile_cache else None,
            "compile_cache_note": None if compile_cache else
            "no compilation-cache setting in this version: every job compiles, so one fold per backbone ran "
            "and no warm jobs were measured",
            "jobs": jobs, "skipped": skipped}


def part_share(study: Study, profile: Profile, *, work: Path, budget: Budget,
               extra: dict[str, Any], estimate_s: float | None) -> dict[str, Any]:
    """1..4 jobs of one backbone at once, as `jobs_per_gpu` runs them; total images/s, memory per job."""
    rounds = []
    skipped = []
    # Every round's memory is measured as jobs sharing measure it: JAX allocating on demand (with
    # jobs_per_gpu 1 a job would take 75 % of the GPU at start, whatever it uses).
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    n_folds = 5
    for count in profile.share_jobs:
        needed = (estimate_s or 30) * 1.5
        if budget.left() < needed:
            skipped.append({"jobs": count, "reason": f"time budget: {budget.left():.0f} s left, about "
                                                     f"{needed:.0f} s needed"})
            continue
        requests = [job_request(study, backbone=profile.share_backbone, fold=index % n_folds,
                                epochs=profile.share_epochs, steps=profile.share_steps,
                                out_dir=work / "share" / f"{count}jobs" / f"job{index}", threads=profile.threads,
                                jobs_per_gpu=count, extra=extra)
                    for index in range(count)]
        started = time.perf_counter()
        with MemorySampler() as sampler:
            jobs = run_jobs(requests, budget=budget)
        rates = [job["images_per_s"] for job in jobs]
        total = round(sum(rates), 1) if all(rates) else None
        rounds.append({"jobs": count, "wall_s": round(time.perf_counter() - started, 2),
                       "total_images_per_s": total, "images_per_s_per_job": rates,
                       **sampler.summary([job["pid"] for job in jobs]), "job_results": jobs})
    alone = next((r["total_images_per_s"] for r in rounds if r["jobs"] == 1), None)
    for entry in rounds:
        entry["speedup_over_one"] = (round(entry["total_images_per_s"] / alone, 3)
                                     if alone and entry["total_images_per_s"] else None)
    return {"part": "share", "backbone": profile.share_backbone,
            # Jobs start together but finish compiling apart: a job's first steady epoch may run
            # beside a neighbour still compiling (on the CPU). The median epoch keeps that out.
            "images_per_s_is": "per job: batch x steps / its median steady epoch (validation included); summed",
            "env": {"XLA_PYTHON_CLIENT_PREALLOCATE": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")},
            "rounds": rounds, "skipped": skipped}


def project(grid: dict[str, Any], share: dict[str, Any] | None, *, paper: dict[str, Any],
            backbones: tuple[str, ...], grid_jobs: int) -> dict[str, Any]:
    """The paper grid's time on one GPU from the cut-down jobs.

    A job = its fixed part (process start, imports, model build, compilation, predict, outputs:
    wall time less its epochs) + the paper's epochs x a steady epoch scaled from the cut-down's steps
    to the paper's (validation steps are in the same 2:1 ratio in both, so they scale alike).
    Per backbone: the first job as fold 0 ran (cold cache), every later one as the later folds ran.
    With k jobs per GPU: divided by the measured speed-up of k jobs at once (one backbone's).
    The grid's jobs are split evenly over `backbones`; without a job of each, no grid total.
    """
    per_backbone = {}
    notes = []
    jobs_per_backbone = grid_jobs // len(backbones)
    for backbone in backbones:
        done = [job for job in grid["jobs"] if job["backbone"] == backbone and job["returncode"] == 0
                and job["steady_epoch_s"]]
        if not done:
            notes.append(f"{backbone}: no finished job to project from")
            continue

        def projected(job: dict[str, Any]) -> float:
            fixed = job["wall_s"] - job["epochs"] * job["steady_epoch_s"]
            return fixed + paper["epochs"] * job["steady_epoch_s"] * paper["steps_per_epoch"] / job["steps_per_epoch"]

        first = [projected(job) for job in done if job["fold"] == 0]
        later = [projected(job) for job in done if job["fold"] > 0] or first
        first_s = first[0] if first else statistics.median(later)
        later_s = statistics.median(later)
        per_backbone[backbone] = {"first_job_s": round(first_s, 1), "later_job_s": round(later_s, 1),
                                  "jobs": jobs_per_backbone,
                                  "hours": round((first_s + (jobs_per_backbone - 1) * later_s) / 3600, 3)}
    complete = len(per_backbone) == len(backbones)
    one_at_a_time = round(sum(b["hours"] for b in per_backbone.values()), 3) if complete else None
    sharing = {}
    for entry in (share or {}).get("rounds", []):
        if entry.get("speedup_over_one") and one_at_a_time is not None:
            sharing[str(entry["jobs"])] = round(one_at_a_time / entry["speedup_over_one"], 3)
    if sharing:
        notes.append(f"jobs_per_gpu: the speed-up measured on {share['backbone']} applied to every backbone")
    return {"part": "projection", "paper": paper, "grid_jobs": grid_jobs, "per_backbone": per_backbone,
            "grid_hours_one_job_at_a_time": one_at_a_time, "grid_hours_by_jobs_per_gpu": sharing, "notes": notes}


def part_profile(profile: Profile, *, train: dict[str, Any], work: Path, budget: Budget) -> dict[str, Any]:
    """A trace of the share backbone's steps at the study's batch, in its own process."""
    if budget.left() < 60:
        return {"part": "profile", "skipped": f"time budget: {budget.left():.0f} s left"}
    size = profile.size or int(train["input_size_by_backbone"].get(profile.share_backbone, train["input_size"]))
    arguments = {"backbone": profile.share_backbone, "size": size, "batch": train["batch_size"],
                 "precision": str(train["mixed_precision"]).lower(), "steps": profile.profile_steps,
                 "images": max(64, 4 * train["batch_size"]), "trace_dir": str(work / "trace"),
                 "workers": max(1, profile.threads)}
    done = subprocess.run([sys.executable, "-m", MODULE, "--trace-step", json.dumps(arguments)], capture_output=True,
                          text=True, env={**job_environment(), "JAX_LOG_COMPILES": "0"},
                          timeout=max(1.0, budget.left()))
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"part": "profile", "arguments": arguments, "error_tail": (done.stdout + done.stderr)[-2000:]}
    return {"part": "profile", "arguments": arguments, **json.loads(lines[-1])}


def summarise_trace(trace: dict[str, Any], *, wall_us: float | None = None) -> dict[str, Any]:
    """Device busy time in a Chrome-format trace (jax.profiler's *.trace.json.gz): the union of the
    events on GPU streams against the traced span, and the kernels that took most of it."""
    names = {event["pid"]: event.get("args", {}).get("name", "") for event in trace.get("traceEvents", [])
             if event.get("ph") == "M" and event.get("name") == "process_name"}
    device_pids = {pid for pid, name in names.items() if "/device:GPU" in name}
    # A GPU's process also holds derived lines ("XLA Modules", "XLA Ops") spanning whole programs;
    # only its streams' lines are kernels.
    streams = {(event["pid"], event.get("tid")) for event in trace.get("traceEvents", [])
               if event.get("ph") == "M" and event.get("name") == "thread_name" and event["pid"] in device_pids
               and str(event.get("args", {}).get("name", "")).startswith("Stream")}
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X" and "dur" in e]
    if not events:
        return {"device_busy_fraction": None, "reason": "no timed events in the trace"}
    span_start = min(e["ts"] for e in events)
    span = wall_us or (max(e["ts"] + e["dur"] for e in events) - span_start)
    device = sorted((e["ts"], e["ts"] + e["dur"], e.get("name", "")) for e in events if e["pid"] in device_pids
                    and (not streams or (e["pid"], e.get("tid")) in streams))
    busy = 0.0
    end = -1.0
    for start, stop, _ in device:
        if stop > end:
            busy += stop - max(start, end)
            end = stop
    kernels: dict[str, float] = {}
    for start, stop, name in device:
        kernels[name] = kernels.get(name, 0.0) + stop - start
    top = sorted(kernels.items(), key=lambda item: -item[1])[:10]
    total = sum(kernels.values()) or 1.0
    return {"traced_span_ms": round(span / 1e3, 2), "device_busy_ms": round(busy / 1e3, 2),
            "device_busy_fraction": round(busy / span, 4) if device else None,
            "device_processes": sorted(names[pid] for pid in device_pids), "stream_lines": len(streams),
            "top_device_ops": [{"name": name[:120], "ms": round(us / 1e3, 2), "share": round(us / total, 4)}
                               for name, us in top]}


def trace_step(arguments: dict[str, Any]) -> dict[str, Any]:
    """In its own process: the training step of bench_backends (cache -> CacheBatches -> model with
    augmentation -> fit), a warm-up epoch, then one traced epoch; its step time and device busy time."""
    from crowdskin.train.backend import select

    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    select("jax", threads=arguments["workers"])
    import jax
    import keras

    from crowdskin.train import bench_backends
    from crowdskin.train.models import build_model, compile_model, make_optimizer
    from crowdskin.train.pipeline import CacheBatches
    from crowdskin.train.runtime import precision_policy

    train = bench_backends._paper_train_settings()
    precision = {"false": False, "true": True}.get(arguments["precision"], arguments["precision"])
    keras.mixed_precision.set_global_policy(precision_policy(precision))
    keras.utils.set_random_seed(0)
    from crowdskin.train import models

    model = build_model(arguments["backbone"], arguments["size"], heads=(), preprocess=train["preprocess"],
                        augment=models.augmentation(train["augment"]))
    compile_model(model, optimizer=make_optimizer(train["optimizer"], train["learning_rate"]),
                  loss_weights=None, jit_compile=True)
    trace_dir = Path(arguments["trace_dir"])
    cache = bench_backends.make_cache(trace_dir.parent / "trace_cache.npy", arguments["images"], arguments["size"])
    n, batch, steps = len(cache), arguments["batch"], arguments["steps"]
    loader = CacheBatches(cache, np.arange(n), np.arange(n) % 2, {}, batch_size=batch, training=True,
                          workers=arguments["workers"])
    timer = bench_backends._EpochTimer().callback
    model.fit(loader, epochs=2, steps_per_epoch=steps, callbacks=[timer], shuffle=False, verbose=0)
    started = time.perf_counter()
    with jax.profiler.trace(str(trace_dir)):
        model.fit(loader, epochs=1, steps_per_epoch=steps, callbacks=[timer], shuffle=False, verbose=0)
    traced_wall = time.perf_counter() - started
    [trace_file] = sorted(trace_dir.rglob("*.trace.json.gz"))[-1:] or [None]
    summary: dict[str, Any] = {"reason": "jax.profiler wrote no trace.json.gz"}
    if trace_file is not None:
        with gzip.open(trace_file, "rb") as handle:
            summary = summarise_trace(json.load(handle), wall_us=traced_wall * 1e6)
    steady = timer.seconds[1]
    return {"device": jax.devices()[0].device_kind, "step_ms_untraced": round(steady / steps * 1e3, 3),
            "step_ms_traced": round(timer.seconds[-1] / steps * 1e3, 3),
            "images_per_s": round(batch * steps / steady, 1),
            **summary}


# -- the call ----------------------------------------------------------------------------------------

def write_json(out: Path, name: str, payload: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.tmp"
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    os.replace(tmp, out / name)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}",
                                     description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "results/bench_gpu"),
                        help="folder for the JSON results ($OUT when set)")
    parser.add_argument("--tiny", action="store_true", help="smallcnn at 32 px, two steps: the code path on CPU")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--compile-cache", type=Path, default=None,
                        help="the compilation cache's folder (default: a fresh one under the work folder); "
                             "used where this version has the setting")
    parser.add_argument("--steps-per-execution", type=int, default=None,
                        help="steps per execution for every job, where this version has the setting")
    parser.add_argument("--budget-s", type=float, default=None, help="stop starting work after this many seconds")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--trace-step", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.trace_step:
        print(json.dumps(trace_step(json.loads(args.trace_step))), flush=True)
        return 0
    profile = PROFILES["tiny" if args.tiny else "paper"]
    budget = Budget(args.budget_s or profile.budget_s)
    features = optional_settings()
    notes = []
    if args.steps_per_execution is not None and not features["steps_per_execution"]:
        notes.append("--steps-per-execution ignored: this version has no steps_per_execution setting")
    if not features["compile_cache"]:
        notes.append("no compilation-cache setting (execution.train.*compil*cache*) in this version: jobs compile "
                     "afresh, warm-cache measurements skipped")
    train, config = study_settings(profile, steps_per_execution=args.steps_per_execution, features=features)
    env = environment(argv, profile, features) | {"notes": notes}
    write_json(args.out, "environment.json", env)
    print(json.dumps({"environment": {k: env[k] for k in ("gpu", "driver", "cuda", "versions")}, "notes": notes}),
          flush=True)

    scratch = None if args.work else tempfile.TemporaryDirectory(prefix="bench_gpu_")
    work = args.work or Path(scratch.name)  # type: ignore[union-attr]
    try:
        cache_dir = (args.compile_cache or work / "compile_cache").absolute()
        compile_cache = cache_dir if features["compile_cache"] else None
        extra = execution_extra(features, compile_cache=cache_dir, steps_per_execution=args.steps_per_execution)
        study = make_study(work / "study", train, profile)
        grid = share = None
        if "grid" in args.parts or "projection" in args.parts:
            grid = part_grid(study, profile, work=work, budget=budget, compile_cache=compile_cache, extra=extra)
            write_json(args.out, "grid.json", grid)
            _echo(grid)
        if "share" in args.parts:
            alone = [job["wall_s"] for job in (grid or {}).get("jobs", [])
                     if job["backbone"] == profile.share_backbone and job["returncode"] == 0]
            share = part_share(study, profile, work=work, budget=budget, extra=extra,
                               estimate_s=max(alone) if alone else None)
            write_json(args.out, "share.json", share)
            _echo(share)
        if "projection" in args.parts and grid is not None:
            grid_jobs = len(_paper_tasks(config)) * config["split"]["n_folds"] * len(config["train"]["backbones"])
            paper = {key: config["train"][key] for key in ("epochs", "steps_per_epoch", "validation_steps",
                                                           "batch_size")}
            # --tiny: its one backbone stands for the paper's three.
            projection = project(grid, share, paper=paper, backbones=profile.backbones, grid_jobs=grid_jobs)
            write_json(args.out, "projection.json", projection)
            _echo(projection)
        if "profile" in args.parts:
            result = part_profile(profile, train=train, work=work, budget=budget)
            write_json(args.out, "profile.json", result)
            _echo(result)
        _archive_logs(work, args.out)
    finally:
        if scratch is not None:
            scratch.cleanup()
    print(json.dumps({"done": True, "seconds": round(budget.seconds - budget.left(), 1), "out": str(args.out)}),
          flush=True)
    return 0


def _paper_tasks(config: dict[str, Any]) -> list[Any]:
    from crowdskin.train.tasks import task_grid

    return task_grid(config["train"])


def _echo(payload: dict[str, Any]) -> None:
    """A short line per part on stdout (the device tool returns the output's tail)."""
    brief = {key: value for key, value in payload.items() if key not in ("jobs", "rounds")}
    if "jobs" in payload:
        brief["jobs"] = [{k: job.get(k) for k in ("backbone", "fold", "cache", "returncode", "wall_s", "compile_s",
                                                  "xla_compile_s", "cache_hits", "images_per_s")}
                         for job in payload["jobs"]]
    if "rounds" in payload:
        brief["rounds"] = [{k: r.get(k) for k in ("jobs", "total_images_per_s", "speedup_over_one",
                                                  "device_peak_above_start_per_job_mib")} for r in payload["rounds"]]
    print(json.dumps(brief, default=str), flush=True)


def _archive_logs(work: Path, out: Path) -> None:
    """Every job's log and request in one file (the device tool returns at most 8 files)."""
    import tarfile

    with tarfile.open(out / "job_logs.tar.gz", "w:gz") as archive:
        for path in sorted(work.rglob("*")):
            if path.is_file() and path.name in ("job.log", "request.json", "process.out", "metrics.json"):
                archive.add(path, arcname=str(path.relative_to(work)))


if __name__ == "__main__":
    sys.exit(main())
