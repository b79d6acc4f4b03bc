"""Direct tests of module logic: archive entry refusal, manifest errors, atomic table writes, the
synthetic generator's seeding, MLflow helpers (flatten, URI precedence, retry) and the CLI parser.

The image cache, crowd/io.py and train/runtime.py are tested in test_modules_train_crowd.py.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.errors
import pytest

from crowdskin import cli
from crowdskin.acquire.archive import UnsafeArchiveError, safe_extract
from crowdskin.acquire.manifest import load_manifest
from crowdskin.config import section
from crowdskin.synthetic import SyntheticSettings, generate
from crowdskin.tables import CROWD_LABELS, write_atomic, write_table
from crowdskin.train import tracking

# --- acquire/archive.py -------------------------------------------------------------------------

ESCAPING = {
    "../x.txt": "outside",
    "a/../../x.txt": "outside",
    "..\\x.txt": "outside",
    "a\\..\\..\\x.txt": "outside",
    "/tmp/x.txt": "absolute",
    "\\x.txt": "absolute",
    "C:\\x.txt": "absolute",
    "C:/x.txt": "absolute",
    "c:x.txt": "absolute",
}


def _tar(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tf:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tf.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                tf.addfile(info, io.BytesIO(entry[1]))
    return path


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize("kind", ["tar", "zip"])
@pytest.mark.parametrize("name", list(ESCAPING))
def test_archive_entry_escaping_the_destination_is_refused(tmp_path, kind, name):
    """Catches: dropping the `\\` -> `/` normalisation, the drive-letter check or the `..` check."""
    box = tmp_path / "box"
    box.mkdir()
    archive = (_tar(box / "evil.tar", [(name, b"evil")]) if kind == "tar"
               else _zip(box / "evil.zip", {name: b"evil"}))
    with pytest.raises(UnsafeArchiveError, match=ESCAPING[name]) as error:
        safe_extract(archive, box / "deep" / "out", kind=kind)
    assert repr(name) in str(error.value)  # the message names the entry
    assert [p.name for p in _files_under(tmp_path)] == [archive.name]  # nothing written anywhere


def _link(name: str, kind: bytes, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("link", [
    _link("hard", tarfile.LNKTYPE, "ok.txt"),
    _link("soft", tarfile.SYMTYPE, "ok.txt"),
    _link("soft_out", tarfile.SYMTYPE, "../../outside"),
    _link("fifo", tarfile.FIFOTYPE, ""),
], ids=["hardlink", "symlink", "symlink-out", "fifo"])
def test_tar_links_and_special_files_are_refused(tmp_path, link):
    """Catches: refusing symlinks only (`info.issym()`), which lets a hard link through."""
    archive = _tar(tmp_path / "links.tar", [("ok.txt", b"ok"), link])
    with pytest.raises(UnsafeArchiveError, match=rf"'{link.name}' is a link or device"):
        safe_extract(archive, tmp_path / "out", kind="tar")
    assert not any(p.is_symlink() for p in (tmp_path / "out").rglob("*"))
    assert not (tmp_path / "out" / link.name).exists()


def test_zip_symlink_is_refused(tmp_path):
    """Catches: dropping the zip symlink check (the Unix mode bits in external_attr)."""
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.create_system = 3
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "../../etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="'link' is a symbolic link"):
        safe_extract(path, tmp_path / "out", kind="zip")
    assert _files_under(tmp_path / "out") == []


def test_safe_entries_are_extracted(tmp_path):
    """Catches: an over-eager check refusing names that only contain dots or colons (`a..b`, `x:y`)."""
    entries = [("a/b.txt", b"1"), ("a..b/c.txt", b"2"), ("dir/x:y.txt", b"3")]
    written = safe_extract(_tar(tmp_path / "ok.tar", entries), tmp_path / "out", kind="tar")
    assert sorted(written) == sorted(name for name, _ in entries)
    assert (tmp_path / "out" / "a..b" / "c.txt").read_bytes() == b"2"


# --- acquire/manifest.py ------------------------------------------------------------------------

MALFORMED = {
    "bad_archive": ("{dest: d, archive: 7z}", r"source bad_archive: archive must be one of"),
    "no_dest": ("{url: 'https://example.org/x'}", r"source no_dest: missing 'dest'"),
    "member_without_to": ("{dest: d, archive: zip, members: [{pattern: 'x'}]}",
                          r"source member_without_to: member 1 .*'to'"),
    "member_not_mapping": ("{dest: d, archive: zip, members: ['x']}", r"source member_not_mapping: member 1"),
    "not_a_mapping": ("just a string", r"source not_a_mapping: expected a mapping"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_manifest_entry_names_the_file_and_source(tmp_path, name):
    """Catches: member fields read without a check (a bare KeyError 'to' naming no source)."""
    entry, message = MALFORMED[name]
    path = tmp_path / "manifest.yaml"
    path.write_text(f"sources:\n  fine: {{dest: a/b.csv, url: 'https://example.org/b.csv'}}\n  {name}: {entry}\n")
    with pytest.raises(ValueError, match=message) as error:
        load_manifest(path)
    assert str(path) in str(error.value)


def test_wellformed_manifest_loads(tmp_path):
    """Catches: unknown keys dropped instead of kept in `extra`, or members not parsed."""
    path = tmp_path / "manifest.yaml"
    path.write_text("sources:\n  s:\n    dest: d\n    archive: zip\n    mirror_note: hi\n"
                    "    members: [{pattern: 'top/(.*)', to: '\\1'}]\n")
    source = load_manifest(path)["s"]
    assert (source.dest, source.archive, source.extra) == ("d", "zip", {"mirror_note": "hi"})
    assert source.members[0].target("top/a.png") == "a.png"


# --- tables.py ----------------------------------------------------------------------------------

def _crowd_labels(agreement: float) -> pd.DataFrame:
    return pd.DataFrame({"image_id": ["a"], "n_votes": [3], "votes_abnormal": [2], "agreement": [agreement],
                         "label_majority": [1], "label_reliability": [1], "p_abnormal": [0.8],
                         "reliability_method": ["dawid_skene"], "true_label": [None]})


def test_write_table_rejects_a_frame_violating_its_schema(tmp_path):
    """Catches: write_table writing the frame without validating it (conform skipped)."""
    path = tmp_path / "t" / "crowd_labels.parquet"
    written = write_table(_crowd_labels(2 / 3), CROWD_LABELS, path)
    assert str(written["label_majority"].dtype) == "Int8"
    path.unlink()
    with pytest.raises(pandera.errors.SchemaErrors, match="agreement"):
        write_table(_crowd_labels(0.2), CROWD_LABELS, path)  # agreement of the larger side is >= 0.5
    assert list(path.parent.iterdir()) == []


@pytest.mark.parametrize("frame, fmt", [
    (pd.DataFrame({"x": [1]}), "xml"),  # unknown format
    (pd.DataFrame({"x": [1, "a", object()]}), "parquet"),  # pyarrow cannot convert the column
], ids=["bad-format", "unwritable-column"])
def test_write_atomic_leaves_no_temporary_file_on_failure(tmp_path, frame, fmt):
    """Catches: the temporary file not removed when writing fails."""
    target = tmp_path / "table.parquet"
    target.write_bytes(b"previous")
    with pytest.raises((ValueError, TypeError)):  # pyarrow errors subclass these
        write_atomic(frame, target, format=fmt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.parquet"]
    assert target.read_bytes() == b"previous"  # the old file is untouched


def test_unwritable_reason_looks_at_the_folder_or_where_it_would_be_created(tmp_path):
    from crowdskin.files import unwritable_reason

    assert unwritable_reason(tmp_path / "not" / "yet") is None  # created later under a writable parent
    (tmp_path / "taken").write_text("a file")
    assert "is a file" in unwritable_reason(tmp_path / "taken")
    assert "is a file" in unwritable_reason(tmp_path / "taken" / "below")


# --- synthetic.py -------------------------------------------------------------------------------

def _synthetic(root: Path, seed: int) -> dict[str, bytes]:
    values = {"n_images": 8, "image_size": 32, "student_groups": 1, "students_per_group": 1,
              "mturk": {"n_hits": 3, "n_workers": 3, "assignments_per_hit": 2}}
    written = generate(root, SyntheticSettings.from_config(section("synthetic", values), seed=seed))
    assert sorted(written) == sorted(p.relative_to(root).as_posix() for p in _files_under(root))
    return {name: (root / name).read_bytes() for name in written}


def test_synthetic_dataset_is_a_function_of_its_seed(tmp_path):
    """Catches: a generator seeded from entropy (`default_rng()`) or ignoring the seed (`default_rng(0)`)."""
    first, again, other = (_synthetic(tmp_path / name, seed) for name, seed in (("a", 7), ("b", 7), ("c", 8)))
    assert first == again
    assert first.keys() == other.keys()
    images = [name for name in first if name.startswith("images/")]
    assert len(images) == 8
    assert all(first[name] != other[name] for name in [*images, "truth/images.csv"])


def test_synthetic_diagnosis_shows_in_shape_colour_count_and_dark_colours():
    """The label the default run must learn is drawn from the lesion's properties: abnormal lesions
    are more asymmetric, more lobed, more colourful and mostly show blue-gray or black."""
    from crowdskin.synthetic import DARK_COLORS, DARK_RATE, _lesion_truth

    truth = _lesion_truth(np.random.default_rng(0), 4000, abnormal_fraction=0.35)
    colors = truth["colors"].str.split("|")
    assert (colors.map(len) == truth["color"]).all() and (colors.map(lambda c: len(set(c))) == truth["color"]).all()
    dark = colors.map(lambda c: bool(set(c) & set(DARK_COLORS)))
    for label in (0, 1):
        assert dark[truth["abnormal"] == label].mean() == pytest.approx(DARK_RATE[bool(label)], abs=0.03)
    means = truth.groupby("abnormal")[["asymmetry", "border", "color"]].mean()
    assert (means.loc[1] > means.loc[0]).all()


# --- train/tracking.py --------------------------------------------------------------------------

def test_flatten_gives_dotted_string_params():
    """Catches: nested keys joined without their parent's prefix (`zoom` instead of `augment.zoom`)."""
    nested = {"lr": 0.001, "augment": {"zoom": 0.2, "flip": {"h": True}}, "backbones": ["vgg16"], "none": None}
    assert tracking.flatten(nested) == {"lr": "0.001", "augment.zoom": "0.2", "augment.flip.h": "True",
                                        "backbones": "['vgg16']", "none": "None"}
    assert tracking.flatten({}) == {}


def test_tracking_uri_precedence(tmp_path, monkeypatch):
    """Catches: the configured URI overriding MLFLOW_TRACKING_URI (precedence reversed)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = f"sqlite:///{(tmp_path / 'results' / 'mlflow' / 'mlflow.db').resolve()}"
    assert tracking.tracking_uri(None, workdir=tmp_path) == default
    assert tracking.tracking_uri("", workdir=tmp_path) == default
    assert tracking.tracking_uri("http://configured:5000", workdir=tmp_path) == "http://configured:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert tracking.tracking_uri("http://configured:5000", workdir=tmp_path) == "http://env:5000"
    assert tracking.tracking_uri(None, workdir=tmp_path) == "http://env:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # empty counts as unset
    assert tracking.tracking_uri("http://configured:5000", workdir=tmp_path) == "http://configured:5000"


def test_the_run_namespace_is_the_setting_else_the_absolute_working_directory(tmp_path):
    """Catches: two working directories sharing a store with one namespace (a relative path, or none),
    and a blank setting taken as a namespace of its own."""
    from crowdskin.config import ConfigError, validate_config

    assert tracking.run_namespace(None, workdir=tmp_path) == str(tmp_path.resolve())
    assert tracking.run_namespace(None, workdir=tmp_path / "a" / "..") == str(tmp_path.resolve())
    assert tracking.run_namespace("  ", workdir=tmp_path) == str(tmp_path.resolve())
    assert tracking.run_namespace(" lab-a ", workdir=tmp_path) == "lab-a"
    assert tracking.namespace_of({tracking.NAMESPACE_TAG: "lab-a"}) == "lab-a"
    assert tracking.namespace_of({}) is None  # a run of an earlier version
    assert validate_config({"mlflow": {"run_namespace": "lab-a"}})["mlflow"]["run_namespace"] == "lab-a"
    with pytest.raises(ConfigError, match="run_namespace"):
        validate_config({"mlflow": {"run_namespace": " "}}, source="my.yaml")


class _Flaky:
    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"store down ({self.calls})")
        return "ok"


def test_retry_backs_off_then_succeeds_or_raises_the_last_error(monkeypatch):
    """Catches: giving up after the first failure, or swallowing the error once attempts are spent."""
    waits: list[float] = []
    monkeypatch.setattr(tracking.time, "sleep", waits.append)
    flaky = _Flaky(failures=2)
    assert tracking._retry(flaky, what="test", attempts=4, backoff_s=0.5) == "ok"
    assert (flaky.calls, waits) == (3, [0.5, 1.0])

    waits.clear()
    down = _Flaky(failures=10)
    with pytest.raises(ConnectionError, match=r"store down \(3\)"):
        tracking._retry(down, what="test", attempts=3, backoff_s=0.5)
    assert (down.calls, waits) == (3, [0.5, 1.0])


# --- cli.py -------------------------------------------------------------------------------------

def test_cli_help_exits_zero_and_lists_the_subcommands(capsys):
    """Catches: the parser built without its help option (`add_help=False`)."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "bench" in out and "checksums" in out


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["bench", "nosuch", "--data", "."]],
                         ids=["none", "unknown-subcommand", "unknown-benchmark"])
def test_cli_without_or_with_unknown_subcommand_exits_non_zero(argv, capsys):
    """Catches: argparse's exit swallowed, the subcommand made optional, or unknown benchmark names ignored."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code != 0
    assert "usage:" in capsys.readouterr().err


def test_a_cluster_job_with_a_file_store_defers_its_run_and_a_server_does_not():
    """Catches: cluster jobs writing one SQLite file from many nodes, or local runs deferring."""
    sqlite = "sqlite:////shared/results/mlflow/mlflow.db"
    assert tracking.defer_logging(sqlite, {"SLURM_JOB_ID": "17"})
    assert not tracking.defer_logging(sqlite, {})
    assert not tracking.defer_logging("http://tracking:5000", {"SLURM_JOB_ID": "17"})


def test_runs_left_by_cluster_jobs_are_logged_once_by_the_summary(tmp_path):
    """Catches: a pending run lost, logged without its params/metrics/artifacts, or logged again
    (a duplicate run) when the summary job runs a second time."""
    import json

    from mlflow.tracking import MlflowClient

    from crowdskin.train.loop import log_pending_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    job = tmp_path / "baseline" / "smallcnn" / "fold0"
    job.mkdir(parents=True)
    pd.DataFrame({"epoch": [1, 2], "loss": [0.7, 0.5], "val_auc": [0.6, 0.8]}).to_csv(job / "history.csv", index=False)
    pd.DataFrame({"image_id": ["a"], "score": [0.5]}).to_parquet(job / "predictions.parquet")
    pending = tracking.pending_run("default", "baseline/smallcnn/fold0", params={"optimizer": {"lr": 0.001}},
                                   tags={"task": "baseline"}, metrics={"test_auc": 0.81})
    metrics_file = job / "metrics.json"
    metrics_file.write_text(json.dumps({"task": "baseline", "mlflow_run_id": None, "mlflow_pending": pending}))
    local = tmp_path / "local.json"  # a job that logged itself is left alone
    local.write_text(json.dumps({"task": "baseline", "mlflow_run_id": "abc"}))

    jobs = {path: json.loads(path.read_text()) for path in (metrics_file, local)}
    first = log_pending_runs(uri, jobs)
    assert list(first) == [metrics_file] and first[metrics_file][1] is None
    run = MlflowClient(uri).get_run(first[metrics_file][0])
    assert run.data.params["optimizer.lr"] == "0.001" and run.data.metrics["test_auc"] == 0.81
    assert run.data.tags["task"] == "baseline" and run.info.run_name == "baseline/smallcnn/fold0"
    assert [m.value for m in MlflowClient(uri).get_metric_history(run.info.run_id, "val_auc")] == [0.6, 0.8]
    assert {a.path for a in MlflowClient(uri).list_artifacts(run.info.run_id)} >= {"history.csv", "predictions.parquet"}

    assert log_pending_runs(uri, jobs) == first  # found again, not logged twice
    experiment = MlflowClient(uri).get_experiment_by_name("default")
    assert len(MlflowClient(uri).search_runs([experiment.experiment_id])) == 1


def test_a_job_stopped_while_logging_completes_its_own_run_when_it_runs_again(tmp_path, monkeypatch):
    """Catches: each attempt of one job creating a run of its own (Ctrl-C or a kill while the job
    logged, then `--rerun-incomplete`: two or three runs for one job, the first ones left RUNNING).
    The run's id is kept in the job's checkpoint before anything is logged to it; the next attempt
    completes that run, and its history holds each epoch once."""
    from mlflow.tracking import MlflowClient

    from crowdskin.train.loop import Checkpoint, JobSpec, _log_to_mlflow
    from crowdskin.train.tasks import Task

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "baseline" / "smallcnn" / "fold0"
    out.mkdir(parents=True)
    history = pd.DataFrame({"epoch": [1, 2], "loss": [0.7, 0.5], "val_auc": [0.6, 0.8]})
    history.to_csv(out / "history.csv", index=False)
    pd.DataFrame({"image_id": ["a"], "score": [0.5]}).to_parquet(out / "predictions.parquet")
    spec = JobSpec(task=Task("baseline", "baseline"), backbone="smallcnn", fold=0, settings={"epochs": 2}, seed=1,
                   split_hash="abc", out_dir=out, mlflow_uri=uri, experiment="default",
                   mlflow_namespace="/scratch/study")
    metrics = {"test_auc": 0.8, "val_auc": 0.7, "train_seconds": 1.0, "heads": {}, "warnings": [],
               "class_weight": {0: 1.0, 1: 1.0}, "counts": {"train": 10}}

    real_log_artifact = MlflowClient.log_artifact

    def ctrl_c(self, run_id, local_path, artifact_path=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(MlflowClient, "log_artifact", ctrl_c)
    with pytest.raises(KeyboardInterrupt):  # stopped while logging: params and metrics in, artifacts not
        _log_to_mlflow(spec, dict(metrics), history, out, Checkpoint(out / "checkpoint", "fp"))
    monkeypatch.setattr(MlflowClient, "log_artifact", real_log_artifact)
    run_id, error = _log_to_mlflow(spec, dict(metrics), history, out, Checkpoint(out / "checkpoint", "fp"))

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("default").experiment_id])
    assert error is None and [r.info.run_id for r in runs] == [run_id]
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["crowdskin.namespace"] == "/scratch/study"
    assert [m.value for m in client.get_metric_history(run_id, "val_auc")] == [0.6, 0.8]
    assert {a.path for a in client.list_artifacts(run_id)} >= {"history.csv", "predictions.parquet"}
    # Another checkpoint (other settings, or a finished job trained again) is another run.
    other, _ = _log_to_mlflow(spec, dict(metrics), history, out, Checkpoint(out / "checkpoint", "other"))
    assert other != run_id


# --- interrupt.py -----------------------------------------------------------------------------

def test_the_resume_command_is_the_interrupted_one_with_rerun_incomplete_first():
    """Catches: the option appended after `--configfile a b`, whose values it would join, and an
    unquoted path with a space that the shell would split."""
    from crowdskin.interrupt import interrupt_message, resume_command

    argv = ["/opt/env/bin/snakemake", "-d", "/data/my study", "--configfile", "a.yaml", "b.yaml"]
    assert resume_command(argv) == ("/opt/env/bin/snakemake --rerun-incomplete -d '/data/my study' "
                                    "--configfile a.yaml b.yaml")
    assert resume_command(["x/snakemake/__main__.py", "--rerun-incomplete"]) == "snakemake --rerun-incomplete"
    jobs = [f"train_job[task=t{i}]" for i in range(5)]
    message = interrupt_message(jobs, argv)
    assert "\n" not in message and message.startswith("Stopped by Ctrl-C: 5 running jobs (train_job[task=t0], ")
    assert "train_job[task=t2] and 2 more)" in message and message.endswith(resume_command(argv))
    assert interrupt_message([], ["snakemake"]).startswith("Stopped by Ctrl-C: the run;")


def test_ctrl_c_in_a_job_is_one_line_in_its_log_and_death_by_sigint(tmp_path):
    """Catches: a KeyboardInterrupt traceback on the terminal (the warm worker's client writes to
    Snakemake's stderr) and an exit status that reads as a failure rather than an interruption."""
    import signal
    import subprocess
    import sys

    log = tmp_path / "job.log"
    code = ("import time\nfrom crowdskin.interrupt import job_ends_quietly_on_ctrl_c\n"
            f"with job_ends_quietly_on_ctrl_c({str(log)!r}, 'training job baseline/vgg16/fold0'):\n"
            "    raise KeyboardInterrupt\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGINT and done.stderr == "" and done.stdout == ""
    [line] = log.read_text().splitlines()
    assert "training job baseline/vgg16/fold0 stopped by Ctrl-C" in line and "--rerun-incomplete" in line


def test_snakemakes_process_ends_with_the_message_after_everything_it_printed(tmp_path):
    """Catches: the message printed where Snakemake's own report (its error summary, the log's path)
    would follow it, and a run that is not interrupted printing it at all."""
    import subprocess
    import sys

    code = """
import os, signal, sys, types
from crowdskin.interrupt import report_ctrl_c_at_exit
job = types.SimpleNamespace(rule=types.SimpleNamespace(name="train_job"),
                            wildcards=types.SimpleNamespace(items=lambda: [("task", "baseline"), ("fold", "0")]))
workflow = types.SimpleNamespace(scheduler=types.SimpleNamespace(running=[job], failed=[]))
report_ctrl_c_at_exit(workflow, argv=["snakemake", "--cores", "2"])
if sys.argv[1] == "interrupt":
    try:
        os.kill(os.getpid(), signal.SIGINT)
    except KeyboardInterrupt:  # as Snakemake's scheduler catches it
        print("WorkflowError:\\nAt least one job did not complete successfully.", file=sys.stderr)
        sys.exit(1)
"""
    interrupted = subprocess.run([sys.executable, "-c", code, "interrupt"], capture_output=True, text=True, timeout=60)
    assert interrupted.returncode == 1
    assert interrupted.stderr.splitlines()[-1] == (
        "Stopped by Ctrl-C: 1 running job (train_job[task=baseline, fold=0]); training jobs keep their finished "
        "epochs. Resume with: snakemake --rerun-incomplete --cores 2")
    quiet = subprocess.run([sys.executable, "-c", code, "finish"], capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0 and quiet.stderr == ""


# --- train/worker.py --------------------------------------------------------------------------

def test_a_job_that_connects_as_the_idle_worker_exits_is_still_answered(tmp_path, monkeypatch):
    """Catches the idle-exit race: a client connects in the instant the worker decides it has been
    idle long enough; exiting then would close the queued connection unanswered and fail the job.
    The worker's clock is stepped by hand, so the client connects exactly after the last look at
    the socket of the loop turn in which the idle time runs out."""
    import json
    import select as real_select
    import socket
    import threading
    import types

    from crowdskin.train import worker

    idle, step = 1.0, 0.1
    clock = {"calls": 0}

    def monotonic() -> float:  # the first call is the server's idle_since
        clock["calls"] += 1
        return clock["calls"] * step

    path = tmp_path / "worker.sock"
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connected = threading.Event()

    def select_then_connect(*args, **kwargs):
        result = real_select.select(*args, **kwargs)
        upcoming_idle = (clock["calls"] + 1) * step - step  # what the check after this select computes
        if not connected.is_set() and upcoming_idle > idle and not any(result):
            client.connect(str(path))  # the server saw an empty queue; now it holds a job
            client.sendall(json.dumps({"log": str(tmp_path / "job.log")}).encode() + b"\n")
            connected.set()
        return result

    monkeypatch.setattr(worker, "_preload", lambda backend="tensorflow": None)
    monkeypatch.setattr(worker, "select", types.SimpleNamespace(select=select_then_connect))
    monkeypatch.setattr(worker, "time", types.SimpleNamespace(monotonic=monotonic))
    server = threading.Thread(target=worker.serve, args=(path, idle), daemon=True)
    server.start()
    server.join(timeout=30)
    assert connected.is_set() and not server.is_alive()
    client.settimeout(10)
    reply = client.recv(4096)
    client.close()
    # the job itself fails (this request names no task), but it ran and its exit code came back
    assert reply and json.loads(reply) == {"exit": 1}
    assert not path.exists()
