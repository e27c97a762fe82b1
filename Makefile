# zen-lead's two commands are `make test` and `make demo` (see README.md); the other targets are
# their steps. Everything is set up on first use: .venv/, the Python packages (pinned by
# constraints.txt) and the control-plane binaries (built into ~/.cache/zen-lead, outside the repo).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: test demo setup controlplane lint typecheck pytest chaos bench lock clean

## test: set everything up, then lint, type-check and run every test.
test: lint typecheck controlplane pytest

## demo: a live failover (hung HTTP leader, then NOT_SERVING gRPC leader) on a local control plane.
demo: setup controlplane
	$(BIN)/zen-lead demo

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "zen-lead needs Python >= 3.11 (found: $$($(PYTHON) -V 2>&1)); set PYTHON=..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,dev,otel]'
	touch $@

## controlplane: build (or reuse) etcd, kube-apiserver, kube-proxy, kubectl, helm and promtool.
controlplane:
	bash tests/controlplane/build.sh >/dev/null

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

# Tests run inside a private network namespace where 10.244.0.0/16 is local (fake pod IPs).
pytest: setup controlplane
	$(BIN)/python -m zenlead.testing.netns $(BIN)/pytest $(PYTEST_ARGS)

## chaos: only the chaos scenarios (tests/chaos; `make test` runs them too), with their numbers
## printed and written to the chaos section of docs/benchmarks.md.
chaos: setup controlplane
	$(BIN)/python -m bench.chaos

## bench: run every benchmark; each prints a table and rewrites its section of docs/benchmarks.md.
bench: setup controlplane
	$(BIN)/python -m bench.failover_ready
	$(BIN)/python -m bench.failover_probe
	$(BIN)/python -m bench.probes
	$(BIN)/python -m bench.role_swap
	$(BIN)/python -m bench.failover_dataplane

## lock: re-pin constraints.txt after changing dependencies in pyproject.toml.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[test,dev,otel]'
	{ sed -n '1,2p' constraints.txt; .lock-venv/bin/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .lock-venv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
