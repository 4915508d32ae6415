# Exodus: `make run` starts everything, `make test` runs the suite. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test install bench chaos lint clean-data help

help:
	@echo "make run    create .venv, install, start Postgres + Temporal (UI) + worker + API in the foreground"
	@echo "make test   create .venv, install, run the whole test suite (real Temporal and Postgres)"
	@echo "make bench  run the benchmarks (prints figures, writes JSON to benchmarks/results/)"
	@echo "make chaos  orders flow while the worker is killed and Temporal and Postgres restart; checks the books"
	@echo "make lint   ruff (style, docstrings, imports), the formatter's check, and mypy --strict (see pyproject.toml)"
	@echo "make clean-data  delete data/ (all orders, the Temporal history and the ledger)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Exodus needs Python >= 3.11, found " + sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m devstack

# Each run gets its own pytest base directory: pytest prunes old runs' directories in the shared default one,
# which would pull files from under a concurrent run.
test: $(STAMP)
	@tmp=$$(mktemp -d /tmp/exodus-pytest-XXXXXX); \
	$(BIN)/python -m pytest --basetemp=$$tmp $(PYTEST_ARGS); rc=$$?; rm -rf $$tmp; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# A few minutes: see README, "Chaos test". CHAOS_ARGS="--duration 300 --worker-kills 12" for a longer run.
chaos: $(STAMP)
	$(BIN)/python -m devstack.chaos $(CHAOS_ARGS)

clean-data:
	rm -rf data
