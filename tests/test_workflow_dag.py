"""The workflow's DAG as `snakemake -n` plans it, and the errors that stop a run before any job:
no run to the end is needed, so these run beside tests/test_workflow.py's finished run."""

from __future__ import annotations

import re

import pytest

from workflow_runner import snakemake

pytestmark = [pytest.mark.slow]


def test_dry_run_lists_acquisition_and_ingestion(tmp_path):
    out = snakemake(tmp_path, "-n", "results/default/data/images.parquet",
                    "results/default/data/download_report.csv").stdout
    for rule in ("synthesize", "ingest", "download_report"):
        assert f"rule {rule}:" in out or f"\n{rule} " in out, rule


def test_an_unwritable_results_folder_stops_the_run_with_one_clear_message(tmp_path):
    """`results` taken by a file (root ignores permission bits, so a read-only folder would not fail
    here): the run stops before any job, naming the folder and the way out."""
    (tmp_path / "results").write_text("not a folder")
    result = snakemake(tmp_path, "-n", check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0 and "results/ cannot be written" in message and "snakemake -d DIR" in message
    assert message.count("cannot be written") == 1


def test_unknown_config_key_stops_the_run(tmp_path):
    result = snakemake(tmp_path, "-n", "--config", "synthetic={'n_imgs': 3}", check=False)
    assert result.returncode != 0
    assert "n_imgs" in result.stdout + result.stderr


def _line(message: str, key: str) -> str:
    return next((line for line in message.splitlines() if f"at '{key}'" in line), f"<no line for {key}>")


def test_a_bad_value_is_named_with_the_config_file_or_command_line_that_set_it(tmp_path):
    """Snakemake merges the default config, each --configfile and --config before the workflow
    validates: the message names the one that set each bad value, with YAML's spelling of a number."""
    (tmp_path / "first.yaml").write_text("train: {learning_rate: 1e-3}\n")
    (tmp_path / "second.yaml").write_text("seed: 3\nsynthetic: {n_imgs: 4}\n")
    result = snakemake(tmp_path, "-n", "--configfile", "first.yaml", "second.yaml",
                       "--config", "explain={'enabeld': 'true'}", check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert "(set in first.yaml)" in _line(message, "train.learning_rate")
    assert "write 1.0e-3" in _line(message, "train.learning_rate")
    assert "(set in second.yaml)" in _line(message, "synthetic.n_imgs")
    assert "(set in --config on the command line)" in _line(message, "explain.enabeld")


def test_a_reserved_run_name_or_too_few_synthetic_lesions_stop_the_run_at_start_up(tmp_path):
    reserved = snakemake(tmp_path, "-n", "--config", "run_name=mlflow", check=False)
    line = _line(reserved.stdout + reserved.stderr, "run_name")
    assert reserved.returncode != 0 and "'mlflow' is reserved" in line and "results/mlflow/" in line
    (tmp_path / "small.yaml").write_text("synthetic: {n_images: 12}\n")
    small = snakemake(tmp_path, "-n", "--configfile", "small.yaml", check=False)
    line = _line(small.stdout + small.stderr, "synthetic.n_images")
    assert small.returncode != 0 and "(set in small.yaml)" in line
    assert "12 lesions (4 positive, 8 negative) cannot make 5 folds" in line
    assert "split.min_positives_per_fold" in line and "synthetic.n_images: 70 or more" in line


def test_paper_dry_run_lists_the_full_grid_with_gpu_resources(tmp_path, repo):
    """3 backbones x 5 folds x 13 tasks, each asking for a GPU, before any data exists."""
    result = snakemake(tmp_path, "-n", "--configfile", str(repo / "config/paper.yaml"))
    out = result.stdout + result.stderr
    jobs = re.split(r"^\[\w{3} \w{3} .*\d{4}\]$", out, flags=re.M)  # each job starts with its time stamp
    train_jobs = [job for job in jobs if re.search(r"^\s*(localrule|rule) train_job(_without_model)?:", job, re.M)]
    assert len(train_jobs) == 13 * 3 * 5
    assert all(re.search(r"resources:.*\bgpu=1\b", job) for job in train_jobs)
    wildcards = {re.search(r"wildcards: (.*)", job).group(1) for job in train_jobs}
    assert len(wildcards) == len(train_jobs)
    # the default config's simulated spammers are not carried into a real-data config
    assert "crowd_spammer_detection" not in out
    assert "truth_" not in out and "/truth/" not in out


def test_jobs_sharing_a_gpu_ask_for_a_share_of_it_not_a_whole_one(tmp_path, repo):
    """Catches a shared-GPU job still asking for `gpu` (Slurm would give each job a whole GPU and
    the local scheduler would run one at a time), or sharing accepted for multi-GPU jobs."""
    share = tmp_path / "share.yaml"
    share.write_text("execution: {train: {gpus: 1, jobs_per_gpu: 2}}\n")
    result = snakemake(tmp_path, "-n", "--configfile", str(repo / "config/paper.yaml"), str(share))
    jobs = re.split(r"^\[\w{3} \w{3} .*\d{4}\]$", result.stdout, flags=re.M)
    train_jobs = [job for job in jobs if re.search(r"^\s*(localrule|rule) train_job(_without_model)?:", job, re.M)]
    assert len(train_jobs) == 13 * 3 * 5
    for job in train_jobs:
        resources = re.search(r"resources: (.*)", job).group(1)
        assert "gpu_share=1" in resources and "gres=shard:1" in resources and not re.search(r"\bgpu=", resources)
    share.write_text("execution: {train: {gpus: 2, jobs_per_gpu: 2}}\n")
    refused = snakemake(tmp_path, "-n", "--configfile", str(repo / "config/paper.yaml"), str(share), check=False)
    assert refused.returncode != 0 and "jobs_per_gpu" in refused.stderr + refused.stdout


def test_steps_per_execution_reaches_every_training_job_as_a_resource(tmp_path, repo):
    """Catches the setting not reaching the jobs, or reaching them as a param (which would re-run
    every job when it changes: it changes no result)."""
    steps = tmp_path / "steps.yaml"
    steps.write_text("execution: {train: {steps_per_execution: 5}}\n")
    result = snakemake(tmp_path, "-n", "--configfile", str(repo / "config/paper.yaml"), str(steps))
    jobs = re.split(r"^\[\w{3} \w{3} .*\d{4}\]$", result.stdout, flags=re.M)
    train_jobs = [job for job in jobs if re.search(r"^\s*(localrule|rule) train_job(_without_model)?:", job, re.M)]
    assert len(train_jobs) == 13 * 3 * 5
    assert all(re.search(r"resources: .*\bsteps_per_execution=5\b", job) for job in train_jobs)


def test_the_compile_cache_reaches_training_jobs_as_a_resource_never_a_param(tmp_path):
    """Catches the cache folder missing from the training jobs (each compiles again) or handed to
    them as a param (moving the folder would re-train the grid; test_workflow.py checks that a
    finished run plans nothing when it moves)."""
    def train_resources(change: str) -> list[str]:
        (tmp_path / "change.yaml").write_text(change)
        out = snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "change.yaml")).stdout
        jobs = re.split(r"^\[\w{3} \w{3} .*\d{4}\]$", out, flags=re.M)
        return [re.search(r"resources: (.*)", job).group(1) for job in jobs
                if re.search(r"^\s*(localrule|rule) train_job(_without_model)?:", job, re.M)]

    default = train_resources("{}")
    assert default and all("compile_cache=resources/compile_cache" in resources for resources in default)
    assert all("compile_cache" not in resources
               for resources in train_resources("execution: {train: {compile_cache: null}}"))


TRUTH_RULES = {"truth_data", "truth_auc", "truth_summary"}


def dag_rules(workdir, *configfiles) -> set[str]:
    """The rules of the whole DAG that `snakemake -n` plans with `configfiles` layered on the default."""
    args = ["--configfile", *map(str, configfiles)] if configfiles else []
    out = snakemake(workdir, "-n", *args).stdout
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return {rule for rule, _ in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_default_dag_has_the_truth_checks_and_their_report_page(tmp_path):
    """The synthetic default knows its truth: the three truth rules are planned, and the report gets
    the page (report_tables lists results/report/truth.html)."""
    assert dag_rules(tmp_path) >= TRUTH_RULES
    out = snakemake(tmp_path, "-n", "results/default/report/truth.html").stdout
    assert "truth_summary" in out and "results/default/truth/summary.csv" in out


def test_real_sample_dag_has_no_truth_checks(tmp_path, repo):
    """No synthetic data, no truth: none of the truth rules, nor the page. `mirror: null` (download
    instead) lets the dry run plan the same rules without ../shared/data on this machine."""
    no_mirror = tmp_path / "no_mirror.yaml"
    no_mirror.write_text("mirror: null\n")
    rules = dag_rules(tmp_path, repo / "config/real-sample.yaml", no_mirror)
    assert {"ingest", "crowd_labels", "scores", "report_tables"} <= rules  # the DAG was built
    assert not {rule for rule in rules if rule.startswith("truth")}
    out = snakemake(tmp_path, "-n", "--configfile", str(repo / "config/real-sample.yaml"), str(no_mirror)).stdout
    assert "/truth/" not in out and "truth.html" not in out


def test_a_synthetic_run_with_real_sources_is_refused_with_the_reason(tmp_path):
    """Catches ingestion silently reading only one of two raw folders (the synthetic run's own, or
    the shared downloads) when a config asks for both."""
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text("sources: [isic2017]\n")
    result = snakemake(tmp_path, "-n", "--configfile", str(mixed), check=False)
    assert result.returncode != 0 and "synthetic.enabled together with real sources" in result.stdout + result.stderr


def test_a_config_with_nothing_to_read_says_what_to_set(tmp_path):
    """Was `IndexError: list index out of range` at DAG build."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("sources: []\nurl_lists: []\nsynthetic:\n  enabled: false\n")
    result = snakemake(tmp_path, "-n", "--configfile", str(empty), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "nothing to read" in output and "ingest.root" in output
    assert "Traceback" not in output and "IndexError" not in output


THROWAWAY_KIND = '''
"""A throw-away kind kept outside crowdskin: it reads the targets table, fine-tunes the fold's
baseline and is compared with the randomized control: all that its place in the DAG depends on."""

from crowdskin.train.kinds import TARGETS, TaskKind, register
from crowdskin.train.tasks import Task


@register
class Throwaway(TaskKind):
    name = "throwaway"
    order = 35
    reads = frozenset({TARGETS})
    starts_from = "baseline"

    @classmethod
    def tasks(cls, train):
        return [Task("throwaway-border", cls.name, "crowd", "border")]

    @classmethod
    def references(cls, task, task_names):
        return ["random"]
'''


def test_a_new_task_kind_is_one_file(tmp_path, monkeypatch):
    """A kind registered in a file of its own (named in train.plugins) joins the default grid: one job
    per fold that reads the tables the kind declares and the model it starts from, scored with the
    rest. Nothing else was edited: the rules, settings and scores ask the kind."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "throwaway_kind.py").write_text(THROWAWAY_KIND)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "plugins"))
    config = tmp_path / "plugin.yaml"
    config.write_text("train: {plugins: [throwaway_kind]}\n")
    out = snakemake(tmp_path, "-n", "--configfile", str(config)).stdout
    jobs = re.split(r"^\[\w{3} \w{3} .*\d{4}\]$", out, flags=re.M)
    mine = [job for job in jobs if re.search(r"^\s*(local)?rule train_job", job, re.M)
            and "wildcards: task=throwaway-border," in job]
    assert len(mine) == 5  # one per fold
    for job in mine:
        fold = re.search(r"fold=(\d)", job).group(1)
        assert "results/default/crowd/targets.parquet" in job
        assert f"results/default/train/baseline/smallcnn/fold{fold}/model.keras" in job
        assert "crowd_labels.parquet" not in job
    scores = next(job for job in jobs if re.search(r"^\s*(local)?rule scores:", job, re.M))
    # and, its model saved, explained with the rest
    assert any(re.search(r"^\s*(local)?rule explain:", job, re.M) for job in jobs
               if "wildcards: task=throwaway-border," in job)
    assert "results/default/train/throwaway-border/smallcnn/fold4/predictions.parquet" in scores
    missing = tmp_path / "missing.yaml"
    missing.write_text("train: {plugins: [no_such_kind_module]}\n")
    refused = snakemake(tmp_path, "-n", "--configfile", str(missing), check=False)
    assert refused.returncode != 0 and "no_such_kind_module" in refused.stdout + refused.stderr
