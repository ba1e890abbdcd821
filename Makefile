# vigil — developer entry points. `make demo` and `make test` work on a fresh machine:
# they install the Python package, build the sandbox binaries once (cached under ~/.cache/vigil)
# and start everything the tests need.

PYTHON ?= python3
PIP_STAMP := .make/pip-installed
SRC := operator/vigil
PYTEST := $(PYTHON) -m pytest

.PHONY: all install lint typecheck crds unit e2e test demo demo-down sandbox sandbox-down bench clean

all: test

$(PIP_STAMP): pyproject.toml
	@mkdir -p .make
	$(PYTHON) -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $@

install: $(PIP_STAMP)

lint: install
	$(PYTHON) -m ruff check $(SRC) tests bench
	$(PYTHON) -m ruff format --check $(SRC) tests bench

typecheck: install
	$(PYTHON) -m mypy --strict $(SRC)

crds: install
	$(PYTHON) -m vigil crds --out crds

# pytest exits 5 when it collected no test; that is not a failure of the suite here.
unit: install
	$(PYTEST) tests -m "not e2e" -q || [ $$? -eq 5 ]

e2e: install
	$(PYTEST) tests -m e2e -v --timeout=900 || [ $$? -eq 5 ]

test: lint typecheck unit e2e

sandbox: install
	$(PYTHON) -m vigil dev up

sandbox-down: install
	$(PYTHON) -m vigil dev down

demo: install
	$(PYTHON) -m vigil demo

demo-down: install
	$(PYTHON) -m vigil demo --down

bench: install
	$(PYTHON) -m bench

clean:
	rm -rf .make .pytest_cache .mypy_cache .ruff_cache
