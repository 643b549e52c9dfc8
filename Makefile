# One entry point for people and CI. `make serve` and `make check` work on a fresh machine:
# they create .venv and install what is needed first.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed
# `make serve PORT=8090 HOST=0.0.0.0`: given on the command line only (many shells export HOST).
HOST = 127.0.0.1
PORT = 8080

.PHONY: setup browser-setup serve status recent check lint types test bench

setup: $(STAMP)

# PYTHONWARNINGS: setuptools says at every editable install of a flat layout that a folder named
# like the package may shadow it (10 lines, true of any such project): the install stays quiet.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The real-browser tests drive Debian's Chromium; the snippet's freshness test needs its minifier;
# tests/clients drives Segment's own clients (analytics.js, analytics-node, pinned in its
# package.json). All are installed when the machine allows it; without them those tests skip,
# saying why (tests/clients fails instead under CI=true). An unreachable npm registry does not
# stop make.
browser-setup:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@if command -v npm >/dev/null && [ ! -d static/node_modules ]; then \
		(cd static && npm ci --no-audit --no-fund --loglevel=error) || { \
			rm -rf static/node_modules; \
			echo "browser-setup: npm could not install the snippet's minifier into static (is the npm registry reachable?); the snippet's freshness test will skip"; \
		}; \
	fi
	@if command -v npm >/dev/null && [ ! -d tests/clients/node_modules ]; then \
		(cd tests/clients && npm ci --no-audit --no-fund --loglevel=error) || { \
			rm -rf tests/clients/node_modules; \
			echo "browser-setup: npm could not install Segment's clients into tests/clients (is the npm registry reachable?); their tests will skip"; \
		}; \
	fi

# The other commands (status, recent, import, replay, preview, deliver) are .venv/bin/rokt-edge, or
# rokt-edge after `. .venv/bin/activate`; `make status` and `make recent` run the first two.
serve: setup
	@echo "make serve: the other commands are $(BIN)/rokt-edge (status, recent, import, replay, preview, deliver; --help), or make status, make recent"
	$(BIN)/rokt-edge serve --host $(HOST) --port $(PORT)

status: setup
	$(BIN)/rokt-edge status

recent: setup
	$(BIN)/rokt-edge recent

lint: setup
	$(BIN)/ruff check edge tests bench
	$(BIN)/ruff format --check edge tests bench

types: setup
	$(BIN)/mypy

test: setup browser-setup
	$(BIN)/pytest

check: lint types test

bench: setup
	$(BIN)/python bench/mapping.py
	$(BIN)/python bench/snippet_size.py
