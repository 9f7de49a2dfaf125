# mongo-adls-bronze: development tasks. `make help` lists them.
#
# Everything runs from a fresh clone: the Python environment (.venv/) and Azurite (node_modules/)
# are installed on first use and reinstalled when their pins change.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
STACK_DIR ?= .local
PYTEST_ARGS ?=
SDK_TEST_ARGS ?=

.PHONY: help venv lock node_modules services services-down services-status test test-sdk test-fast soak demo bench bench-emulator clean distclean

help: ## Show this help
	@echo "Usage: make <target>   (ports: STACK_MONGO_PORT, STACK_BLOB_PORT, STACK_QUEUE_PORT, STACK_TABLE_PORT, STACK_ADLS_PORT)"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(PY):
	@test -n "$(PYTHON)" || { echo "python3.11 (or python3) not found" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV_STAMP): requirements.txt requirements-dev.txt native/extjson/setup.py native/extjson/_bronze_extjson.c | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(VENV_STAMP) ## Create .venv/ and install requirements-dev.txt (automatic for other targets)

lock: | $(PY) ## Pin requirements.txt (exact versions the deployment installs) from requirements.in
	$(PY) scripts/lock.py

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

node_modules: $(NODE_STAMP) ## Install Azurite from package-lock.json (npm ci)

services: $(VENV_STAMP) $(NODE_STAMP) ## Start SecantusDB, Azurite and the ADLS emulator; write .local/stack.env
	$(PY) -m devtools.stack up --dir $(STACK_DIR)

services-down: | $(VENV_STAMP) ## Stop the processes `make services` started
	$(PY) -m devtools.stack down --dir $(STACK_DIR)

services-status: | $(VENV_STAMP) ## Show which services run, their PIDs and ports
	@$(PY) -m devtools.stack status --dir $(STACK_DIR)

test: $(VENV_STAMP) $(NODE_STAMP) ## Run all tests (they start their own private stack), then `make test-sdk`
	$(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-sdk

test-sdk: $(VENV_STAMP) ## The Azure SDK's own DataLake tests against the ADLS emulator over HTTPS (SDK_TEST_ARGS for pytest)
	$(PY) -m devtools.sdk_tests $(SDK_TEST_ARGS)

test-fast: $(VENV_STAMP) $(NODE_STAMP) ## Run the tests not marked slow
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

soak: $(VENV_STAMP) $(NODE_STAMP) ## Longer crash soak: SOAK_RUNS (default 500) killed/resumed runs, seed SOAK_SEED
	SOAK_RUNS=$${SOAK_RUNS:-500} $(PY) -m pytest tests/reliability/test_crash.py -k soak --timeout=0 $(PYTEST_ARGS)

demo: services ## Start the stack, write changes, drain them, show the files
	$(PY) -m devtools.demo

bench-emulator: $(VENV_STAMP) ## The ADLS emulator alone: append/flush throughput, 100,000 paths listed, memory
	$(PY) -m devtools.adls_emulator.bench

bench: $(VENV_STAMP) $(NODE_STAMP) ## Benchmarks on a private local stack (BENCH_EVENTS=100000 BENCH_SCALE=1 BENCH_MIXES=default,rich); see BENCHMARKS.md
	$(PY) -m bench

clean: ## Stop the services and delete .local/ (their data, logs and stack.env)
	@if [ -x $(PY) ]; then $(PY) -m devtools.stack down --dir $(STACK_DIR); fi
	rm -rf $(STACK_DIR)

distclean: clean ## Also delete .venv/ and node_modules/
	rm -rf $(VENV) node_modules
