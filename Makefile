# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint install bench clean

$(VENV)/.installed: requirements/base.txt requirements/prod.txt requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) manage.py rundemo

# Two worker processes (pytest-xdist, ADR 0024): the suite's time is mostly tests waiting on purpose (takeovers,
# flapping links, outages); `make test PYTEST_WORKERS=0` runs it in one process.
PYTEST_WORKERS ?= 2

test: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Every benchmark, one after the other (about 45 minutes); a failed or unmet one does not stop the others.
# bench/modbus_poll.py needs libmodbus-dev (apt-get install -y libmodbus-dev) for its C server;
# bench/pair_scenarios.py needs PostgreSQL and Redis on loopback (as the pair tests do).
bench: install
	-$(PY) bench/modbus_poll.py
	-$(PY) bench/bacnet_read.py
	-$(PY) bench/live_latency.py
	-$(PY) bench/sync_stream.py
	-$(PY) bench/state_transfer.py
	-$(PY) bench/failover.py
	-$(PY) bench/pair_scenarios.py
	-$(PY) bench/alarms.py
	-$(PY) bench/trend_write.py
	-$(PY) bench/trend_query.py
	-$(PY) bench/logic.py
	-$(PY) bench/command_load.py
	-$(PY) bench/command_log.py
	-$(PY) bench/journal_positions.py

clean:
	rm -rf var .pytest_cache .ruff_cache
