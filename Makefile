# The two commands of the README: `make demo` and `make test`.
# Everything installs into .venv from pyproject.toml, pinned by constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= true
export BENTOML_DO_NOT_TRACK ?= True
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install system-deps demo test bench clean

$(BIN)/activity-scorer: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

install: $(BIN)/activity-scorer

## Simulate a demo dataset and run the main job on it (see README).
demo: install
	$(BIN)/activity-scorer demo

## PostgreSQL and headless Chromium for the store and page tests (apt-get as root; else a loud note).
system-deps:
	bash scripts/system-deps.sh

## The whole test suite, slow, integration and real-data tests included.
test: install system-deps
	$(BIN)/python -m pytest -n 2 --dist loadgroup tests

clean:
	rm -rf $(VENV) .activity-scorer .pytest_cache
