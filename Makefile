# kefta: the two commands are `make demo` and `make test`; the rest are parts of them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install services services-down demo test unit integration lint bench faults clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade uv
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[dev]'
	touch $@

install: $(STAMP)  ## create .venv and install kefta with its dev tools

services:  ## start Kafka, Elasticsearch and the GCS emulator
	scripts/services up

services-down:  ## stop the local services (data kept)
	scripts/services down

demo: install  ## run the whole pipeline end to end on local services
	$(BIN)/python scripts/demo

lint: install  ## ruff and mypy --strict
	$(BIN)/ruff check src tests bench scripts/demo
	$(BIN)/ruff format --check src tests bench scripts/demo
	$(BIN)/mypy

unit: install  ## the unit tests, no network
	$(BIN)/pytest tests/unit

integration: install services  ## the integration tests against the real services
	. .services/env && $(BIN)/pytest tests/integration

test: install lint services  ## everything CI runs
	. .services/env && $(BIN)/pytest tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-out
