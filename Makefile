# The one test command is `make test`; CI runs exactly that through .ci/run.
#
#   make help          this list
#   make demo          the whole story locally (cluster, simulator, operator, Ready, rotation)
#   make test          everything CI runs: install, control-plane binaries, lint, every test tier
#   make lint          ruff (lint + format check), mypy, import-linter: no Go, no cluster
#   make unit          lint, then the unit tier (pure tests): no Go, no cluster, about a minute
#   make format        apply ruff's formatter and safe fixes to the tree
#   make test PYTEST_ARGS='-m sim'   (arguments for pytest)
#   make bench         the scale benchmark (~8 min; BENCH_ARGS=--large adds 1000 pools/nodes)
#   make k8s-oldest    the CRD on the oldest supported Kubernetes (1.30): build that kube-apiserver,
#                      run the admission and control-plane suites on it (~15 min cold, not in CI)
#   make k8s-check K8S_VERSION=v1.33.7   the same against any release
#   make constraints   re-pin constraints.txt from the current venv (plain index pins only)
#   make clean         stop the default dev cluster; remove the venv and tool caches
#
# Two distributions are installed, both editable: the operator (pyproject.toml, package batchcert)
# and its dev tooling (operator/pyproject.toml: batchsim, batchdev, command batchcert-dev).
# The control-plane binaries, promtool and helm live outside the repository (${XDG_CACHE_HOME:-~/.cache}/batchcert)
# and survive `make clean`; a cold build downloads Go modules and takes several minutes.

SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
BENCH_ARGS ?=
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

# The oldest Kubernetes release the CRD supports (README, "Supported Kubernetes versions").
K8S_OLDEST := v1.30.14
K8S_VERSION ?=
K8S_SUITES := tests/integration/test_crd_admission.py tests/integration/test_control_plane.py

.PHONY: help test demo bench install binaries lint unit format preflight constraints clean k8s-oldest k8s-check

# The commented list at the top of this file, so it is written once.
help:
	@sed -n '/^#   make /s/^#   //p; /^#      /s/^#   //p' $(firstword $(MAKEFILE_LIST))

test: preflight install binaries lint
	$(BIN)/pytest $(PYTEST_ARGS)

demo: preflight install binaries
	$(BIN)/batchcert-dev demo $(DEMO_ARGS)

unit: lint
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

# Not part of `make test`: real cluster + simulator + operator at scale, results in benchmarks/results/.
bench: preflight install binaries $(VENV)/.installed-bench
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# Not part of `make test`: another release is a second cold build (~15 min on 2 cores), cached
# in its own directory; the default cluster stays the pinned release.
k8s-oldest:
	$(MAKE) k8s-check K8S_VERSION=$(K8S_OLDEST)

k8s-check: preflight install
	@test -n "$(K8S_VERSION)" || { echo "error: say which release: make k8s-check K8S_VERSION=vX.Y.Z"; exit 1; }
	$(BIN)/batchcert-dev cluster build --kubernetes-version $(K8S_VERSION)
	BATCHCERT_KUBERNETES_VERSION=$(K8S_VERSION) $(BIN)/pytest $(K8S_SUITES) $(PYTEST_ARGS)

# One line, before any work, for each tool the project cannot install itself.
preflight:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: install Python 3.11+ (or set PYTHON=...)"; exit 1; }
	@command -v go >/dev/null || { echo "error: the Go toolchain (go 1.26+) is needed to build the local kube-apiserver: install it from your distribution (apt-get install golang) or go.dev, then retry"; exit 1; }
	@command -v kubectl >/dev/null || { echo "error: kubectl is needed by the demo and the end-to-end tests: install it (apt-get install kubectl, or your distribution's package), then retry"; exit 1; }

install: $(VENV)/.installed

# Reinstalled whenever the dependencies or their pins change.
$(VENV)/.installed: pyproject.toml operator/pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e '.[test]' -e ./operator
	@touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(PIP) -e '.[test,bench]'
	@touch $@

binaries: install
	$(BIN)/batchcert-dev cluster build
	tools/promtool/build.sh >/dev/null
	tools/helm/build.sh >/dev/null

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

constraints: install $(VENV)/.installed-bench
	$(BIN)/python tools/pins.py freeze --python $(BIN)/python > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	-@test ! -x $(BIN)/batchcert-dev || $(BIN)/batchcert-dev cluster down --state-dir .state/cluster
	rm -rf $(VENV) .state/cluster .mypy_cache .ruff_cache .pytest_cache operator/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
