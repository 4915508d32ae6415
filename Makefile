# Exodus: `make run` starts everything, `make test` runs the suite. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# make test installs the base, the test tools and every broker's extra (tests/test_deployment.py checks the list).
ALL_EXTRAS := test,fix,alpaca,mt5,ib
STAMP      := $(VENV)/.installed-stamp
BASE_STAMP := $(VENV)/.base-installed-stamp

.PHONY: run test install bench bench-idle chaos lint clean-data help

help:
	@echo "make run    create .venv, install (with the libraries of the brokers configured), start Postgres + Temporal (UI) + worker + API"
	@echo "make test   create .venv, install, run the whole test suite (real Temporal and Postgres)"
	@echo "make bench  run the benchmarks (prints figures, writes JSON to benchmarks/results/)"
	@echo "make bench-idle  what 0, 1,000 and 10,000 resting orders cost while idle (IDLE_ARGS='--levels 0,1000')"
	@echo "make chaos  orders flow while the worker is killed and Temporal and Postgres restart; checks the books"
	@echo "make lint   ruff (style, docstrings, imports), the formatter's check, and mypy --strict (see pyproject.toml)"
	@echo "make clean-data  delete data/ (all orders, the Temporal history and the ledger)"

define make_venv
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Exodus needs Python >= 3.11, found " + sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
endef

# Everything: the base, the test tools and every broker's libraries (quickfix compiles once, then pip caches it).
$(STAMP): pyproject.toml
	$(make_venv)
	$(PIP) -e '.[$(ALL_EXTRAS)]'
	@touch $(STAMP) $(BASE_STAMP)

# The base alone; make run adds the extras of the brokers it runs (python -m devstack.extras names them).
$(BASE_STAMP): pyproject.toml
	$(make_venv)
	$(PIP) -e .
	@touch $(BASE_STAMP)

install: $(STAMP)

run: $(BASE_STAMP)
	@extras=$$($(BIN)/python -m devstack.extras) || exit 1; \
	if [ -n "$$extras" ]; then \
		echo "  installing the libraries of the brokers this run uses: .[$$extras] (once; quickfix compiles for minutes)"; \
		$(PIP) -e ".[$$extras]" || exit 1; \
	fi
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

bench-idle: $(STAMP)
	$(BIN)/python -m benchmarks.idle $(IDLE_ARGS)

# A few minutes: see README, "Chaos test". CHAOS_ARGS="--duration 300 --worker-kills 12" for a longer run.
chaos: $(STAMP)
	$(BIN)/python -m devstack.chaos $(CHAOS_ARGS)

clean-data:
	rm -rf data
