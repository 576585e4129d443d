# The two commands a newcomer needs: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck check bench bench-quick emails clean model-long

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/renewals run

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check renewals tests bench
	$(BIN)/ruff format --check renewals tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# Both write bench-report.json here and print a table; they need PostgreSQL and Redis on
# 127.0.0.1 (RENEWALS_BENCH_POSTGRES_URL, RENEWALS_BENCH_REDIS_URL to point elsewhere).
bench-quick: $(STAMP)
	$(BIN)/python -m bench.run --quick

bench: $(STAMP)
	$(BIN)/python -m bench.run

# The engine's Hypothesis model at length (400 runs of 60 steps, SQLite and PostgreSQL;
# `make test` runs 30 of 50 on SQLite, see tests/model/profiles.py), and three workers and
# two schedulers on one SQLite database for two minutes instead of one batch.
model-long: $(STAMP)
	HYPOTHESIS_PROFILE=chaos $(BIN)/pytest tests/model -q
	RENEWALS_SQLITE_SOAK=1 $(BIN)/pytest tests/processes/test_sqlite_concurrency.py -q

emails: $(STAMP)
	$(BIN)/python -m renewals.notifications.examples docs/emails

clean:
	rm -rf $(VENV) var
