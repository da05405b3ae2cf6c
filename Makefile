# `make demo` and `make test` work on a fresh machine: each creates .venv with pip when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-cluster lint bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dnet-tune search --dataset digits_lt --gpus 0

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The `ray job submit` client test needs ray[default], which makes every local Ray start of the
# suite slower (docs/benchmarks.md), so it runs on its own, after the suite (CI: .ci/run). It
# adds the `cluster` extra to .venv; the test fails instead of skipping if that did not work.
test-cluster: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,cluster]'
	DNET_REQUIRE_CLUSTER_EXTRA=1 $(BIN)/python -m pytest -q tests/tune/test_job_submit.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy dnet_tune

bench: $(STAMP)
	$(BIN)/python bench/meta_step.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/loader.py

clean-venv:
	rm -rf $(VENV)
