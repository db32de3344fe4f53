# The two commands: `make demo` runs the exchange with sample data, `make test` runs the suite.
# Both create the virtual environment and install what they need on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
AUDIT := tests/audit/node_modules/.package-lock.json

.PHONY: demo test lint install schema clean

demo: $(INSTALLED)
	$(BIN)/exchange demo

test: $(INSTALLED) $(AUDIT) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Lint and formatting: ruff's rules as pyproject.toml chooses them, zero findings.
lint: $(INSTALLED)
	$(BIN)/ruff check exchange tests bench
	$(BIN)/ruff format --check exchange tests bench

install: $(INSTALLED)

# Not --quiet: pip names each package as it fetches it, so the first install (a few minutes)
# shows its progress.
$(INSTALLED): pyproject.toml
	@echo "Setting up $(VENV)/: the exchange and its test tools, installed with pip"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -e '.[test]'
	touch $@

# The GraphQL-over-HTTP audit runs on Node.js; install it from the system's packages if absent.
$(AUDIT): tests/audit/package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq nodejs npm; \
	  else \
	    echo "Node.js and npm are needed for the GraphQL-over-HTTP audit: install them (apt-get install nodejs npm)"; exit 1; \
	  fi; }
	npm ci --prefix tests/audit --no-audit --no-fund --silent

schema: $(INSTALLED)
	$(BIN)/exchange schema export --output schema.graphql

clean:
	rm -rf $(VENV) .demo tests/audit/node_modules
