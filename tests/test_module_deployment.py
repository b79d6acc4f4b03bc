"""The workflow deployed as a Snakemake module, the way the Snakemake workflow catalog and `snakedeploy
deploy-workflow` set a project up: the project holds only config/config.yaml and a workflow/Snakefile
declaring this checkout's workflow/Snakefile as a module. Run there, every output lands in the project
and the workflow's own files (scripts, schemas, manifest, report captions) are read from the module.

The small test config runs to its end (about 80 s on two cores, as tests/test_workflow.py's own run),
then the report is built from it (3 s): the captions and the landing page are module files, which a
partial run would not reach."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from workflow_runner import REPO, SNAKEMAKE, deploy_test, snakemake

pytestmark = [pytest.mark.slow]
RUN = "deployed"
MODULE = """configfile: "config/config.yaml"


module crowdskin:
    snakefile:
        {snakefile}
    config:
        config


use rule * from crowdskin
"""


def make_project(root: Path, snakefile: str) -> Path:
    """A deployed project: config/ as snakedeploy copies it from the repository, edited by its user (the
    small test config layered on, a run name of its own), and the module declaration it writes."""
    from crowdskin.config import deep_update

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    deep_update(config, yaml.safe_load((REPO / ".test" / "config.yaml").read_text()))
    config["run_name"] = RUN
    (root / "config").mkdir(parents=True)
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "workflow").mkdir()
    (root / "workflow" / "Snakefile").write_text(MODULE.format(snakefile=snakefile))
    return root


def in_project(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`snakemake` as the project's user runs it: in the project, no -s, no -d, no --configfile."""
    command = [str(SNAKEMAKE), "--cores", "2", *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=project)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def job_stats(out: str) -> dict[str, int]:
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("deployed"), f'"{REPO / "workflow" / "Snakefile"}"')


def test_the_module_plans_what_the_checkout_plans(project, tmp_path):
    planned = job_stats(in_project(project, "-n").stdout)
    direct = job_stats(snakemake(tmp_path, "-n", "--configfile", str(REPO / ".test" / "config.yaml")).stdout)
    assert planned == direct and planned["train_job"] >= 1 and planned["report_figures"] == 1


@deploy_test
def test_the_module_runs_to_its_end_in_the_project_and_reports(project):
    in_project(project)
    results = project / "results" / RUN
    for output in ("data/images.parquet", "annotations/automated.parquet", "crowd/targets.parquet",
                   "scores/auc_table.csv", "truth/summary.csv", "report/summary.html"):
        assert (results / output).stat().st_size > 0, output
    assert (project / "resources" / "synthetic" / RUN).is_dir()
    assert not (REPO / "results" / RUN).exists() and not (REPO / "resources" / "synthetic" / RUN).exists()
    assert "Nothing to be done" in in_project(project, "-n").stdout

    in_project(project, "--report", f"results/{RUN}/report.html")
    report = (results / "report.html").read_text()
    # the module's landing page (workflow/report/workflow.rst) found the run's summary page
    assert "has not finished its scores" not in report and "summary.html" in report
    assert "roc.html" in report and "auc_table.html" in report


def test_a_module_read_from_git_has_its_files_copied_into_the_project(tmp_path):
    """A module from a git host (`github(...)` in real use; `gitfile(...)`, a local repository, here):
    its files are on no disk, so the rules' inputs among them (manifest, checksum lists, report captions)
    are copied under .snakemake/crowdskin-workflow/. Parsing only: Snakemake 9's gitfile() modules
    then fail in Snakemake's own script-timestamp check, which github() modules do not share."""
    repo = tmp_path / "repo"
    for name in ("workflow", "config"):
        shutil.copytree(REPO / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(repo), "-c", "user.email=test@example.org", "-c", "user.name=test"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "workflow"], check=True)
    subprocess.run([*git, "tag", "v0"], check=True)
    project = make_project(tmp_path / "project", f'gitfile("{repo}", path="workflow/Snakefile", tag="v0")')

    rules = in_project(project, "--list-rules").stdout.split()
    assert {"train_job", "report_figures", "all"} <= set(rules)
    copies = project / ".snakemake" / "crowdskin-workflow"
    # (Snakemake reads a gitfile through `git show`, which drops the last newline)
    assert (copies / "manifest.yaml").read_text().strip() == (REPO / "workflow" / "manifest.yaml").read_text().strip()
    checksums = {p.name for p in (REPO / "workflow" / "checksums").iterdir()}
    assert {p.name for p in (copies / "checksums").iterdir()} == checksums
    assert (copies / "report" / "roc.rst").is_file()
