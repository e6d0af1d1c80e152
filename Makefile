# churnflow - every target sets itself up: a fresh machine needs only Python 3.11.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOT ?= $(shell command -v python3.11 || command -v python3)
VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed

# Airflow runs from the repository: its home (metadata DB, logs) in .airflow/, DAGs from dags/
export AIRFLOW_HOME                      := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER        := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES      := False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION := True

.PHONY: help install demo demo-retail test test-live test-slow test-cluster test-shapes bench bench-e2e airflow airflow-cluster serve mlflow dashboard browser clean lint

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml sim/pyproject.toml requirements.lock
	@test -n "$(PYTHON_BOOT)" || { echo "Python 3.11 is required"; exit 1; }
	@$(PYTHON_BOOT) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"need Python 3.11, found {sys.version.split()[0]}"'
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv
	# --compile-bytecode: every process (a task, a CLI call, a test worker) reads compiled modules instead of
	# compiling Airflow's, pandas' and Evidently's sources again where PYTHONDONTWRITEBYTECODE is set
	$(VENV)/bin/uv pip install --system-certs --python $(PY) --quiet --compile-bytecode -c requirements.lock -e '.[dev]' -e ./sim
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project (pinned by requirements.lock)

demo: $(STAMP)  ## generate data, train and run one nightly run through the real DAGs
	AIRFLOW_HOME=$(CURDIR)/.airflow-demo $(PY) scripts/demo.py

demo-retail: $(STAMP)  ## the same for a transactions-only shop (examples/retail: own schema, inactivity churn)
	AIRFLOW_HOME=$(CURDIR)/.airflow-demo DEMO_BUSINESS=retail $(PY) scripts/demo.py

TEST_WORKERS ?= 2
test: $(STAMP)  ## the default test suite (TEST_WORKERS=2 processes, a test file per worker at a time; ~10 min)
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile --durations=25

test-live: $(STAMP)  ## the tests against a running Airflow (make airflow's launcher, ~4 min; .ci/run runs them after make test)
	$(VENV)/bin/pytest -m "live and not cluster" -n $(TEST_WORKERS) --dist loadfile --durations=10

test-slow: $(STAMP)  ## the slow tests (model quality on bigger data, the full search)
	$(VENV)/bin/pytest -m slow

test-cluster: $(STAMP)  ## the running-cluster tests (make airflow-cluster from a bare PATH, ~4 min; .ci/run runs them)
	$(VENV)/bin/pytest -m cluster --durations=5

test-shapes: $(STAMP)  ## the shape matrix: every legal shape of a business's data trains and scores, or fails in one line (~8 min; .ci/run runs it)
	$(VENV)/bin/pytest -m shapes -n $(TEST_WORKERS) --durations=5

bench: $(STAMP)  ## benchmarks at 1M customers (prints time and memory), bench-e2e included
	$(PY) bench/run_all.py

bench-e2e: $(STAMP)  ## 1M customers x 12 months through the DAGs: first training, nightly, weekly rerun (~40 min)
	$(PY) bench/bench_e2e.py

airflow: $(STAMP)  ## a local Airflow (standalone) on a live simulated business: http://localhost:8080
	$(PY) -m churnflow_sim.standalone

airflow-cluster: $(STAMP)  ## the same DAGs on CeleryExecutor: PostgreSQL (metadata + broker), scheduler, API server, 2 workers
	AIRFLOW_HOME=$(CURDIR)/.airflow-cluster $(PY) -m churnflow_sim.cluster

serve: $(STAMP)  ## the score API, read-only over the results store: http://localhost:8001/docs (api_port, api_token)
	$(PY) -m pipeline serve

mlflow: $(STAMP)  ## the MLflow UI on the project's model store (runs, registry, champion): http://localhost:5000
	$(PY) scripts/mlflow_ui.py

dashboard: $(STAMP)  ## Evidently's UI on the dashboard of nights (drift, scores, performance, fairness, alerts): http://localhost:8000
	$(PY) scripts/dashboard_ui.py

browser:  ## Chromium + chromedriver for the real-browser tests (Debian packages; installs them as root, else says how)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then echo "chromium and chromedriver are installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null && echo "installed chromium and chromium-driver"; \
	else echo "the browser tests need Chromium and its driver: sudo apt-get install chromium chromium-driver (Debian/Ubuntu)"; exit 1; fi

lint: $(STAMP)  ## ruff (rules in pyproject.toml) on all Python, mypy on the library, churnflow_airflow, dags, sim; the import layers
	$(VENV)/bin/ruff check pipeline churnflow_airflow sim dags tests scripts bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

lock:  ## re-resolve requirements.lock from pyproject.toml
	$(VENV)/bin/uv pip compile --system-certs pyproject.toml --extra dev --extra postgres --extra cluster --extra s3 --python-version 3.11 -q -o requirements.lock

clean:  ## remove generated data, Airflow home and caches (keeps .venv)
	rm -rf data/source.db data/results.db data/landing data/lake data/quarantine data/runs data/models data/mlflow data/dashboard data/model_cache data/reports data/truth data/outbox data/simulator data/live data/bench_e2e data/retail data/demo_airflow.log .airflow .airflow-demo .airflow-cluster .pytest_cache
