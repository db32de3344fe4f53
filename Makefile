# The two commands: `make demo` runs the exchange with sample data, `make test` runs the suite.
# Both create the virtual environment and install what they need on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
AUDIT := tests/audit/node_modules/.package-lock.json

VENDOR_MANIFEST := exchange/web/vendored.txt
VENDOR_DIR := exchange/web/static/vendor
I18N := exchange/web/i18n

.PHONY: demo test lint install schema clean vendor messages browser

demo: $(INSTALLED)
	$(BIN)/exchange demo

test: $(INSTALLED) $(AUDIT) browser lint
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

# The browser tests drive Debian's Chromium (Playwright cannot download its own browser here), with
# a font that has Traditional Chinese; install both from the system's packages if absent.
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! fc-list :lang=zh-tw 2>/dev/null | grep -q .; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq chromium fonts-wqy-microhei; \
	  else \
	    echo "The browser tests need Chromium and a Chinese font: run as root, or apt-get install chromium fonts-wqy-microhei"; exit 1; \
	  fi; \
	fi

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
