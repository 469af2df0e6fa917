# Two commands for a fresh machine: `make demo` and `make test`. Both build .venv first, and
# rebuild it when a requirements file changed (a stamp named by the files' hash).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REQ_HASH := $(shell cat requirements.txt | sha1sum | cut -c1-10)
DEV_HASH := $(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-10)
STAMP := $(VENV)/.installed-$(REQ_HASH)
DEV_STAMP := $(VENV)/.installed-dev-$(DEV_HASH)

.PHONY: demo test lint format venv venv-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(STAMP)
venv-dev: $(DEV_STAMP)

# LeNet-5 on scikit-learn's bundled digits: prepare, train, evaluate, checkpoint, W&B (offline
# unless logged in), curves and predictions in runs/demo. Running it again resumes (or just reports).
demo: $(STAMP)
	$(BIN)/python -m experiments.lenet5_digits --workdir runs/demo

# Formatting and lint first (ruff, configured in pyproject.toml): `make format` fixes what it finds.
test: lint
	$(BIN)/python -m pytest -q tests

lint: $(DEV_STAMP)
	$(BIN)/ruff format --check --diff .
	$(BIN)/ruff check .

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix --select I .
	$(BIN)/ruff format .

clean:
	rm -rf runs/demo .pytest_cache
