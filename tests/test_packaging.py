"""The package outside the checkout: its wheel built and installed into a fresh virtual environment, then
`crowdskin` and the config validation run from a folder outside the checkout, offline.

The fresh environment gets the project's dependencies without installing them: a .pth file lists this
environment's site-packages as a plain path. Python processes .pth files only in site directories, so
the .pth files in there (this checkout's editable install among them) stay inactive, and crowdskin can
only come from the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from workflow_runner import REPO

pytestmark = [pytest.mark.slow]

# What the fresh environment runs: crowdskin from the wheel, the bundled schemas and configs with it,
# defaults filled in, an unknown key rejected, the checkout nowhere on the path.
CHECK = r"""
import sys
from pathlib import Path

import crowdskin
from crowdskin import config as c

env, checkout, config_yaml = (Path(a).resolve() for a in sys.argv[1:4])
assert Path(crowdskin.__file__).resolve().is_relative_to(env), crowdskin.__file__
# (the dependencies' site-packages may lie inside the checkout, as its .venv does: only its sources count)
assert not any(Path(p or ".").resolve() in (checkout, checkout / "src") for p in sys.path), sys.path
for folder in (c.SCHEMA_DIR, c.CONFIG_DIR):
    assert folder.is_dir() and not folder.is_symlink() and folder.resolve().is_relative_to(env), folder

import yaml
validated = c.validate_config(yaml.safe_load(config_yaml.read_text()), source=str(config_yaml))
assert validated["train"]["backbones"] and validated["execution"]["train"]["threads"] >= 1
filled = c.validate_config({"run_name": "outside"})
assert filled["run_name"] == "outside" and filled["split"]["n_folds"] >= 2 and "bootstrap" in filled["evaluate"]
assert c.load_config(c.packaged_config("config.yaml"), c.packaged_config("paper.yaml"))["train"]["backbones"]
try:
    c.validate_config({"run_name": "outside", "no_such_key": 1})
except c.ConfigError as error:
    assert "no_such_key" in str(error), error
else:
    raise AssertionError("an unknown key was accepted")
print("ok", crowdskin.__file__)
"""


def test_checkout_links_the_package_data_to_where_it_is_edited():
    """The schemas are edited in workflow/schemas/ and the configs in config/; the package reads them
    through these links in a checkout, so a copy here would drift from them."""
    assert (REPO / "src/crowdskin/schemas").is_symlink()
    assert (REPO / "src/crowdskin/schemas").resolve() == (REPO / "workflow/schemas").resolve()
    assert (REPO / "src/crowdskin/configs").is_symlink()
    assert (REPO / "src/crowdskin/configs").resolve() == (REPO / "config").resolve()


def _build_wheel(tmp_path: Path) -> Path:
    """The wheel, built from a copy of what the build reads (so no build/ or egg-info lands in the
    checkout), with this environment's setuptools: no build isolation, no network."""
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    # symlinks=True: the copies of src/crowdskin/{schemas,configs} stay relative links, into these copies
    for name in ("src", "workflow/schemas", "config"):
        shutil.copytree(REPO / name, source / name, symlinks=True, ignore=ignore)
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(dist), str(source)], check=True, capture_output=True, text=True)
    (wheel,) = dist.glob("crowdskin-*.whl")
    return wheel


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    wheel = _build_wheel(tmp_path)
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, text=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "crowdskin_test_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    environ = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "CROWDSKIN_SHARED_DATA"}}

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, cwd=outside, env=environ, capture_output=True, text=True, timeout=120)

    help_ = run(str(env / "bin" / "crowdskin"), "--help")
    assert help_.returncode == 0, help_.stderr
    assert "bench" in help_.stdout and "checksums" in help_.stdout
    # benchmarks read ../shared/data beside a checkout; installed, they ask for it instead of crashing
    bench = run(str(env / "bin" / "crowdskin"), "bench")
    assert bench.returncode == 2 and "--data" in bench.stderr, bench.stderr
    check = run(str(python), "-c", CHECK, str(env), str(REPO), str(REPO / "config" / "config.yaml"))
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("ok")
