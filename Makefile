# The two commands a newcomer needs: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck check bench bench-quick bench-import chaos chaos-quick chaos-crash model-long emails clean

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
	$(BIN)/ruff check renewals tests bench chaos
	$(BIN)/ruff format --check renewals tests bench chaos

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# Both write bench-report.json here and print a table; they need PostgreSQL and Redis on
# 127.0.0.1 (RENEWALS_BENCH_POSTGRES_URL, RENEWALS_BENCH_REDIS_URL to point elsewhere).
bench-quick: $(STAMP)
	$(BIN)/python -m bench.run --quick

bench: $(STAMP)
	$(BIN)/python -m bench.run

# 100,000 generated rows through `renewals subscriptions import`, twice, on PostgreSQL and
# SQLite: rows/s of the first import and of the second (which must change nothing).
bench-import: $(STAMP)
	$(BIN)/python -m bench.import_rows

# Every scenario in real processes under failures, checked by `renewals check`'s invariants
# and the hygiene scan; prints the figures and fails on any violation (README, "Chaos").
# Then the seven crash points x 20 runs and the visibility-timeout redelivery (about 5 min).
chaos: $(STAMP)
	$(BIN)/python -m chaos; first=$$?; $(BIN)/python -m chaos.crash_points; exit $$((first || $$?))

chaos-crash: $(STAMP)
	$(BIN)/python -m chaos.crash_points

chaos-quick: $(STAMP)
	$(BIN)/python -m chaos --quick

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
