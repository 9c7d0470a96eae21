# Two commands do all the set-up: `make demo` and `make test`. Both build .venv from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test golden validate bench bench-ledger bench-service bench-backtest serve postgres clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/promo validate rules
	$(PY) examples/demo.py

# The ledger's tests run against SQLite and a real PostgreSQL server: scripts/postgres.sh installs it when
# missing, starts a private one in .pg/ (unix socket only) and prints its URL.
test: $(STAMP)
	url=$$(scripts/postgres.sh start) && PROMO_TEST_POSTGRES_URL="$$url" $(PY) -m pytest -q

# Reservations committed per second and reserve()'s p99 on SQLite and PostgreSQL, 1, 4 and 16 workers.
bench-ledger: $(STAMP)
	url=$$(scripts/postgres.sh start) && PROMO_TEST_POSTGRES_URL="$$url" $(PY) bench/ledger_bench.py

# The HTTP service on 127.0.0.1:8080 without a ledger; the first run creates keys.json with one admin key
# and prints it (once: only its hash is kept).
serve: $(STAMP)
	@test -f keys.json || $(VENV)/bin/promo keys create --file keys.json --name local-admin --scope admin
	$(VENV)/bin/promo serve --rules rules --keys keys.json

# Requests per second and p50/p99 of /v1/evaluate and /v1/checkouts over loopback, 1 and 2 workers.
bench-service: $(STAMP)
	$(PY) bench/service_bench.py

# promo diff: carts per second on 100,000 generated carts in one process and on a 2-worker local Dask
# cluster (the client reading the corpus, and the workers reading their own ranges), and the client's peak
# memory streaming 10^5 and 10^6 carts both ways (about 45 minutes on 2 cores;
# `bench/backtest_bench.py --memory 100000 300000` for a shorter run).
bench-backtest: $(STAMP)
	$(PY) bench/backtest_bench.py
	$(PY) bench/simulate_bench.py

postgres:
	scripts/postgres.sh start

# Rewrites the golden files that differ from the engine's output and says, case by case, what changed
# (amounts, reasons, totals). Review `git diff tests/golden` before committing.
golden: $(STAMP)
	$(PY) -m tests.golden_tool --update

# Seeded synthetic rule sets and carts in three shapes: evaluate(), the floor and business-rules; about 7 minutes (bench.run --quick: seconds).
bench: $(STAMP)
	$(PY) -m bench.run

validate: $(STAMP)
	$(VENV)/bin/promo validate rules

clean:
	-scripts/postgres.sh stop
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .pg
