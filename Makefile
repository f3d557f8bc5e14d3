# One venv, made and kept up to date by every target that needs it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SOURCES := moesim tests $(wildcard benchmarks)

.PHONY: install test lint format run bench docs fidelity clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check $(SOURCES)
	$(VENV)/bin/ruff format --check $(SOURCES)

format: $(STAMP)
	$(VENV)/bin/ruff check --fix $(SOURCES)
	$(VENV)/bin/ruff format $(SOURCES)

test: $(STAMP) lint
	$(PY) -m pytest

run: $(STAMP)
	$(VENV)/bin/moesim run scenarios/deepseek_v3.yaml --force

# docs/scenarios.md is generated from the scenario schema (a test fails when it is out of date).
docs: $(STAMP)
	$(VENV)/bin/moesim schema --markdown > docs/scenarios.md

# The torch baseline runs when torch is installed (pip install -e ".[bench]"), else it is skipped.
bench: $(STAMP)
	$(PY) benchmarks/routing.py --json benchmarks/results/routing.json
	$(PY) benchmarks/run.py --output benchmarks/results/latest.json

# Runs scenarios/papers/ at 3 seeds and rewrites docs/fidelity.md (resumable; runs kept in
# results/papers/).
fidelity: $(STAMP)
	$(VENV)/bin/moesim papers --jobs 2

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis
