# Everything a fresh machine needs lives here: `make run` and `make test` set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

## run: start the gateway on the embedded default (OTLP 4317/4318, data in ./data)
run: install
	$(VENV)/bin/otelgw run --config config/gateway.yaml

## test: the whole test suite (what CI runs)
test: install
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check gateway receivers processors exporters loadtests tests

bench: install
	$(PY) -m loadtests.bench

clean:
	rm -rf $(VENV) data .pytest_cache
