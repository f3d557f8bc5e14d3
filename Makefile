# One venv, made and kept up to date by every target that needs it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SOURCES := moesim tests $(wildcard benchmarks)

.PHONY: install test lint format run bench docs fidelity fuzz clean

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

# The fuzzer of tests/fuzz/ with a large budget (make test runs a small fixed one): hostile
# scenario files, traces, results folders and paths against every command. FUZZ_EXAMPLES cases
# in all; every violated guarantee (docs/guarantees.md) is written to fuzz-violations.jsonl.
FUZZ_EXAMPLES ?= 10000
fuzz: $(STAMP)
	rm -f fuzz-violations.jsonl
	MOESIM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) MOESIM_FUZZ_LOG=$(CURDIR)/fuzz-violations.jsonl \
		$(PY) -m pytest tests/fuzz -q -p no:cacheprovider

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
	rm -rf $(VENV) results .pytest_cache .hypothesis fuzz-violations.jsonl
