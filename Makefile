# Two commands for a fresh machine (see README):
#   make run   - create .venv, install, start a 3-node local cluster
#   make test  - create .venv, install with dev extras and the benchmark tools,
#                lint, type-check, test
# and for the image (deploy/README.md):
#   make image        - build it with docker, podman or buildah (IMAGE=name:tag)
#   make image-check  - build it, run a node from it and check it (CI runs it)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

NODES ?= 3
IMAGE ?= ecs-kv-cache:latest

.PHONY: run test lint tools bench bench-quick image image-check clean

# Reinstall whenever pyproject.toml changes; the stamp records the last install.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m node local --nodes $(NODES)

# wrk, redis and memcached (Debian packages): the benchmarks and their tests drive them.
# Where they cannot be installed (no root or no apt-get) the tests that need one are
# skipped, naming it (tests/conftest.py); under CI (CI=true) that is an error.
tools: $(STAMP)
	@$(BIN)/python -m benchmarks.tools || case "$$CI" in \
	    true|TRUE|True|1|yes) echo "make tools: CI=$$CI, so a missing tool is an error" >&2; exit 1;; \
	    *) echo "make tools: going on; the tests that need a missing tool will be skipped" >&2;; \
	esac

lint: $(STAMP)
	$(BIN)/ruff check node client tests benchmarks deploy
	$(BIN)/ruff format --check node client tests benchmarks deploy
	$(BIN)/mypy

test: lint tools
	$(BIN)/python -m pytest

# Standard library only: no virtualenv needed to build the image.
image:
	$(PYTHON) -m deploy.image build --tag $(IMAGE)

image-check: $(STAMP)
	$(BIN)/python -m pytest -m image tests/test_image.py

bench: tools
	$(BIN)/python -m benchmarks

bench-quick: tools
	$(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
