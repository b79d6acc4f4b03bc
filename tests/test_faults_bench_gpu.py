"""The GPU benchmark's whole call on CPU (`--tiny`: smallcnn at 32 px, two steps): the cut-down
grid, jobs sharing a device, the projection and the step profile all run through the real job code,
and every result file holds the fields docs/benchmarks.md quotes. About two minutes on two cores,
so `make test` skips it and `make test-faults` runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile

import pytest

from workflow_runner import REPO, fault_test

pytestmark = [pytest.mark.slow, fault_test]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    work = tmp_path_factory.mktemp("work")
    # The GPU machine has no MLflow and no Snakemake: neither may be needed by the script or its jobs.
    absent = tmp_path_factory.mktemp("absent")
    for name in ("mlflow", "snakemake"):
        (absent / name).mkdir()
        (absent / name / "__init__.py").write_text(f"raise ImportError('{name} is not on the GPU machine')\n")
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(absent), str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("OUT", None)
    done = subprocess.run([sys.executable, "-m", "crowdskin.train.bench_gpu", "--tiny", "--out", str(out),
                           "--work", str(work), "--steps-per-execution", "2"], capture_output=True, text=True,
                          env=env, timeout=600, cwd=REPO)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return out, work, done.stdout


def _read(out, name):
    return json.loads((out / name).read_text())


def test_the_results_come_back_through_the_device_tool(tiny):
    out, _, stdout = tiny
    names = sorted(path.name for path in out.iterdir())
    assert names == ["environment.json", "grid.json", "job_logs.tar.gz", "profile.json", "projection.json",
                     "share.json"]
    # The device tool returns at most 8 files, named in letters, digits, '.', '_' and '-'.
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in names)
    assert json.loads(stdout.strip().splitlines()[-1])["done"] is True


def test_the_environment_names_the_device_versions_and_command(tiny):
    out, _, _ = tiny
    env = _read(out, "environment.json")
    assert "--tiny" in env["command"] and "--steps-per-execution 2" in env["command"]
    assert env["versions"]["jax"] and env["versions"]["keras"]
    assert env["profile"]["name"] == "tiny"
    assert set(env["optional_settings"]) == {"compile_cache", "steps_per_execution"}
    for feature, missing in (("compile_cache", "no compilation-cache setting"),
                             ("steps_per_execution", "--steps-per-execution ignored")):
        # A setting this version lacks is named in the notes, not silently dropped.
        assert (env["optional_settings"][feature] is None) == any(missing in note for note in env["notes"])
    if env["gpu"] is None:
        assert "nvidia-smi" in env["reason"]


def test_the_grid_ran_every_job_through_the_job_code_with_its_timings(tiny):
    out, work, _ = tiny
    grid = _read(out, "grid.json")
    # Two folds where the compilation cache lets the second find the first's programs; else one.
    folds = [0] if grid["compile_cache"] is None else [0, 1]
    assert [(job["backbone"], job["fold"]) for job in grid["jobs"]] == [("smallcnn", fold) for fold in folds]
    for job in grid["jobs"]:
        assert job["returncode"] == 0, job.get("error_tail")
        assert len(job["epoch_seconds"]) == 2 and job["compile_s"] is not None
        assert job["xla_compilations"] > 0 and job["xla_compile_s"] > 0
        assert job["images_per_s"] > 0 and job["wall_s"] > job["job_seconds"] > 0
        assert job["cache"] == ("off" if grid["compile_cache"] is None else "cold" if job["fold"] == 0 else "warm")
    request = json.loads((work / "grid" / "smallcnn" / "fold0" / "request.json").read_text())
    assert request["settings"]["backend"] == "jax" and request["settings"]["epochs"] == 2
    with tarfile.open(out / "job_logs.tar.gz") as archive:
        assert "grid/smallcnn/fold0/job.log" in archive.getnames()


def test_jobs_sharing_a_device_give_total_images_per_second(tiny):
    out, _, _ = tiny
    share = _read(out, "share.json")
    assert [r["jobs"] for r in share["rounds"]] == [1, 2] and share["skipped"] == []
    assert share["env"]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    for entry in share["rounds"]:
        assert all(job["returncode"] == 0 and job["jobs_per_gpu"] == entry["jobs"] for job in entry["job_results"])
        assert entry["total_images_per_s"] == pytest.approx(sum(entry["images_per_s_per_job"]), abs=0.2)
        assert entry["speedup_over_one"] > 0
    # Two jobs ran at once: their lifetimes overlap.
    first, second = share["rounds"][1]["job_results"]
    assert abs(first["wall_s"] - second["wall_s"]) < max(first["wall_s"], second["wall_s"])


def test_the_paper_grid_is_projected_and_the_step_profiled(tiny):
    out, _, _ = tiny
    projection = _read(out, "projection.json")
    assert projection["grid_jobs"] == 195 and projection["paper"]["epochs"] == 30
    assert projection["grid_hours_one_job_at_a_time"] > 0
    assert set(projection["grid_hours_by_jobs_per_gpu"]) == {"1", "2"}
    profile = _read(out, "profile.json")
    assert profile["step_ms_untraced"] > 0 and profile["images_per_s"] > 0
    assert "device_busy_fraction" in profile  # None on CPU: no GPU streams in the trace
