# Two commands set everything up on a fresh machine with Python 3.11:
#   make demo   - build the embedded demo warehouse, start the sandbox, run the sync, print a summary
#   make test   - lint, type check and run the whole test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test check lint typecheck pytest bench constraints clean sandbox airflow

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11+"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[airflow,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/webengage-sync demo

test: check

check: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff format --check etl tests benchmarks dags
	$(BIN)/ruff check etl tests benchmarks dags

typecheck: $(STAMP)
	$(BIN)/mypy etl

pytest: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

sandbox: $(STAMP)
	$(BIN)/webengage-sync sandbox --port 8765

constraints: $(STAMP)
	{ echo "# Pinned versions, resolved with pip on Python 3.11. Regenerate: make constraints"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e'; } > constraints.txt

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache

airflow: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m etl.demo.airflow_up
