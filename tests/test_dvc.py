"""`dvc repro` of the default config as a user's fresh clone meets it: the project's files (what git
tracks plus what it does not ignore) in a new git repository, with no results, no DVC cache and no
dvc.lock. One full run through dvc.yaml's stages, then: Snakemake agrees that nothing is left to do
and that DVC versions everything it wrote; a second `dvc repro` runs nothing; `dvc metrics show`
prints the AUCs; push, losing the cache and the outputs, and pull restore every file; a changed
crowd setting invalidates the crowd stage and the stages after it, and no other.

The run takes 7-10 minutes on two cores, so `make test` skips it; `make test-dvc` runs it, and
so does CI (`.ci/run`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# A fresh clone builds its own .venv (`make install`); the copy borrows this one through a symlink,
# which is where dvc.yaml's cmds look for Snakemake.
VENV = Path(sys.prefix)
DVC = VENV / "bin" / "dvc"
SNAKEMAKE = VENV / "bin" / "snakemake"
RESULTS = "results/default"
# Snakemake rewrites these on every job; they describe a run, so no stage versions them.
UNVERSIONED = (f"{RESULTS}/logs/", f"{RESULTS}/benchmarks/", "results/mlflow/")

dvc_test = pytest.mark.skipif(
    not os.environ.get("CROWDSKIN_DVC_TESTS"),
    reason="runs the whole default workflow through `dvc repro` (8-10 min): `make test-dvc` runs it (CI does)",
)
pytestmark = [pytest.mark.slow, dvc_test]


def _run(project: Path, *command: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    # The venv's editable install points at this checkout's src/; the copy must run its own code.
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    # The default MLflow store lives under the copy's results/; a user's tracking server is not ours.
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run([str(c) for c in command], cwd=project, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, command))} failed ({result.returncode}):\n"
            f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    return result


def _dvc(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(project, DVC, *args, check=check)


def _status(project: Path) -> dict:
    return json.loads(_dvc(project, "status", "--json").stdout or "{}")


def _git(project: Path, *args: str) -> None:
    _run(project, "git", "-c", "user.name=crowdskin-test", "-c", "user.email=test@example.invalid", *args)


def _cached_outs(project: Path) -> list[str]:
    """Every out of dvc.yaml that DVC keeps in its cache (metrics with cache: false stay in git)."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    paths = []
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                path, options = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
                if (options or {}).get("cache", True):
                    paths.append(path)
    return paths


def _hashes(project: Path, paths: list[str]) -> dict[str, str]:
    hashes = {}
    for path in paths:
        root = project / path
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for file in files:
            hashes[str(file.relative_to(project))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return hashes


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("dvc") / "crowdskin"
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_symlink():  # the package's links to its schemas and configs, kept as links
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            (project / name).symlink_to(os.readlink(source))
        elif source.is_file():  # a file deleted in the working tree is still in the index
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, project / name)
    (project / ".venv").symlink_to(VENV)
    # Reproduced from nothing: whatever lock the checkout holds describes data this copy lacks.
    (project / "dvc.lock").unlink(missing_ok=True)
    _git(project, "init", "-q")
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "snapshot")
    _dvc(project, "repro")
    return project


def test_repro_builds_what_snakemake_builds(project):
    assert (project / f"{RESULTS}/scores/metrics.json").is_file()
    assert (project / f"{RESULTS}/report.html").is_file()
    # Snakemake's own verdict on the same code, config and files: every target of its default run
    # exists and none needs a re-run (code, params or input changed), so the two runs agree.
    dry = _run(project, SNAKEMAKE, "-n", "--cores", "1")
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
    # Every file the workflow writes is versioned by some stage (a new rule's outputs must be).
    summary = _run(project, SNAKEMAKE, "--summary", "--cores", "1").stdout.splitlines()
    written = [line.split("\t")[0] for line in summary[1:] if line.strip()]
    assert written
    outs = _cached_outs(project) + [f"{RESULTS}/scores/metrics.json"]
    unversioned = [
        path for path in written
        if not path.startswith(UNVERSIONED) and not any(path == o or path.startswith(o + "/") for o in outs)
    ]
    assert not unversioned, f"written by Snakemake, versioned by no dvc.yaml stage: {unversioned}"


def test_the_readme_make_run_agrees_and_rebuilds_the_report(project):
    """`make run` (the README's first command) after `dvc repro`: its workflow finds nothing to do,
    and its report step writes the report. `-o` takes the borrowed .venv as installed."""
    made = _run(project, "make", "-o", ".venv/.installed", "run")
    assert "Nothing to be done" in made.stdout + made.stderr, made.stdout[-3000:]
    assert (project / f"{RESULTS}/report.html").stat().st_size > 0
    # the report is the evaluate stage's out: back to the version dvc.lock records
    _dvc(project, "checkout", "--force", f"{RESULTS}/report.html")


def test_second_repro_runs_nothing(project):
    again = _dvc(project, "repro")
    assert "Running stage" not in again.stdout, again.stdout
    assert _status(project) == {}


def test_metrics_show_prints_the_aucs(project):
    metrics = json.loads((project / f"{RESULTS}/scores/metrics.json").read_text())
    baseline = metrics["smallcnn"]["baseline"]["mean_auc"]
    shown = _dvc(project, "metrics", "show", "--precision", "6").stdout
    assert "smallcnn.baseline.mean_auc" in shown, shown
    assert f"{baseline:.6f}".rstrip("0") in shown, shown
    # Both plots render from their declared columns.
    _dvc(project, "plots", "show", "--json")


def test_the_readme_mlflow_ui_command_serves_the_runs(project):
    """The README's `mlflow ui --backend-store-uri sqlite:///results/mlflow/mlflow.db` on the default
    run: its experiment is there with every training job's run."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    server = subprocess.Popen([str(VENV / "bin" / "mlflow"), "ui", "--backend-store-uri",
                               "sqlite:///results/mlflow/mlflow.db", "--port", str(port)], cwd=project, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    try:
        deadline, experiment = time.monotonic() + 90, None
        while experiment is None and time.monotonic() < deadline:
            assert server.poll() is None, f"mlflow ui exited: {server.stderr.read()[-2000:]}"
            try:
                url = f"{base}/experiments/get-by-name?experiment_name=default"
                with urllib.request.urlopen(url, timeout=5) as reply:
                    experiment = json.loads(reply.read())["experiment"]
            except OSError:
                time.sleep(0.5)
        assert experiment is not None, "mlflow ui did not answer within 90 s"
        search = urllib.request.Request(
            f"{base}/runs/search", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"experiment_ids": [experiment["experiment_id"]], "max_results": 1000}).encode())
        with urllib.request.urlopen(search, timeout=30) as reply:
            names = {run["info"]["run_name"] for run in json.loads(reply.read()).get("runs", [])}
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    runs = csv.DictReader((project / f"{RESULTS}/train/runs.csv").read_text().splitlines())
    jobs = {f"{row['task']}/{row['backbone']}/fold{row['fold']}" for row in runs}
    assert jobs and jobs <= names


# The warm training worker outlives the run that started it and logs its own idle exit there later:
# the log of a process, not an output a job rewrote.
_WORKER_LOG = "logs/train_worker.log"


def _fingerprints(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file under `folder`: a job that rewrote one changes its mtime."""
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*"))
            if path.is_file() and path.relative_to(folder).as_posix() != _WORKER_LOG}


def test_a_real_sample_run_beside_the_default_run_touches_none_of_its_files(project, shared_data):
    """Fails if any output path is shared between configs: the real sample's ingestion (a cut-down
    target) beside the finished default run, then a forced default job beside the real one."""
    default_before = _fingerprints(project / RESULTS)
    real = ["--configfile", "config/real-sample.yaml", "--config", f"mirror={shared_data}"]
    target = "results/real-sample/data/images.parquet"
    _run(project, SNAKEMAKE, "--cores", "2", target, *real)
    assert (project / target).stat().st_size > 0
    assert _fingerprints(project / RESULTS) == default_before
    assert _status(project) == {}  # and DVC agrees: the default run's versioned data is as it was
    real_before = _fingerprints(project / "results" / "real-sample")
    _run(project, SNAKEMAKE, "--cores", "2", f"{RESULTS}/data/download_report.csv", "--forcerun", "download_report")
    assert _fingerprints(project / "results" / "real-sample") == real_before
    again = _run(project, SNAKEMAKE, "--cores", "2", "-n", target, *real)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_push_then_pull_restores_the_data(project):
    paths = _cached_outs(project)
    before = _hashes(project, paths)
    assert len(before) > 100  # the synthetic images alone are hundreds of files
    _dvc(project, "push")
    assert (project / ".dvc-storage").is_dir()  # the default remote of .dvc/config
    shutil.rmtree(project / ".dvc" / "cache")
    for path in paths:
        target = project / path
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    assert _status(project)  # the outputs are really gone
    _dvc(project, "pull")
    assert _hashes(project, paths) == before
    assert _status(project) == {}


def test_crowd_setting_invalidates_crowd_and_downstream_only(project):
    config_file = project / "config" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    # Rejects part of the honest workers' first HITs (the synthetic ones take 65-150 s), so the
    # funnel, and with it the crowd labels, really change.
    config["crowd"].setdefault("mturk", {})["first_hit_min_s"] = 100
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    # DVC judges each stage by its own deps: the stages that read the crowd section change now
    # (evaluate too: its report shows the whole config) ...
    direct = _status(project)
    assert set(direct) == {"crowd", "evaluate"}, direct
    # ... and the training stage once the crowd stage has re-run and its outputs differ.
    _dvc(project, "repro", "--single-item", "crowd")
    after_crowd = _status(project)
    assert set(after_crowd) == {"train", "evaluate"}, after_crowd
    assert any(
        "results/default/crowd" in change.get("changed deps", {})
        for change in after_crowd["train"] if isinstance(change, dict)
    ), after_crowd["train"]
    assert set(direct) | set(after_crowd) == {"crowd", "train", "evaluate"}
