# Everyday commands. `make train` and `make test` set everything up themselves on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SOLC_DIR := scripts/solc
PY_STAMP := $(VENV)/.installed
NPM_STAMP := $(SOLC_DIR)/node_modules/.installed
UI_VENV := .venv-ui
UI_STAMP := $(UI_VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export PYTHONUNBUFFERED := 1
# The solc-js compilers `make setup` installs; the library finds them through this variable.
export TRAINING_PIPELINE_SOLC_DIR ?= $(CURDIR)/$(SOLC_DIR)

.DEFAULT_GOAL := help
.PHONY: help setup data data-real train train-all eval-real package serve drift retrain ui test test-fast bench lint format clean clean-outputs clean-data

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-13s\033[0m %s\n", $$1, $$2}'

$(PY_STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt 2> >(grep -v "is ignored: it is neither" >&2)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2> >(grep -v "is ignored: it is neither" >&2)
	@touch $@

$(NPM_STAMP): $(SOLC_DIR)/package.json $(SOLC_DIR)/package-lock.json
	cd $(SOLC_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The MLflow UI server needs SQLAlchemy 2, the training venv pins 1.4 (optuna 2.10): its own venv, made on demand.
$(UI_STAMP): requirements-ui.txt
	@test -x $(UI_VENV)/bin/python || $(PYTHON) -m venv $(UI_VENV)
	$(UI_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-ui.txt 2> >(grep -v "is ignored: it is neither" >&2)
	@touch $@

setup: $(PY_STAMP) $(NPM_STAMP) ## Create .venv and install the pinned Python and npm (solc-js) packages

data: setup ## Build (or reuse) the default contract corpus and print its manifest
	$(PY) scripts/build_corpus.py

data-real: setup ## Install the npm Solidity packages of conf/data/real_code.yaml and compile them (once; ARGS="--force")
	$(PY) scripts/build_real_code.py $(ARGS)

train: setup ## Train the default model: the bytecode detector on generated + real (CGT) contracts, selected on real ones
	$(PY) src/train.py experiment=bytecode_detector_real $(ARGS)

train-all: setup ## Cross-fit the three base models on generated + real contracts, train the aggregator (resumes; ARGS="--force" retrains)
	$(PY) scripts/train_all.py $(ARGS)

eval-real: setup ## Real-world benchmark of the newest trained models + Slither (outputs/real_world/<time>/report.md)
	$(PY) scripts/build_real_code.py
	$(PY) src/eval.py experiment=real_world $(ARGS)

package: setup ## Package the newest train-all run (or RUN=<dir>) and register it (ARGS="--promote champion")
	$(PY) -m training_pipeline.deploy package $(RUN) --register $(ARGS)

serve: setup ## The scan service on 127.0.0.1:8000 with the registry's champion (ARGS="routing.mode=shadow challenger=...")
	$(PY) -m training_pipeline.serve $(ARGS)

PACKAGE ?= models:/scathat-pipeline@champion
CURRENT ?= outputs/serve/inference.jsonl
drift: setup ## Drift report of CURRENT (the inference log) vs PACKAGE's reference profile (ARGS="--window 7d"); fails on a warning or an alert
	$(PY) -m training_pipeline.monitoring drift --package $(PACKAGE) --current $(CURRENT) $(ARGS)

retrain: setup ## Train a challenger, promote it only if it beats the champion (ARGS="--new-data f.jsonl --increment-version")
	$(PY) scripts/retrain.py $(ARGS)

ui: $(UI_STAMP) ## MLflow UI on 127.0.0.1:5000: training runs, train-all parent/child runs, the model registry
	@mkdir -p outputs/mlflow
	$(UI_VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/outputs/mlflow/mlflow.db --host 127.0.0.1 $(ARGS)

# Tests run on one worker per core, at most 4 (pytest-xdist; TEST_WORKERS=0: in this process, one at a time).
TEST_WORKERS ?= auto
XDIST := -n $(TEST_WORKERS) --maxprocesses=4
test: setup ## Run the whole test suite
	$(PY) -m pytest $(XDIST) $(ARGS)

test-fast: setup ## Run the suite without the slow tests
	$(PY) -m pytest $(XDIST) -m "not slow" $(ARGS)

bench: setup ## Benchmarks: tokenizer vs pyevmasm, corpus build, Lightning vs plain PyTorch, CPU dropout, sorted eval batches, serving, scanning vs Slither
	$(PY) scripts/benchmark.py $(ARGS)

lint: setup ## Lint and check formatting with ruff
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts

format: setup ## Format with ruff
	$(VENV)/bin/ruff check --fix src tests scripts
	$(VENV)/bin/ruff format src tests scripts

clean: ## Remove caches only (__pycache__, pytest, ruff); runs, data and .venv stay
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -not -path './$(UI_VENV)/*' -prune -exec rm -rf {} +

clean-outputs: ## Delete every run under outputs/ (trained models, train-all runs, reports); says what it deletes
	@runs=$$(find outputs -mindepth 1 -maxdepth 1 -not -name .gitkeep | sort); \
	if [ -z "$$runs" ]; then echo "outputs/ is already empty"; else \
	echo "deleting:"; for r in $$runs; do echo "  $$r ($$(du -sh $$r | cut -f1))"; done; \
	rm -rf $$runs; fi

clean-data: ## Delete the generated data under data/ (corpora, histories, compile cache); says what it deletes
	@if [ ! -d data ]; then echo "data/ does not exist"; else \
	echo "deleting:"; for d in $$(find data -mindepth 1 -maxdepth 1 | sort); do echo "  $$d ($$(du -sh $$d | cut -f1))"; done; \
	rm -rf data; fi
