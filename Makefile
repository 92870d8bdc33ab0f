# Two commands for a fresh machine (see README):
#   make run   - create .venv, install, start a 3-node local cluster
#   make test  - create .venv, install with dev extras and the benchmark tools,
#                lint, type-check, test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

NODES ?= 3

.PHONY: run test lint tools bench bench-quick clean

# Reinstall whenever pyproject.toml changes; the stamp records the last install.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m node local --nodes $(NODES)

# wrk, redis and memcached (Debian packages): the benchmarks and their tests drive them.
tools: $(STAMP)
	$(BIN)/python -m benchmarks.tools

lint: $(STAMP)
	$(BIN)/ruff check node client tests benchmarks
	$(BIN)/ruff format --check node client tests benchmarks
	$(BIN)/mypy

test: lint tools
	$(BIN)/python -m pytest

bench: tools
	$(BIN)/python -m benchmarks

bench-quick: tools
	$(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
