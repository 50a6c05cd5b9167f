# twinwatch — the two commands of the README:
#   make demo   the main job: services + simulated city + flows for ~2 minutes, then a summary
#   make test   the test suite on real local services (what .ci/run runs)
# Other targets: make setup (venv only), make stop (stop the demo's services), make bench.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
VAR    ?= var

.PHONY: demo test setup services stop bench clean

demo: setup
	bash scripts/install-services.sh influxdb mosquitto alertmanager
	$(BIN)/twinwatch demo --var $(VAR)

test: setup
	bash scripts/install-services.sh influxdb mosquitto alertmanager victoriametrics prometheus chromium
	$(BIN)/python -m pytest -q -rs

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
