# One entry point for people and CI. `make serve` and `make check` work on a fresh machine:
# they create .venv and install what is needed first.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed

.PHONY: setup serve check lint types test bench

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: setup
	$(BIN)/rokt-edge serve

lint: setup
	$(BIN)/ruff check edge tests bench
	$(BIN)/ruff format --check edge tests bench

types: setup
	$(BIN)/mypy

test: setup
	$(BIN)/pytest

check: lint types test

bench: setup
	$(BIN)/python bench/mapping.py
