# Two commands set everything up on a fresh machine with Python 3.11:
#   make demo   - build the embedded demo warehouse, start the sandbox, run the sync, print a summary
#   make test   - lint, type check, run the whole test suite, then its date-sensitive part under a clock
#                 400 days ahead (needs Debian's faketime; skipped with a notice where it is missing,
#                 required by CI: .ci/run installs it)
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test check lint typecheck pytest test-fast pytest-shifted bench constraints clean sandbox airflow airflow-test

# Tests whose data or queries are relative to a date: they must pass on any day, so they run again under a
# shifted clock. REQUIRE_SHIFTED_CLOCK=1 turns a missing faketime into a failure (CI).
SHIFT       ?= +400 days
# tests/tools/shifted.sh runs them under `faketime -m` with a time limit per attempt and tries again only a run
# that hung (Airflow's in-process dag.test() sometimes hangs under libfaketime: see the script).
DATED_TESTS := tests/dags tests/e2e tests/integration/test_cohorts_pipeline.py \
               tests/integration/test_events_pipeline.py tests/integration/test_demo_warehouse.py \
               tests/integration/test_real_account.py tests/integration/test_plan.py tests/unit/webhooks \
               tests/integration/test_merges.py tests/integration/test_erasures.py \
               tests/integration/test_events_pushdown.py tests/integration/test_cohort_diff.py \
               tests/integration/test_users_diff_migration.py

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11+"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[airflow,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/webengage-sync demo

test: check pytest-shifted

check: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff format --check etl webengage_dev tests benchmarks dags plugins
	$(BIN)/ruff check etl webengage_dev tests benchmarks dags plugins

typecheck: $(STAMP)
	$(BIN)/mypy etl webengage_dev

pytest: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

# The unit tests and the DAG parse tests (marked `fast` in tests/conftest.py): under a minute.
test-fast: $(STAMP)
	$(BIN)/pytest -q -m fast

pytest-shifted: $(STAMP)
	@if command -v faketime >/dev/null 2>&1; then \
	  echo "date-sensitive tests under faketime '$(SHIFT)':"; \
	  bash tests/tools/shifted.sh '$(SHIFT)' 600 3 $(BIN)/pytest -q -p no:cacheprovider $(DATED_TESTS); \
	elif [ -n "$(REQUIRE_SHIFTED_CLOCK)" ]; then \
	  echo "faketime not found (Debian: apt-get install faketime)"; exit 1; \
	else \
	  echo "NOTICE: faketime not found: the shifted-clock run of the date-sensitive tests was skipped" \
	       "(Debian: apt-get install faketime)"; \
	fi

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
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m webengage_dev.demo.airflow_up

# The WebEngage page in a real browser (Debian's chromium + Playwright, no browser download) on the stack
# `make airflow` starts; screenshots in .screenshots/. `make test` runs it too (tests/e2e).
airflow-test: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider -s tests/e2e/test_airflow_ui_browser.py
