# Two commands for a new user: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= $(shell nproc 2>/dev/null || echo 2)
# TensorFlow's GPU build instead of the CPU one: `make install TF=gpu`.
TF     ?= cpu
# A Keras backend besides TensorFlow (train.backend): `make install BACKEND=jax` (or torch) adds
# requirements-$(BACKEND).lock to .venv; TensorFlow stays, the workflow's other stages use it.
BACKEND ?= tensorflow
# JAX's CUDA plugin for GPU nodes (config/paper.yaml trains on JAX): `make install BACKEND=jax JAX=cuda`.
JAX    ?= cpu
BACKEND_STAMP := $(if $(filter-out tensorflow,$(BACKEND)),$(VENV)/.installed-$(BACKEND))

.PHONY: install run test test-deploy test-faults test-dvc lint bench gpu-wheels dag docs clean browser screenshots

install: $(STAMP) $(BACKEND_STAMP)

# uv installs the locked wheels: the same versions as pip, 2.4 s from its cache here against 25 s.
# It reads no pip configuration: a private index is given as UV_DEFAULT_INDEX (uv's documentation).
UV := $(BIN)/uv pip install -q --python $(BIN)/python

# Bytecode: these machines set PYTHONDONTWRITEBYTECODE, under which a module imported uncompiled is
# compiled anew by every process (importing TensorFlow took 12.5 s instead of 5). Compiling all of
# site-packages took 20 s and compiles three times what is used, so the install compiles what the
# workflow's jobs import by importing it, in two processes at once (about 9 s): a direct `snakemake`
# or `dvc repro` starts compiled. The project's own commands write whatever else they import.
unexport PYTHONDONTWRITEBYTECODE
# $(call IMPORT,package[,prefix to skip]): every module under the package.
IMPORT = import importlib, pkgutil, $(1); [importlib.import_module(m.name) for m in \
	pkgutil.walk_packages($(1).__path__, "$(1).") $(if $(2),if not m.name.startswith("$(2)"))]
WARM = $(BIN)/python -c
WARM_LOG = $(VENV)/bytecode.log
WARM_STACK = { $(WARM) '$(call IMPORT,crowdskin.train)' > $(WARM_LOG).train 2>&1 & train=$$!; \
	$(WARM) 'import snakemake.cli, mlflow, dvc.cli; $(call IMPORT,crowdskin,crowdskin.train.)' > $(WARM_LOG) 2>&1; \
	rest=$$?; wait $$train && test $$rest = 0 || { cat $(WARM_LOG).train $(WARM_LOG); exit 1; }; }

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "pip==26.3" "uv==0.13.8"
	$(UV) -r requirements.lock
ifeq ($(TF),gpu)
	$(UV) "tensorflow[and-cuda]==$$(grep '^tensorflow-cpu==' requirements.lock | cut -d= -f3)" -c requirements.lock
endif
	$(UV) --no-deps --no-build-isolation -e .
	$(WARM_STACK)
	touch $(STAMP)

$(VENV)/.installed-%: requirements-%.lock $(STAMP)
	$(UV) -r $< -c requirements.lock
ifeq ($(JAX),cuda)
	$(UV) "jax[cuda13]==$$(grep '^jax==' requirements-jax.lock | cut -d= -f3)" -c requirements.lock
endif
	$(WARM) 'import $*' > $(WARM_LOG).$* 2>&1 || { cat $(WARM_LOG).$*; exit 1; }
	touch $@

# The workflow, then Snakemake's report of it (results/default/report.html: every output of a run
# is under results/<run_name>/; open the report in a browser).
run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report results/default/report.html
	@echo "report: $(CURDIR)/results/default/report.html"

# loadfile: a module's tests share a worker, so module fixtures (the workflow tests' finished run)
# are built once; pytest-xdist's xdist_group marks are not honoured under pytest 9.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

# Faults (about 6 min; `make test` skips them, CI runs them): whole runs SIGKILLed during
# annotation and training, then --unlock and --rerun-incomplete; Ctrl-C and its resume command; two
# working directories sharing one MLflow store; the warm worker's failure paths; the GPU benchmark
# script's whole call on CPU (`--tiny`). Two workers, a file each at a time, as `make test`: every
# test works in its own folder, and their kill windows hold with the other worker's load beside them.
test-faults: $(STAMP)
	CROWDSKIN_FAULT_TESTS=1 $(BIN)/python -m pytest -n 2 --dist loadfile tests/test_faults.py tests/test_faults_interrupt.py tests/test_faults_shared_store.py tests/test_faults_steps_per_call.py tests/test_faults_compile_cache.py tests/test_train_worker.py tests/test_faults_bench_gpu.py

# Other entry points, run whole (about 2 min; `make test` skips them, CI runs them): the workflow
# deployed as a Snakemake module in a scratch project, and the example study's generic inputs.
test-deploy: $(STAMP)
	CROWDSKIN_DEPLOY_TESTS=1 $(BIN)/python -m pytest -n 2 --dist loadfile tests/test_module_deployment.py tests/test_example_study.py

# DVC (8-10 min on two cores; `make test` skips it, CI runs it): `dvc repro` of the default config in a scratch
# git copy of the project, then a no-op repro, metrics, push and pull, a crowd setting's invalidation.
test-dvc: $(STAMP)
	CROWDSKIN_DVC_TESTS=1 $(BIN)/python -m pytest tests/test_dvc.py

# The Slurm profile on a real one-node cluster (Debian, as root; about 4 min; `make test` skips it,
# CI runs it): installs slurm-wlm and munge if missing, starts munged, slurmctld and slurmd, runs
# tests/test_slurm.py, then always stops those daemons by pid and purges what it installed: with a
# Slurm client and no controller, every snakemake call on the machine waits ~9 s for one.
test-slurm: $(STAMP)
	bash profiles/slurm/local-cluster.sh run env CROWDSKIN_SLURM_TESTS=1 $(BIN)/python -m pytest tests/test_slurm.py

# Headless Chromium for the report's browser test in `make test` (skipped, with the reason, without
# it): Debian's package, installed as root. CI runs this first.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The README's screenshots of the default run's report (after `make run`), one per page.
screenshots: $(STAMP) browser
	rm -rf docs/report
	$(BIN)/python tests/report_browser.py results/default/report.html docs/report

# ruff (pyproject.toml), snakefmt, and snakemake --lint on every shipped config
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile workflow/Snakefile workflow/rules/
	$(BIN)/python .ci/snakemake_lint.py config/config.yaml config/paper.yaml config/shortcut.yaml config/annotators.yaml config/example-study.yaml

bench: $(STAMP)
	$(BIN)/crowdskin bench

# The wheels benchmarks/gpu.sh installs on the lent GPU machine (Python 3.12, no network there; it
# has jax with CUDA, numpy, pandas, pyarrow, scikit-learn): what the training jobs need beyond that,
# at requirements.lock's pins, about 3 MB into .whl/ (ignored by git; the device tool carries it).
GPU_WHEELS := keras namex optree jsonschema jsonschema-specifications referencing rpds-py
GPU_PLATFORMS := $(foreach n,manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1,--platform $(n)_x86_64)
gpu-wheels: $(STAMP)
	rm -rf .whl && mkdir .whl
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		$(GPU_PLATFORMS) -d .whl $(foreach w,$(GPU_WHEELS),$$(grep -i '^$(w)==' requirements.lock))

# docs/usage.md from the schemas' descriptions (tests/test_settings_docs.py checks it is current).
docs: $(STAMP)
	$(BIN)/python -m crowdskin.settings_docs docs/usage.md

dag: $(STAMP)
	$(BIN)/snakemake --rulegraph | dot -Tsvg > docs/rulegraph.svg

clean:
	rm -rf results .snakemake
