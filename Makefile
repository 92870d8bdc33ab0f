# Two commands for a fresh machine (see README):
#   make run   - create .venv, install, start a 3-node local cluster
#   make test  - create .venv, install with dev extras and the benchmark tools,
#                lint, type-check, test; then the request path's tests again
#                on the compiled build (make test-compiled)
# and for the image (deploy/README.md):
#   make image        - build it with docker, podman or buildah (IMAGE=name:tag)
#   make image-check  - build it, run a node from it and check it (CI runs it)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

NODES ?= 3
IMAGE ?= ecs-kv-cache:latest

# The compiled build (node/compiled.py) is made in a copy of the tree, so
# that the checkout itself always runs its source as edited.
COMPILED_TREE := build/compiled
# The tests of what the compiled modules do (both doors, forwarding, the
# store, writes and their versions, keys moving, the clients' transport),
# run again on the compiled build. Not the call-count budgets: compiled
# functions make no Python calls to count.
COMPILED_TESTS := tests/test_compiled.py tests/test_memcached*.py tests/test_fast_path.py \
    tests/test_forwarding.py tests/test_kv_api.py tests/test_bad_input.py tests/test_store.py \
    tests/test_transport.py tests/test_write_versions.py tests/test_moving_reads.py \
    tests/test_batch.py tests/test_client_async.py tests/test_client_sync.py

.PHONY: run test test-compiled compiled lint tools bench bench-quick image image-check clean

# Reinstall whenever pyproject.toml changes; the stamp records the last install.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m node local --nodes $(NODES)

# wrk, redis and memcached (Debian packages): the benchmarks and their tests drive them;
# chromium: the dashboard's browser tests.
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
	$(MAKE) test-compiled

# Without a C compiler the compiled pass is skipped, saying so (under CI, an error).
test-compiled: tools
	@if ! command -v $${CC:-cc} >/dev/null; then \
	    case "$$CI" in true|TRUE|True|1|yes) echo "make test-compiled: no C compiler" >&2; exit 1;; esac; \
	    echo "make test-compiled: skipped, no C compiler (the source passed)" >&2; exit 0; \
	fi; \
	$(MAKE) compiled && cd $(COMPILED_TREE) && ECS_KV_COMPILED=1 PYTHONPATH=$(CURDIR)/$(COMPILED_TREE) \
	    $(CURDIR)/$(BIN)/python -m pytest -p no:cacheprovider $(COMPILED_TESTS)

# The tree copied (what git would not ignore) and its request path compiled.
compiled: $(STAMP)
	rm -rf $(COMPILED_TREE) && mkdir -p $(COMPILED_TREE)
	tar -c --exclude=./.git --exclude=./$(VENV) --exclude=./build --exclude=./benchmarks/results \
	    --exclude=__pycache__ --exclude='*.so' --exclude=.pytest_cache --exclude=.mypy_cache \
	    --exclude=.hypothesis . | tar -x -C $(COMPILED_TREE)
	cd $(COMPILED_TREE) && $(CURDIR)/$(BIN)/python -m node.compiled build

# Standard library only: no virtualenv needed to build the image.
image:
	$(PYTHON) -m deploy.image build --tag $(IMAGE)

image-check: $(STAMP)
	$(BIN)/python -m pytest -m image tests/test_image.py

# The build the image ships: compiled, where a C compiler is (BUILD=source: the checkout's source).
BUILD ?= $(if $(shell command -v cc),compiled,source)
BENCH_TREE = $(if $(filter source,$(BUILD)),.,$(COMPILED_TREE))

bench: tools $(if $(filter source,$(BUILD)),,compiled)
	cd $(BENCH_TREE) && $(CURDIR)/$(BIN)/python -m benchmarks --results-dir $(CURDIR)/benchmarks/results

bench-quick: tools
	$(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
