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

.PHONY: install run test test-faults test-dvc lint bench dag clean

install: $(STAMP) $(BACKEND_STAMP)

# --no-compile, then compileall on every core: pip byte-compiles one file at a time (40 of the
# install's 68 s here; compileall -j 0 took 25 s on 2 cores). Compiled now rather than on first
# import, because these machines set PYTHONDONTWRITEBYTECODE: what is imported uncompiled stays
# so (importing TensorFlow took 12.5 s instead of 5). As pip does, a file that does not compile is
# left as it is.
COMPILE := $(BIN)/python -m compileall -q -j 0 "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null || true

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip==26.3"
	$(BIN)/python -m pip install -q --no-compile -r requirements.lock
ifeq ($(TF),gpu)
	$(BIN)/python -m pip install -q --no-compile "tensorflow[and-cuda]==$$(grep '^tensorflow-cpu==' requirements.lock | cut -d= -f3)"
endif
	$(COMPILE)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(VENV)/.installed-%: requirements-%.lock $(STAMP)
	$(BIN)/python -m pip install -q --no-compile -r $< -c requirements.lock
ifeq ($(JAX),cuda)
	$(BIN)/python -m pip install -q --no-compile "jax[cuda13]==$$(grep '^jax==' requirements-jax.lock | cut -d= -f3)" -c requirements.lock
endif
	$(COMPILE)
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

# Faults (about 2.5 min; `make test` skips them, CI runs them): whole runs SIGKILLed during
# annotation and training, then --unlock and --rerun-incomplete; the warm worker's failure paths.
test-faults: $(STAMP)
	CROWDSKIN_FAULT_TESTS=1 $(BIN)/python -m pytest tests/test_faults.py tests/test_train_worker.py

# DVC (about 7 min; `make test` skips it, CI runs it): `dvc repro` of the default config in a scratch
# git copy of the project, then a no-op repro, metrics, push and pull, a crowd setting's invalidation.
test-dvc: $(STAMP)
	CROWDSKIN_DVC_TESTS=1 $(BIN)/python -m pytest tests/test_dvc.py

# The Slurm profile on a real one-node cluster (Debian, as root; about 4 min; `make test` skips it,
# CI runs it): installs slurm-wlm and munge if missing, starts munged, slurmctld and slurmd, runs
# tests/test_slurm.py, then always stops those daemons by pid and purges what it installed: with a
# Slurm client and no controller, every snakemake call on the machine waits ~9 s for one.
test-slurm: $(STAMP)
	bash profiles/slurm/local-cluster.sh run env CROWDSKIN_SLURM_TESTS=1 $(BIN)/python -m pytest tests/test_slurm.py

# ruff (pyproject.toml), snakefmt, and snakemake --lint on the default and paper configs
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile workflow/rules/
	$(BIN)/python .ci/snakemake_lint.py config/config.yaml config/paper.yaml

bench: $(STAMP)
	$(BIN)/crowdskin bench

dag: $(STAMP)
	$(BIN)/snakemake --rulegraph | dot -Tsvg > docs/rulegraph.svg

clean:
	rm -rf results .snakemake
