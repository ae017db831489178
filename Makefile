# kefta: the two commands are `make demo` and `make test`; the rest are parts of them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install services services-down browser compose-check demo test unit \
	integration lint bench faults clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade uv
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[dev]'
	touch $@

install: $(STAMP)  ## create .venv and install kefta with its dev tools

services:  ## start Kafka, Elasticsearch and the GCS emulator
	scripts/services up || { sleep 5; scripts/services up; }

services-down:  ## stop the local services (data kept)
	scripts/services down

browser:  ## Debian's Chromium, for the live view's browser test
	scripts/browser

compose-check:  ## validate docker-compose.yml with the real Compose CLI
	scripts/compose-check

demo: install  ## run the whole pipeline end to end on local services
	$(BIN)/python scripts/demo

PY_SOURCES := src tests scripts/demo $(wildcard bench)

lint: install  ## ruff and mypy --strict
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy

unit: install  ## the unit tests, no network
	$(BIN)/pytest tests/unit

integration: install services browser  ## the integration tests, real services
	$(BIN)/pytest tests/integration

test: install lint services browser compose-check  ## everything CI runs
	$(BIN)/pytest tests

bench: install services  ## the benchmark suite; figures in artifacts/bench/
	$(BIN)/python -m bench.run

faults: install services  ## the soak run with faults (10+ minutes)
	$(BIN)/pytest tests/faults -m soak

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-out
