# Quick start: `make serve` runs a hub on SQLite; `make test` runs the whole test suite.
# Both create the virtualenv .venv and install the project into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: serve test bench lint clean

INTEROP := tests/interop
INTEROP_STAMP := $(INTEROP)/node_modules/.package-lock.json

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/identity-hub serve

# The 2019 JavaScript clients for tests/integration/test_js_interop.py, exact versions from the
# lock file. --ignore-scripts: hub-sdk-js pulls in node-webcrypto-ossl, a native module it never
# loads that fails to build on Node 20.
$(INTEROP_STAMP): $(INTEROP)/package.json $(INTEROP)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd $(INTEROP) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the JavaScript interop tests will be skipped"; fi

test: $(STAMP) $(INTEROP_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis $(INTEROP)/node_modules
