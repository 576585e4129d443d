# The two commands a newcomer needs: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck check bench-sandbox bench-engine emails clean

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

bench-sandbox: $(STAMP)
	$(BIN)/python bench/sandbox_throughput.py

bench-engine: $(STAMP)
	$(BIN)/python bench/engine_vs_httpx.py

emails: $(STAMP)
	$(BIN)/python -m renewals.notifications.examples docs/emails

clean:
	rm -rf $(VENV) var
