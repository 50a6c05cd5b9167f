# twinwatch — the two commands of the README:
#   make demo   the main job: services + simulated city + flows for ~2 minutes, then a summary
#   make test   the test suite on real local services (what .ci/run runs)
# Other targets: make check (lint, format, types), make setup (venv only), make stop (stop the
# demo's services), make bench.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
VAR    ?= var

.PHONY: demo test check setup services stop bench clean

demo: setup
	bash scripts/install-services.sh influxdb mosquitto alertmanager
	$(BIN)/twinwatch demo --var $(VAR)

test: setup
	bash scripts/install-services.sh influxdb mosquitto mosquitto-clients alertmanager victoriametrics prometheus chromium
	$(BIN)/python -m pytest -q -rs

# ruff (lint + format) and mypy, as configured in pyproject.toml; .ci/run runs this before the tests.
check: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	bash scripts/typecheck.sh

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	bash scripts/bootstrap-python.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

stop:
	$(BIN)/twinwatch services down --var $(VAR)

bench: setup
	$(BIN)/python -m benchmarks.flow_vs_loop

clean: stop
	rm -rf $(VAR)
