# recsys-stream: `make demo` runs the main job, `make test` the whole suite.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
# uv installs from its cache outside the clone (~/.cache/uv), so a fresh clone installs in seconds.
TOOLS_DIR ?= $(HOME)/.cache/recsys-stream/tools
UV ?= $(shell command -v uv 2>/dev/null || echo $(TOOLS_DIR)/bin/uv)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Some environments set PYTHONDONTWRITEBYTECODE, which makes every process recompile torch's
# modules (~10 s a start); the virtual environment lives outside git, so let it cache bytecode.
unexport PYTHONDONTWRITEBYTECODE

# The unmodified MovieLens files next to the clone, when present (never inside it: licence).
ifneq ($(wildcard ../shared/data/ml-100k/u.data),)
export RECSYS_DATA_DIR ?= $(abspath ../shared/data)
endif

.PHONY: help venv demo test lint typecheck pytest chaos bench clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(TOOLS_DIR)/bin/uv:
	$(PYTHON) -m venv $(TOOLS_DIR)
	$(TOOLS_DIR)/bin/pip install --quiet 'uv>=0.4,<1'

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --extra dev --extra bench --python $(PYTHON) --quiet
	@touch $@

venv: $(STAMP) ## Create .venv and install the project with its locked dependencies.

# `make demo SERVE=0`: exit after the table, as scripts want, instead of serving the dashboard.
SERVE ?= 1
DEMO_PORT ?= 8000

demo: venv ## Run the main job on MovieLens 100K, then serve its dashboard (SERVE=0: don't).
	$(BIN)/recsys-stream simulate --dataset ml-100k \
		$(if $(filter 0 no false,$(SERVE)),--no-serve,--serve --port $(DEMO_PORT))

test: lint typecheck pytest ## Lint, type-check, then run every test against a real Kafka and Redis.

lint: venv ## ruff: lint and formatting.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv ## mypy (strict) on the core, the adapters, scripts/, the benchmarks and the tests.
	$(BIN)/mypy

pytest: venv ## Only the tests, with a real Kafka and Redis started (and stopped) around them.
	$(BIN)/python -m scripts.test_services run -- $(BIN)/pytest $(PYTEST_ARGS)

chaos: venv ## The long fault-injection suite and a large fuzz budget; prints a results table.
	RECSYS_FUZZ_EXAMPLES=10000 $(BIN)/pytest -q tests/unit/test_fuzz_decoder.py \
		tests/unit/test_api.py::test_linked_requests_are_never_answered_with_a_server_error
	RECSYS_CHAOS=1 $(BIN)/python -m scripts.test_services run -- $(BIN)/pytest -q tests/chaos tests/integration/test_faults.py tests/integration/test_ingestion_faults.py $(PYTEST_ARGS)

bench: venv ## Run the benchmarks and print each goal beside its measured figure.
	PYTHONPATH=. $(BIN)/python benchmarks/run.py $(BENCH)

clean: ## Remove the virtual environment and caches of this clone.
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist
