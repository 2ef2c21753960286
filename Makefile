# The one test command is `make test`; CI runs exactly that through .ci/run.
#
#   make test          venv + install, control-plane binaries, ruff, mypy, import-linter, pytest
#   make demo          the whole story locally (cluster, simulator, operator, Ready, rotation)
#   make test PYTEST_ARGS='-m unit'    (arguments for pytest)
#   make bench         the scale benchmark (~8 min; BENCH_ARGS=--large adds 1000 pools/nodes)
#   make constraints   re-pin constraints.txt from the current venv
#   make clean         stop the default dev cluster; remove the venv and tool caches
#
# The control-plane binaries live outside the repository (${XDG_CACHE_HOME:-~/.cache}/batchcert)
# and survive `make clean`; a cold build downloads Go modules and takes several minutes.

SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: test demo bench install binaries lint constraints clean

test: install binaries lint
	$(BIN)/pytest $(PYTEST_ARGS)

demo: install binaries
	$(BIN)/batchcert demo $(DEMO_ARGS)

# Not part of `make test`: real cluster + simulator + operator at scale, results in benchmarks/results/.
bench: install binaries $(VENV)/.installed-bench
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

install: $(VENV)/.installed

# Reinstalled whenever the dependencies or their pins change.
$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,bench]'
	@touch $@

binaries: install
	$(BIN)/batchcert dev cluster build

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

constraints: install
	{ echo "# Pins for every dependency of batchcert-operator[test] (and [bench]), so CI installs what was tested."; \
	  echo "# Regenerate from a working venv with: make constraints"; \
	  $(BIN)/pip freeze --exclude-editable; } > constraints.txt

clean:
	-@test ! -x $(BIN)/batchcert || $(BIN)/batchcert dev cluster down --state-dir .state/cluster
	rm -rf $(VENV) .state/cluster .mypy_cache .ruff_cache .pytest_cache operator/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
