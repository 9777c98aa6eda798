# Everything a fresh machine needs lives here: `make run` and `make test` set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install system-deps run test lint bench clean

# Real peers the tests run: node_exporter as a scrape target, Prometheus and promtool to compare
# with. Installed from Debian when missing and we may (root + apt-get); otherwise those tests skip
# and say why.
SYSTEM_PACKAGES := prometheus-node-exporter prometheus

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

system-deps:
	@if ! command -v prometheus-node-exporter >/dev/null || ! command -v prometheus >/dev/null \
	    || ! command -v promtool >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null \
	    || { apt-get update -q >/dev/null && \
	         apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; } \
	    || echo "could not install $(SYSTEM_PACKAGES); the tests that need them will skip"; \
	  else echo "$(SYSTEM_PACKAGES) not installed (needs root + apt-get); those tests will skip"; fi; \
	fi

## run: start the gateway on the embedded default (OTLP 4317/4318, data in ./data)
run: install
	$(VENV)/bin/otelgw run --config config/gateway.yaml

## test: the whole test suite (what CI runs)
test: install system-deps
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check gateway receivers processors exporters extensions loadtests tests

bench: install
	$(PY) -m loadtests.bench

clean:
	rm -rf $(VENV) data .pytest_cache
