# The two commands: `make demo` runs the exchange with sample data, `make test` runs the suite.
# Both create the virtual environment and install what they need on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
AUDIT := tests/audit/node_modules/.package-lock.json

# The newest PostgreSQL server installed (Debian's layout): the tests run it.
PG_VERSION := $(shell ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1)
# The system packages the tests need that are missing here: Node.js for the GraphQL-over-HTTP
# audit; Debian's Chromium and a font with Traditional Chinese for the browser tests (Playwright
# cannot download its own browser here); pg_auto_failover for that PostgreSQL server, for the
# failover test (deploy/postgresql-failover.md).
MISSING_PACKAGES := $(strip \
  $(if $(shell command -v npm),,nodejs npm) \
  $(if $(and $(shell command -v chromium),$(shell fc-list :lang=zh-tw 2>/dev/null)),,chromium fonts-wqy-microhei) \
  $(if $(and $(shell command -v pg_autoctl),$(wildcard /usr/lib/postgresql/$(PG_VERSION)/lib/pgautofailover.so)),,\
    postgresql-$(PG_VERSION)-auto-failover pg-auto-failover-cli))

VENDOR_MANIFEST := exchange/web/vendored.txt
VENDOR_DIR := exchange/web/static/vendor
I18N := exchange/web/i18n

.PHONY: demo test lint install schema clean vendor messages system-packages

demo: $(INSTALLED)
	$(BIN)/exchange demo

# The whole suite runs as two pytest processes side by side (tests/run_in_parallel.py says why);
# with PYTEST_ARGS, one pytest runs exactly what they name.
test: $(INSTALLED) system-packages $(AUDIT) lint
ifeq ($(strip $(PYTEST_ARGS)),)
	$(BIN)/python tests/run_in_parallel.py
else
	$(BIN)/python -m pytest $(PYTEST_ARGS)
endif

# Lint, formatting and types: ruff's rules and mypy's as pyproject.toml chooses them, zero findings.
# mypy checks what [tool.mypy] names and keeps an incremental cache in .mypy_cache/.
lint: $(INSTALLED)
	$(BIN)/ruff check exchange tests bench
	$(BIN)/ruff format --check exchange tests bench
	$(BIN)/mypy

install: $(INSTALLED)

# Not --quiet: pip names each package as it fetches it, so the first install (a few minutes)
# shows its progress.
$(INSTALLED): pyproject.toml
	@echo "Setting up $(VENV)/: the exchange and its test tools, installed with pip"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -e '.[test]'
	touch $@

# Installs MISSING_PACKAGES from the system's packages (one apt-get update) when root; otherwise
# stops, naming them.
system-packages:
	@if [ -z "$(PG_VERSION)" ]; then echo "The tests need PostgreSQL's server: apt-get install postgresql"; exit 1; fi
	@if [ -n "$(MISSING_PACKAGES)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq $(MISSING_PACKAGES); \
	  else \
	    echo "The tests need these system packages: run as root, or apt-get install $(MISSING_PACKAGES)"; exit 1; \
	  fi; \
	fi

# The tests' Node.js packages (Node.js itself comes with system-packages): the GraphQL-over-HTTP
# audit's, and axe-core, which tests/web/test_accessibility.py injects into every page.
$(AUDIT): tests/audit/package-lock.json | system-packages
	npm ci --prefix tests/audit --no-audit --no-fund --silent

# The web front end's JavaScript and CSS come from the npm registry at the versions VENDOR_MANIFEST
# names, and are committed: `make vendor` packs each package into a temporary directory and copies
# the files it serves, their licences and the package's package.json (its name and version).
vendor:
	@command -v npm >/dev/null 2>&1 || { echo "make vendor needs npm (apt-get install npm)"; exit 1; }
	@set -eu; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	unpack() { dir="$$tmp/$$(echo "$$1" | tr '/@' '--')"; \
	  if [ ! -d "$$dir" ]; then mkdir "$$dir"; \
	    tarball=$$(npm pack --silent --pack-destination "$$tmp" "$$1" | tail -n 1); \
	    tar -xzf "$$tmp/$$tarball" -C "$$dir" --strip-components=1; fi; echo "$$dir"; }; \
	rm -rf $(VENDOR_DIR); \
	grep -Ev '^[[:space:]]*(#|$$)' $(VENDOR_MANIFEST) | while read -r spec files licences; do \
	  name=$${spec%@*}; out=$(VENDOR_DIR)/$$(echo "$$name" | tr -d '@' | tr '/' '-'); mkdir -p "$$out"; \
	  src=$$(unpack "$$spec"); cp "$$src/package.json" "$$out/"; \
	  for file in $$(echo "$$files" | tr ',' ' '); do cp "$$src/$$file" "$$out/"; done; \
	  for licence in $$(echo "$$licences" | tr ',' ' '); do \
	    case "$$licence" in \
	      *:*) other=$${licence%%:*}; cp "$$(unpack "$$other")/$${licence#*:}" "$$out/LICENSE.$$(echo "$${other%@*}" | tr -d '@' | tr '/' '-')";; \
	      *) cp "$$src/$$licence" "$$out/";; \
	    esac; done; \
	  echo "vendored $$spec into $$out"; \
	done

# The web front end's messages: extract them from the templates into $(I18N)/messages.pot and
# merge them into every catalog; then translate what is new in $(I18N)/<locale>/LC_MESSAGES/messages.po
# (the pages read the .po files themselves, so nothing is compiled).
messages: $(INSTALLED)
	$(BIN)/pybabel extract -F $(I18N)/babel.cfg -o $(I18N)/messages.pot --sort-by-file --no-wrap \
	  --project coalition-points-exchange --copyright-holder "the coalition points exchange" .
	$(BIN)/pybabel update -i $(I18N)/messages.pot -d $(I18N) --no-wrap --ignore-obsolete

schema: $(INSTALLED)
	$(BIN)/exchange schema export --output schema.graphql

clean:
	rm -rf $(VENV) .demo tests/audit/node_modules
