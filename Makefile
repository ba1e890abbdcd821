# vigil — developer entry points. `make demo` and `make test` work on a fresh machine with only python3
# (and go, for the sandbox binaries): they create the project virtualenv .venv from uv.lock, build the
# sandbox binaries once (cached under ~/.cache/vigil) and start everything the tests need.
#
# Nothing is ever installed into the machine's interpreter: uv (pinned) is fetched from PyPI into its
# own directory, ~/.cache/vigil/uv-<version>, and `uv sync --frozen` makes .venv match uv.lock exactly.
# After changing dependencies in pyproject.toml run `make lock` and commit uv.lock.

PYTHON ?= python3
UV_VERSION := 0.13.9
UV_HOME := $(HOME)/.cache/vigil/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
VENV := .venv
# uv uses the interpreter we name and never downloads one of its own.
UV_ENV := UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=$(VENV)
# Inside .venv, so a removed .venv is synced again.
SYNC_STAMP := $(VENV)/.synced
PY := $(VENV)/bin/python
SRC := operator/vigil
PYTEST := $(PY) -m pytest

.PHONY: all install lock lint typecheck crds unit e2e test demo demo-down sandbox sandbox-down bench clean

all: test

# uv from PyPI into a private directory (pip --target touches no interpreter); several worktrees may race
# here, so the install goes to a temporary directory renamed into place in one step.
$(UV):
	@$(PYTHON) -m pip --version >/dev/null 2>&1 || { echo "$(PYTHON) has no pip to fetch uv $(UV_VERSION) with: install pip for it (e.g. apt-get install python3-pip), or put uv $(UV_VERSION) at $(UV)" >&2; exit 1; }
	@mkdir -p $(dir $(UV_HOME))
	@tmp=$$(mktemp -d $(UV_HOME).XXXXXX) && \
	  $(PYTHON) -m pip install --disable-pip-version-check --root-user-action=ignore -q --no-deps \
	    --target "$$tmp" uv==$(UV_VERSION) && \
	  { mv -T "$$tmp" $(UV_HOME) 2>/dev/null || rm -rf "$$tmp"; }
	@test -x $@

# Bytecode compiled once here: with PYTHONDONTWRITEBYTECODE set (as on many CI machines) every process
# would otherwise compile what it imports, each time. The kubernetes client's generated API modules are
# megabytes of source: the operator's first reconcile compiled them, +90 MiB of RSS and seconds of CPU.
$(SYNC_STAMP): pyproject.toml uv.lock $(UV) Makefile
	$(UV_ENV) $(UV) sync --frozen --extra dev --compile-bytecode --python $(PYTHON)
	@touch $@

install: $(SYNC_STAMP)

# Re-resolve uv.lock after a dependency change in pyproject.toml (then commit both).
lock: $(UV)
	$(UV_ENV) $(UV) lock --python $(PYTHON)

lint: install
	$(UV_ENV) $(UV) lock --check --python $(PYTHON)
	$(PY) -m ruff check $(SRC) tests bench argocd
	$(PY) -m ruff format --check $(SRC) tests bench argocd
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/lint-imports --no-cache

typecheck: install
	$(PY) -m mypy --strict $(SRC)

crds: install
	$(PY) -m vigil crds --out crds

# pytest exits 5 when it collected no test; that is not a failure of the suite here.
unit: install
	$(PYTEST) tests -m "not e2e" -q || [ $$? -eq 5 ]

# Lanes side by side (see tests/e2e/lanes.py): the serial lane in one worker, the isolated modules
# (own operator, namespaces, Prometheus; no GPUs) on the others. Each worker has its own namespace
# prefix. E2E_ARGS adds pytest options (e.g. --durations=0).
E2E_WORKERS ?= 3
e2e: install
	$(PYTEST) tests -m e2e -v --timeout=900 -n $(E2E_WORKERS) --dist loadgroup --durations=15 $(E2E_ARGS) || [ $$? -eq 5 ]

test: lint typecheck unit e2e

sandbox: install
	$(PY) -m vigil dev up

sandbox-down: install
	$(PY) -m vigil dev down

demo: install
	$(PY) -m vigil demo

demo-down: install
	$(PY) -m vigil demo --down

bench: install
	$(PY) -m bench

clean:
	rm -rf .make $(VENV) .pytest_cache .mypy_cache .ruff_cache
