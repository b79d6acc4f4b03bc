"""The GPU benchmark's pieces that need no GPU and no training: reading a job's log, a trace's
device busy time, the projection of the paper grid, and a job request as the workflow builds it.
The whole script, run with --tiny on CPU: tests/test_faults_bench_gpu.py."""

from __future__ import annotations

import pytest

from crowdskin.train import bench_gpu
from crowdskin.train.bench_gpu import PROFILES, job_request, make_study, parse_job_log, project, summarise_trace

# A job's log as crowdskin.train.job writes it with JAX_LOG_COMPILES=1 (Keras verbose=2 epochs).
JOB_LOG = """\
2026-12-03 10:00:01 INFO jax: 1 GPU(s), 4 thread(s), policy mixed_bfloat16, jit True, deterministic False
2026-12-03 10:00:02 INFO Keras on jax ready after 3.2 s
2026-12-03 10:00:09 WARNING Finished XLA compilation of jit(one_train_step) in 25.500000000 sec
2026-12-03 10:00:09 WARNING Persistent compilation cache hit for 'jit_one_test_step' with key 'abc'
2026-12-03 10:00:10 WARNING Finished XLA compilation of jit(one_test_step) in 4.250000000 sec
Epoch 1/3
20/20 - 31s - 2s/step - auc: 0.5012 - loss: 0.7000 - val_auc: 0.5000 - val_loss: 0.6900
Epoch 2/3
20/20 - 1s - 30ms/step - auc: 0.5100 - loss: 0.6950 - val_auc: 0.5000 - val_loss: 0.6890
Epoch 3/3
20/20 - 1s - 32ms/step - auc: 0.5200 - loss: 0.6900 - val_auc: 0.5000 - val_loss: 0.6880
2026-12-03 10:00:20 INFO fit 33.1 s
2026-12-03 10:00:21 INFO predict 1.4 s
"""


def test_a_jobs_log_gives_its_epochs_compile_time_and_cache_hits():
    parsed = parse_job_log(JOB_LOG)
    # steps x time per step where that is finer than the whole seconds ("2s/step" is not)
    assert parsed["epoch_seconds"] == [31.0, 0.6, 0.64]
    assert parsed["first_epoch_s"] == 31.0 and parsed["steady_epoch_s"] == 0.62
    assert parsed["compile_s"] == pytest.approx(30.38)
    assert parsed["xla_compile_s"] == 29.75 and parsed["xla_compilations"] == 2
    assert parsed["xla_slowest"][0] == {"function": "jit(one_train_step)", "s": 25.5}
    assert parsed["cache_hits"] == 1 and parsed["cache_misses"] == 0
    assert (parsed["ready_s"], parsed["predict_s"], parsed["gpus"], parsed["policy"]) == (3.2, 1.4, 1, "mixed_bfloat16")


def test_a_log_without_a_steady_epoch_gives_no_compile_time():
    parsed = parse_job_log("Epoch 1/1\n2/2 - 3s - 1s/step - loss: 0.5\n")
    assert parsed["epoch_seconds"] == [3.0] and parsed["steady_epoch_s"] is None and parsed["compile_s"] is None


def test_device_busy_time_counts_overlapping_kernels_once_and_only_kernels():
    trace = {"traceEvents": [
        {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/host:CPU"}},
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 7, "args": {"name": "Stream #7(Compute)"}},
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 9, "args": {"name": "XLA Modules"}},
        {"ph": "X", "pid": 1, "tid": 7, "ts": 0, "dur": 400, "name": "conv"},
        {"ph": "X", "pid": 1, "tid": 7, "ts": 300, "dur": 200, "name": "bn"},  # overlaps conv by 100 us
        {"ph": "X", "pid": 1, "tid": 7, "ts": 600, "dur": 100, "name": "conv"},
        {"ph": "X", "pid": 1, "tid": 9, "ts": 0, "dur": 700, "name": "jit_train_step"},  # the program, not a kernel
        {"ph": "X", "pid": 2, "ts": 0, "dur": 1000, "name": "python step"},
    ]}
    summary = summarise_trace(trace)
    assert summary["traced_span_ms"] == 1.0 and summary["device_busy_ms"] == 0.6
    assert summary["device_busy_fraction"] == 0.6
    assert summary["top_device_ops"][0] == {"name": "conv", "ms": 0.5, "share": 0.7143}
    assert summarise_trace({"traceEvents": [{"ph": "X", "pid": 2, "ts": 0, "dur": 5}]})["device_busy_fraction"] is None


def _job(backbone: str, fold: int, wall: float, steady: float) -> dict:
    return {"backbone": backbone, "fold": fold, "returncode": 0, "wall_s": wall, "epochs": 3,
            "steps_per_epoch": 20, "steady_epoch_s": steady}


def test_the_paper_grid_is_projected_from_the_first_and_later_jobs_of_each_backbone():
    grid = {"jobs": [_job("resnet50", 0, 60.0, 1.0), _job("resnet50", 1, 20.0, 1.0),
                     {**_job("vgg16", 0, 50.0, 2.0), "returncode": 1}]}
    share = {"backbone": "resnet50", "rounds": [{"jobs": 1, "speedup_over_one": 1.0},
                                                {"jobs": 2, "speedup_over_one": 1.25}]}
    paper = {"epochs": 30, "steps_per_epoch": 100, "validation_steps": 50, "batch_size": 20}
    projection = project(grid, share, paper=paper, backbones=("resnet50",), grid_jobs=65)
    # fixed part = wall - 3 epochs; then 30 epochs of 5 x the cut-down's steady epoch
    first, later = 60 - 3 + 30 * 5, 20 - 3 + 30 * 5
    assert projection["per_backbone"]["resnet50"] == {"first_job_s": first, "later_job_s": later, "jobs": 65,
                                                      "hours": round((first + 64 * later) / 3600, 3)}
    hours = projection["grid_hours_one_job_at_a_time"]
    assert hours == projection["per_backbone"]["resnet50"]["hours"]
    assert projection["grid_hours_by_jobs_per_gpu"] == {"1": hours, "2": round(hours / 1.25, 3)}


def test_a_grid_missing_a_backbone_gets_no_total():
    grid = {"jobs": [_job("resnet50", 0, 60.0, 1.0), {**_job("vgg16", 0, 50.0, 2.0), "returncode": 1}]}
    paper = {"epochs": 30, "steps_per_epoch": 100, "validation_steps": 50, "batch_size": 20}
    projection = project(grid, None, paper=paper, backbones=("vgg16", "resnet50", "inceptionv3"), grid_jobs=195)
    assert projection["per_backbone"]["resnet50"]["jobs"] == 65
    assert projection["grid_hours_one_job_at_a_time"] is None and projection["grid_hours_by_jobs_per_gpu"] == {}
    assert {"vgg16: no finished job to project from",
            "inceptionv3: no finished job to project from"} <= set(projection["notes"])


def test_a_cut_down_job_keeps_the_papers_settings_and_the_workflows_request(tmp_path):
    """The request has the keys workflow/scripts/train_job.py gives a job; only epochs, steps and
    weights differ from config/paper.yaml's job settings."""
    from crowdskin.train.settings import job_settings
    from crowdskin.train.tasks import task_grid

    features = {"compile_cache": None, "steps_per_execution": None}
    paper_profile = PROFILES["paper"]
    train, config = bench_gpu.study_settings(paper_profile, steps_per_execution=None, features=features)
    study = make_study(tmp_path / "study", train, PROFILES["tiny"])  # few images: only the request is read
    study.inputs_by_size[384] = {"images": "images.parquet"}  # no 384 px cache written for this test
    request = job_request(study, backbone="resnet50", fold=1, epochs=3, steps=20, out_dir=tmp_path / "job",
                          threads=4, jobs_per_gpu=2, extra={"compile_cache": "/cache"})
    assert set(request) == {"task", "backbone", "fold", "settings", "seed", "split_scheme", "threads", "out_dir",
                            "log", "save_model", "check", "inputs", "execution"}
    assert request["execution"] == {"weights_dir": None, "warm_worker": False, "jobs_per_gpu": 2,
                                    "compile_cache": "/cache"}
    paper = config["train"]
    expected = job_settings(paper, {t.name: t for t in task_grid(paper)}["baseline"], "resnet50")
    changed = {key for key in expected if request["settings"][key] != expected[key]}
    assert changed == {"epochs", "steps_per_epoch", "validation_steps", "weights"}
    assert request["settings"]["validation_steps"] == 10 and request["settings"]["weights"] == "none"
    assert (request["settings"]["input_size"], request["settings"]["batch_size"],
            request["settings"]["mixed_precision"], request["settings"]["backend"]) == (384, 20, "bfloat16", "jax")


def test_the_optional_settings_go_where_this_version_keeps_them(tmp_path):
    """--compile-cache and --steps-per-execution reach a job through the request's execution
    (settings that change no result) or its train settings; absent settings are not invented."""
    absent = {"compile_cache": None, "steps_per_execution": None}
    train, _ = bench_gpu.study_settings(PROFILES["tiny"], steps_per_execution=4, features=absent)
    assert "steps_per_execution" not in train
    assert bench_gpu.execution_extra(absent, compile_cache=tmp_path, steps_per_execution=4) == {}
    in_execution = {"compile_cache": "execution.train.compile_cache",
                    "steps_per_execution": "execution.train.steps_per_execution"}
    assert bench_gpu.execution_extra(in_execution, compile_cache=tmp_path, steps_per_execution=4) == {
        "compile_cache": str(tmp_path), "steps_per_execution": 4}
    train, _ = bench_gpu.study_settings(PROFILES["tiny"], steps_per_execution=4,
                                        features={**absent, "steps_per_execution": "train.steps_per_execution"})
    assert train["steps_per_execution"] == 4
    found = bench_gpu.optional_settings()
    assert set(found) == {"compile_cache", "steps_per_execution"}
    assert all(place is None or place.startswith(("execution.train.", "train.")) for place in found.values())
