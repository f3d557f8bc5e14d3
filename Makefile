# One venv, made and kept up to date by every target that needs it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test lint format run bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check moesim tests benchmarks
	$(VENV)/bin/ruff format --check moesim tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff check --fix moesim tests benchmarks
	$(VENV)/bin/ruff format moesim tests benchmarks

test: $(STAMP) lint
	$(PY) -m pytest

run: $(STAMP)
	$(VENV)/bin/moesim run scenarios/deepseek_v3.yaml --force

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis
